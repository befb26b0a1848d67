// A thin RAII layer over the SQLite C API: a connection, prepared statements
// and a transaction guard. Failures throw SqliteError (caught at the buffer's
// boundary and turned into Result errors with the SQLite message).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace meter::sqlite {

class SqliteError : public std::runtime_error {
 public:
  SqliteError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const { return code_; }
  // Disk full or an I/O error: worth retrying later, nothing is wrong with the data.
  bool is_resource_error() const;

 private:
  int code_;
};

class Statement;

class Database {
 public:
  Database() = default;
  explicit Database(const std::string& path,
                    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ~Database();
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(std::string_view sql);
  Statement prepare(std::string_view sql);
  std::int64_t last_insert_rowid() const;
  int changes() const;
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(int code, std::string_view context) const;

  // BEGIN IMMEDIATE, taking turns with the other connections that write
  // (sqlite.cpp says why and how). Transaction calls it.
  void begin_write();

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  // PATH-writers, where a connection waiting for the write lock says so (-1:
  // not opened yet, or cannot be: then this connection does not take turns).
  int writers_fd_ = -1;
  bool writers_file_tried_ = false;
};

class Statement {
 public:
  Statement() = default;
  Statement(const Database& db, std::string_view sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binding (1-based, as SQLite).
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, const void* data, std::size_t size);
  Statement& bind_null(int index);
  Statement& bind_optional(int index, const std::optional<std::string>& text);
  Statement& bind_optional(int index, const std::optional<std::int64_t>& value);

  // Steps once; true while a row is available.
  bool step();
  // Steps to completion (for statements returning no rows) and resets.
  void run();
  void reset();

  std::int64_t column_int(int index) const;
  bool column_is_null(int index) const;
  std::string column_text(int index) const;
  std::optional<std::string> column_optional_text(int index) const;
  std::optional<std::int64_t> column_optional_int(int index) const;
  std::string column_blob(int index) const;

 private:
  const Database* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// BEGIN IMMEDIATE on construction (Database::begin_write: in turn with the other
// writers), ROLLBACK on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool open_ = true;
};

}  // namespace meter::sqlite
