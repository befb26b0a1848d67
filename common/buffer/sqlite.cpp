#include "common/buffer/sqlite.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <utility>

namespace meter::sqlite {
namespace {

// How long a connection waits for a lock (SQLite's busy timeout), and about
// how long a writer lets a waiting one go first (give_way).
constexpr int kBusyTimeoutMs = 10000;
// How long a writer waits for the write lock as SQLite does before it asks for
// its turn: longer than the daemon's transactions take one by one.
constexpr int kPatienceMs = 1000;

void sleep_one_millisecond() {
  const timespec millisecond{0, 1000000};
  ::nanosleep(&millisecond, nullptr);
}

// While another connection waits for the write lock (holds the writers file
// shared), let it have the lock first.
void give_way(int writers_fd) {
  if (writers_fd < 0) return;
  for (int attempt = 0; attempt < kBusyTimeoutMs; ++attempt) {
    if (::flock(writers_fd, LOCK_EX | LOCK_NB) == 0) {
      ::flock(writers_fd, LOCK_UN);
      return;
    }
    if (errno != EWOULDBLOCK && errno != EINTR) return;
    sleep_one_millisecond();
  }
}

}  // namespace

bool SqliteError::is_resource_error() const {
  const int primary = code_ & 0xff;
  return primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_BUSY ||
         primary == SQLITE_LOCKED || primary == SQLITE_NOMEM;
}

Database::Database(const std::string& path, int flags) : path_(path) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(rc, path + ": cannot open database: " + message);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
}

Database::~Database() {
  if (db_) sqlite3_close_v2(db_);
  if (writers_fd_ >= 0) ::close(writers_fd_);
}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      writers_fd_(std::exchange(other.writers_fd_, -1)),
      writers_file_tried_(other.writers_file_tried_) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    if (db_) sqlite3_close_v2(db_);
    if (writers_fd_ >= 0) ::close(writers_fd_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    writers_fd_ = std::exchange(other.writers_fd_, -1);
    writers_file_tried_ = other.writers_file_tried_;
  }
  return *this;
}

// Writers take turns. SQLite's write lock is not a queue: a connection that
// waits for it only polls, at growing intervals (its busy timeout: 100 ms from
// the 12th attempt, about 110 attempts in 10 s), and a connection that commits
// and begins again at once (the daemon's normalizer, draining a backlog batch
// after batch, on a slow machine) leaves it free only for microseconds between
// its transactions: every attempt of a `meter replace` beside it can find it
// taken, and the command gives up with "database is locked" (seen in the arm64
// VM, docs/BENCHMARKS.md). So a connection that still finds the lock taken
// after kPatienceMs says that it waits, with a shared flock on the file
// PATH-writers, until it has the lock; and every connection, before it takes
// the lock, lets such a waiter go first (waits until no one holds that flock,
// at most about as long as the busy timeout). Only after a while: short waits
// keep SQLite's timing, which the crash test's concurrent appends and batches
// were tuned under (asking at once made a waiter start in step with the
// holder's next short transaction). Polling faster would not do either: the
// gaps are too short. flock, not fcntl: fcntl locks belong to the process and
// closing any descriptor of the file drops them all, a trap SQLite's own locks
// avoid by never sharing a file with us. Without the file (a directory this
// process cannot write to), the connection writes without taking turns.
void Database::begin_write() {
  if (!writers_file_tried_) {
    writers_file_tried_ = true;
    if (!path_.empty() && path_ != ":memory:" && !path_.starts_with("file:")) {
      // Read-only is enough for flock; 0644 so that the daemon's user can open
      // it when root created it (a command run by root, the service's user).
      writers_fd_ = ::open((path_ + "-writers").c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    }
  }
  give_way(writers_fd_);
  // First as SQLite waits: enough unless the lock is held back to back.
  sqlite3_busy_timeout(db_, kPatienceMs);
  const int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  if (rc == SQLITE_OK) return;
  if ((rc & 0xff) != SQLITE_BUSY) fail(rc, "BEGIN IMMEDIATE");
  // Still taken: ask for the turn, and wait until this connection has the lock.
  const bool announced = writers_fd_ >= 0 && ::flock(writers_fd_, LOCK_SH) == 0;
  try {
    exec("BEGIN IMMEDIATE");
  } catch (...) {
    if (announced) ::flock(writers_fd_, LOCK_UN);
    throw;
  }
  if (announced) ::flock(writers_fd_, LOCK_UN);
}

void Database::fail(int code, std::string_view context) const {
  std::string message = path_ + ": " + std::string(context) + ": ";
  message += db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(code);
  throw SqliteError(code, message);
}

void Database::exec(std::string_view sql) {
  char* error = nullptr;
  const std::string text(sql);
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = path_ + ": " + (error ? error : sqlite3_errstr(rc));
    sqlite3_free(error);
    throw SqliteError(rc, message);
  }
}

Statement Database::prepare(std::string_view sql) { return Statement(*this, sql); }

std::int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

int Database::changes() const { return sqlite3_changes(db_); }

Statement::Statement(const Database& db, std::string_view sql) : db_(&db) {
  const int rc = sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) db.fail(rc, "prepare '" + std::string(sql.substr(0, 60)) + "'");
}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_) sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  const int rc =
      sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

Statement& Statement::bind_blob(int index, const void* data, std::size_t size) {
  const int rc = sqlite3_bind_blob64(stmt_, index, size == 0 ? "" : data, size, SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

Statement& Statement::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

Statement& Statement::bind_optional(int index, const std::optional<std::string>& text) {
  return text ? bind(index, std::string_view(*text)) : bind_null(index);
}

Statement& Statement::bind_optional(int index, const std::optional<std::int64_t>& value) {
  return value ? bind(index, *value) : bind_null(index);
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(stmt_);
  db_->fail(rc, "step");
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t Statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

bool Statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

std::string Statement::column_text(int index) const {
  const auto* text = sqlite3_column_text(stmt_, index);
  const int size = sqlite3_column_bytes(stmt_, index);
  return text ? std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size))
              : std::string();
}

std::optional<std::string> Statement::column_optional_text(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_text(index);
}

std::optional<std::int64_t> Statement::column_optional_int(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_int(index);
}

std::string Statement::column_blob(int index) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  const int size = sqlite3_column_bytes(stmt_, index);
  return data ? std::string(static_cast<const char*>(data), static_cast<std::size_t>(size))
              : std::string();
}

Transaction::Transaction(Database& db) : db_(db) { db_.begin_write(); }

Transaction::~Transaction() {
  if (open_) {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
      // The transaction may already be rolled back by SQLite after an I/O error.
    }
  }
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace meter::sqlite
