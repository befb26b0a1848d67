// Crash safety of the buffer. Acceptance: "a crash test kills a process
// (SIGKILL) mid-normalization many times and proves nothing is lost or
// doubled; it reports how many kills landed inside a transaction (it must see
// some), and PRAGMA integrity_check passes."
//
// A child process (fork, no exec) opens the buffer with two connections: one
// appends raw messages (one per transaction, as the acknowledge path committed
// before the inbox took that job, and now and then an import batch), the other
// normalizes them in batches of 50 to 500 and checkpoints, as the daemon's
// normalizer thread (agent/normalizer/) does. In even rounds the two take turns on one thread; in
// odd rounds the normalizing connection runs on a thread of its own, as in the daemon. A quarter of
// the rounds use durability power_loss, the rest normal. The parent SIGKILLs the child at a random
// moment after it has opened the buffer, checks the database, and starts the next child, many times
// over. At the end it normalizes the rest and compares everything with a reference buffer that got
// the same raw log and was normalized without any crash.
//
// Where each kill landed is known exactly, not guessed from timing: the child
// marks which buffer call each connection is in, and each connection reports
// its transaction state (BEGIN finished, write statements begun, the commit
// hook fired, COMMIT/ROLLBACK finished) into shared memory:
// sqlite3_auto_extension installs sqlite3_trace_v2 and sqlite3_commit_hook on
// the buffer's own connections.
//
// After every kill the parent checks: PRAGMA quick_check; the raw log holds
// every acknowledged message at the seq it was acknowledged with, has no gaps,
// and holds an interrupted append whole or not at all; a kill inside a
// normalization transaction before its commit left normalized_through_seq
// where the batch started, any kill in normalize_pending left it there or past
// the whole batch, and any other kill left it where the child last saw it. At
// the end: PRAGMA integrity_check; the raw log, row by row, is exactly the
// acknowledged messages (plus interrupted appends that happened to commit),
// each once, in order, byte for byte; and every measurement (event_id, value,
// delta, flags, revision, sync state, raw_seq, first_received_ms), every raw
// outcome and the status counters equal the uncrashed reference's. A batch
// applied twice shows in the duplicates counter or in revisions, a batch
// applied in part or lost in missing or extra rows or normalized_through_seq.
//
// Options (besides Catch2's): --kills N (default 100), --crash-seed S (the
// messages and the child's choices; the kill moments are random regardless),
// --max-delay-ms M (kill moments are uniform in [0, M] ms after the child has
// opened the buffer; default 50), --quick-check-every N (the quick_check
// after each kill is O(database) and dominates long runs; default 1),
// --initial-messages N (the raw log before the first child; default 3000).
#define CATCH_CONFIG_RUNNER
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/buffer/buffer.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/config/config.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/buffer_fixture.hpp"
#include "support/temp_dir.hpp"

namespace {

using meter::Buffer;
using meter::Config;
using meter::Durability;
using meter::Measurement;
using meter::RawMessage;
using meter::RawOutcome;

struct Options {
  int kills = 100;
  std::uint64_t seed = 0;  // 0: a random one (printed)
  int max_delay_ms = 50;
  int initial_messages = 3000;  // raw log before the first child
  int quick_check_every = 1;    // PRAGMA quick_check after every n-th kill (and the last)
};
Options g_options;

// ---------------------------------------------------------------------------
// The messages. Message k is a pure function of (seed, k), so the parent can
// rebuild any of them. Its receive time encodes k (received_ms_of), which
// makes every raw row identifiable even when payloads repeat.

constexpr std::int64_t kEpochMs = 1705276800000;  // 2024-01-15T00:00:00Z; Berlin is +01:00
constexpr std::int64_t kBerlinOffsetMs = 3600 * 1000;
constexpr std::int64_t kDevices = 6;

std::uint64_t mix64(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Draw {
 public:
  Draw(std::uint64_t seed, std::int64_t k)
      : state_(mix64(seed ^ mix64(static_cast<std::uint64_t>(k)))) {}
  std::int64_t below(std::int64_t n) {
    state_ = mix64(state_);
    return static_cast<std::int64_t>(state_ % static_cast<std::uint64_t>(n));
  }

 private:
  std::uint64_t state_;
};

std::int64_t received_ms_of(std::int64_t k) { return kEpochMs + k * 1000 + 500; }
std::int64_t message_of_received_ms(std::int64_t ms) { return (ms - kEpochMs - 500) / 1000; }
std::int64_t reading_ms(std::int64_t i) { return kEpochMs + i * 1000; }

// The energy register of device d at time index i, in Wh: rising.
std::int64_t counter_wh(std::int64_t d, std::int64_t i) { return (d + 1) * 4000000 + i * (d + 3); }

std::string fixed_point(std::int64_t value, int decimals) {
  const bool negative = value < 0;
  std::int64_t magnitude = negative ? -value : value;
  std::int64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  std::string text = std::to_string(magnitude / scale);
  if (decimals > 0) {
    std::string fraction = std::to_string(magnitude % scale);
    text += "." + std::string(static_cast<std::size_t>(decimals) - fraction.size(), '0') + fraction;
  }
  return negative ? "-" + text : text;
}

std::string timestamp_text(std::int64_t utc_ms, std::int64_t style) {
  if (style == 0) return meter::format_timestamp(utc_ms);  // ...Z
  std::string local = meter::format_timestamp(utc_ms + kBerlinOffsetMs);
  local.pop_back();  // the 'Z'
  if (style == 1) return local + "+01:00";
  return local;  // local time in the mapping's zone
}

std::string device_name(std::int64_t d) { return "m" + std::to_string(d); }

std::string energy_payload(Draw& draw, std::int64_t d, std::optional<std::int64_t> timestamp_ms,
                           std::int64_t wh) {
  const std::int64_t u = draw.below(10);
  std::string unit = u < 7 ? "kWh" : u < 9 ? "Wh" : "MWh";
  const std::string value = fixed_point(wh, unit == "kWh" ? 3 : unit == "Wh" ? 0 : 6);
  std::optional<std::string> ts;
  if (timestamp_ms) ts = timestamp_text(*timestamp_ms, draw.below(3));
  return meter::test::seed_payload(device_name(d), ts, "energy", value, unit);
}

std::string power_payload(Draw& draw, std::int64_t d, std::int64_t timestamp_ms) {
  const std::int64_t watts = draw.below(5000000);
  const bool in_kw = draw.below(2) == 0;
  return meter::test::seed_payload(device_name(d), timestamp_text(timestamp_ms, draw.below(3)),
                                   "power", fixed_point(watts, in_kw ? 3 : 0), in_kw ? "kW" : "W");
}

RawMessage generate(std::uint64_t seed, std::int64_t k) {
  Draw draw(seed, k);
  RawMessage m;
  m.received_ms = received_ms_of(k);
  const std::int64_t d = draw.below(kDevices);
  m.topic = "meters/" + device_name(d);
  const std::int64_t roll = draw.below(1000);
  if (roll < 500) {  // the common case: the newest reading of a device
    m.payload = energy_payload(draw, d, reading_ms(k), counter_wh(d, k));
  } else if (roll < 580) {  // a late arrival
    const std::int64_t i = std::max<std::int64_t>(0, k - 1 - draw.below(40));
    m.payload = energy_payload(draw, d, reading_ms(i), counter_wh(d, i));
  } else if (roll < 620 && k > 0) {  // a device publishing an earlier message again
    const RawMessage earlier = generate(seed, std::max<std::int64_t>(0, k - 1 - draw.below(300)));
    m.topic = earlier.topic;
    m.payload = earlier.payload;
    m.qos = earlier.qos;
  } else if (roll < 660 && k > 0) {  // an MQTT redelivery, now and then near the window's edge
    const std::int64_t back =
        roll < 655 ? 1 + draw.below(5) : meter::kRedeliveryWindow - 25 + draw.below(50);
    const RawMessage earlier = generate(seed, std::max<std::int64_t>(0, k - back));
    m.topic = earlier.topic;
    m.payload = earlier.payload;
    m.qos = earlier.qos;
    m.retained = earlier.retained;
    m.dup = true;
  } else if (roll < 675) {  // another value at a timestamp already used
    const std::int64_t i = std::max<std::int64_t>(0, k - draw.below(5));
    m.payload = energy_payload(draw, d, reading_ms(i), counter_wh(d, i) + 7);
  } else if (roll < 680) {  // a meter exchange: the register starts low (or is broken)
    m.payload = energy_payload(draw, d, reading_ms(k), draw.below(4) == 0 ? -5000 : 12500);
  } else if (roll < 683) {  // a clock far ahead
    const std::int64_t i = k + 400 + draw.below(100);
    m.payload = energy_payload(draw, d, reading_ms(i), counter_wh(d, i));
  } else if (roll < 780) {  // a gauge
    m.qos = draw.below(3) == 0 ? 0 : 1;
    m.payload = power_payload(draw, d, reading_ms(k));
  } else if (roll < 830) {  // no timestamp: stamped with the receive time, unless retained
    m.retained = draw.below(3) == 0;
    m.payload = energy_payload(draw, d, std::nullopt, counter_wh(d, k));
  } else if (roll < 860) {  // a batch of readings
    const std::int64_t other = (d + 1 + draw.below(kDevices - 1)) % kDevices;
    m.payload = "[" + energy_payload(draw, d, reading_ms(k), counter_wh(d, k)) + "," +
                power_payload(draw, other, reading_ms(k));
    if (draw.below(2) == 0) {
      m.payload += "," + energy_payload(draw, other, reading_ms(k), counter_wh(other, k));
    }
    m.payload += "]";
  } else if (roll < 900) {  // undecodable
    const std::string device = device_name(d);
    const std::string ts = timestamp_text(reading_ms(k), 0);
    switch (draw.below(8)) {
      case 0:
        m.payload = "{\"device_id\":\"" + device + "\",\"metric_type\":\"energy\",\"val";
        break;
      case 1:
        m.payload = std::string("\xff\xfe\0binary", 9);
        break;
      case 2:
        m.payload = meter::test::seed_payload(device, ts, "energy", "\"12,5\"", "kWh");
        break;
      case 3:
        m.payload = meter::test::seed_payload(device, ts, "energy", "12", "furlong");
        break;
      case 4:
        m.payload = meter::test::seed_payload(device, ts, "temperature", "21.5", "C");
        break;
      case 5:
        m.payload = "{\"device_id\":\"" + device + "\",\"value\":3}";
        break;
      case 6:
        m.payload = meter::test::seed_payload(device, "2024-13-01T00:00:00Z", "energy", "1", "kWh");
        break;
      default:
        m.payload = "[]";
        break;
    }
  } else if (roll < 920) {  // not a reading
    static const char* const kWords[] = {"online", "\"offline\"", "unavailable", "", "{}"};
    m.payload = kWords[draw.below(5)];
  } else if (roll < 930) {  // a topic no mapping covers
    m.topic = "plant/line1/" + device_name(d);
    m.payload = energy_payload(draw, d, reading_ms(k), counter_wh(d, k));
  } else {  // a retained reading with a timestamp: stored like any other
    m.retained = true;
    m.payload = energy_payload(draw, d, reading_ms(k), counter_wh(d, k));
  }
  return m;
}

// ---------------------------------------------------------------------------
// Shared memory between the parent and the child of the moment.

// What one SQLite connection of the child is doing, from its trace and commit
// hooks.
struct ConnectionState {
  std::atomic<int> transaction_open{0};  // BEGIN has finished, COMMIT/ROLLBACK has not
  std::atomic<int> autocommit_write{0};  // a write outside BEGIN..COMMIT is running
  std::atomic<int> committing{0};        // the commit hook fired, the commit has not finished
  std::atomic<std::int64_t> writes{0};   // write statements begun in the current transaction

  void reset() {
    transaction_open = 0;
    autocommit_write = 0;
    committing = 0;
    writes = 0;
  }
};

// The child's two connections: the appender and the normalizer.
enum ConnectionRole : int { kAppendConnection = 0, kNormalizeConnection = 1 };
enum AppendPhase : int { kAppendIdle, kAppending, kAppendingBatch };
enum NormalizePhase : int { kNormalizeIdle, kNormalizing, kCheckpointing };

// Targeted kills: the child SIGKILLs itself at the n-th such point of the
// normalizing connection inside normalize_pending, so that kills also land on
// exact transaction boundaries, which random moments rarely hit.
enum KillPoint : int {
  kRandomMoment = 0,  // the parent kills after a random delay
  kBeforeWrite,       // a write statement of the batch is about to run
  kInCommitHook,      // COMMIT has started; the commit hook fired
  kAtBegin,           // BEGIN is about to run
  kAfterCommit,       // COMMIT has finished
  kKillPoints
};
const char* const kKillPointNames[] = {"at a random moment", "before a write statement",
                                       "in the commit hook", "at BEGIN", "after COMMIT"};

struct Shared {
  // Which buffer call each connection is in.
  std::atomic<int> append_phase{kAppendIdle};
  std::atomic<int> normalize_phase{kNormalizeIdle};
  ConnectionState connection[2];
  // Appends. The child acknowledges message k by storing its seq in seq_of[k]
  // after append_raw returned; in_flight_* is the append in progress.
  std::atomic<std::int64_t> next_message{0};
  std::atomic<std::int64_t> in_flight_first{0};
  std::atomic<std::int64_t> in_flight_count{0};
  std::atomic<std::int64_t> last_seq{0};
  // Normalization: normalized_through_seq as the child saw it.
  std::atomic<std::int64_t> progress{0};
  std::atomic<std::int64_t> progress_before{0};  // before the running batch
  std::atomic<std::int64_t> batch_expected{0};   // messages it takes; -1: unknown (concurrent)
  std::atomic<std::int64_t> batches{0};          // normalize_pending calls that returned
  std::atomic<int> killed_itself_at{kRandomMoment};
  std::atomic<int> failed{0};
  char error[2048] = {};
};

static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<int>::is_always_lock_free);

constexpr std::int64_t kCapacity = std::int64_t{1}
                                   << 22;  // messages; 32 MiB of seqs, lazily mapped

class SharedMapping {
 public:
  SharedMapping() {
    bytes_ = sizeof(Shared) + static_cast<std::size_t>(kCapacity) * sizeof(std::int64_t);
    memory_ = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory_ == MAP_FAILED) throw std::runtime_error("mmap failed");
    shared_ = new (memory_) Shared();
    seq_of_ =
        new (static_cast<char*>(memory_) + sizeof(Shared)) std::atomic<std::int64_t>[kCapacity];
  }
  ~SharedMapping() { ::munmap(memory_, bytes_); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  Shared& shared() { return *shared_; }
  std::atomic<std::int64_t>* seq_of() { return seq_of_; }

 private:
  void* memory_ = nullptr;
  std::size_t bytes_ = 0;
  Shared* shared_ = nullptr;
  std::atomic<std::int64_t>* seq_of_ = nullptr;
};

// ---------------------------------------------------------------------------
// The child.

Shared* g_child_shared = nullptr;  // for the SQLite callbacks
int g_child_connections = 0;       // connections opened so far: the first appends
int g_kill_point = kRandomMoment;  // where this child kills itself, if anywhere
std::atomic<std::int64_t> g_kill_countdown{0};

// At the n-th `point` of the normalizing connection inside normalize_pending.
void maybe_kill_myself(const ConnectionState& connection, int point) {
  Shared& shared = *g_child_shared;
  if (point != g_kill_point || &connection != &shared.connection[kNormalizeConnection] ||
      shared.normalize_phase != kNormalizing) {
    return;
  }
  if (--g_kill_countdown == 0) {
    shared.killed_itself_at = point;
    ::kill(::getpid(), SIGKILL);
  }
}

bool starts_with_keyword(const char* sql, std::string_view keyword) {
  if (sql == nullptr) return false;
  while (*sql == ' ' || *sql == '\n' || *sql == '\t') ++sql;
  for (char expected : keyword) {
    char c = *sql++;
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != expected) return false;
  }
  return true;
}

// A transaction is open from the moment BEGIN has finished (it may wait for
// the write lock first) until COMMIT or ROLLBACK has finished.
int on_trace(unsigned type, void* context, void* p, void* x) {
  ConnectionState& s = *static_cast<ConnectionState*>(context);
  auto* statement = static_cast<sqlite3_stmt*>(p);
  if (type == SQLITE_TRACE_STMT) {
    const char* sql = static_cast<const char*>(x);  // unexpanded SQL of the statement
    if (starts_with_keyword(sql, "BEGIN")) maybe_kill_myself(s, kAtBegin);
    if (sqlite3_stmt_readonly(statement) == 0 && !starts_with_keyword(sql, "BEGIN")) {
      maybe_kill_myself(s, kBeforeWrite);
      if (s.transaction_open == 0) {
        s.writes = 0;
        s.autocommit_write = 1;
      }
      ++s.writes;
    }
  } else if (type == SQLITE_TRACE_PROFILE) {  // the statement finished
    const char* sql = sqlite3_sql(statement);
    if (starts_with_keyword(sql, "BEGIN")) {
      s.writes = 0;
      s.transaction_open = sqlite3_get_autocommit(sqlite3_db_handle(statement)) == 0 ? 1 : 0;
    } else if (starts_with_keyword(sql, "COMMIT") || starts_with_keyword(sql, "END") ||
               starts_with_keyword(sql, "ROLLBACK")) {
      s.transaction_open = 0;
      s.committing = 0;
      if (!starts_with_keyword(sql, "ROLLBACK")) maybe_kill_myself(s, kAfterCommit);
    } else if (s.autocommit_write != 0 && sqlite3_stmt_readonly(statement) == 0) {
      s.autocommit_write = 0;
      s.committing = 0;
    }
  }
  return 0;
}

int on_commit(void* context) {
  auto& connection = *static_cast<ConnectionState*>(context);
  connection.committing = 1;
  maybe_kill_myself(connection, kInCommitHook);
  return 0;  // go ahead
}

// Runs for every connection the child opens (sqlite3_auto_extension).
int on_connection(sqlite3* db, const char** /*error*/, const sqlite3_api_routines* /*api*/) {
  const int index = g_child_connections++;
  if (index > kNormalizeConnection) return SQLITE_OK;
  ConnectionState* state = &g_child_shared->connection[index];
  sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, on_trace, state);
  sqlite3_commit_hook(db, on_commit, state);
  return SQLITE_OK;
}

struct ChildPlan {
  Config config;
  std::uint64_t message_seed = 0;
  std::uint64_t action_seed = 0;
  bool concurrent = false;  // normalize on a thread of its own while appending
  int kill_point = kRandomMoment;
  std::int64_t kill_at = 0;  // the n-th kill_point
  bool warm_up = false;      // signal the first completed batch (the kill's delay starts there)
};

[[noreturn]] void child_fail(Shared& shared, const std::string& message) {
  if (shared.failed.exchange(1) == 0) {
    const std::size_t n = std::min(message.size(), sizeof shared.error - 1);
    std::memcpy(shared.error, message.data(), n);
    shared.error[n] = '\0';
  }
  ::_exit(3);
}

// The child's work: what the daemon's acknowledge path and normalizer thread
// do, with the bookkeeping the parent checks after the kill.
class ChildWork {
 public:
  ChildWork(const ChildPlan& plan, Shared& shared, std::atomic<std::int64_t>* seq_of,
            Buffer& appender, Buffer& normalizer, int signal_fd)
      : plan_(plan),
        shared_(shared),
        seq_of_(seq_of),
        appender_(appender),
        normalizer_(normalizer),
        next_(shared.next_message),
        last_seq_(shared.last_seq),
        progress_(shared.progress),
        published_last_seq_(last_seq_),
        published_progress_(progress_),
        signal_fd_(signal_fd) {}

  // One message in its own transaction, acknowledged when it returns.
  void append_one() {
    const RawMessage message = generate(plan_.message_seed, next_);
    shared_.in_flight_first = next_;
    shared_.in_flight_count = 1;
    shared_.append_phase = kAppending;
    auto seq = appender_.append_raw_batch({message});
    if (!seq) child_fail(shared_, "append: " + seq.error().message);
    if (*seq != last_seq_ + 1) {
      child_fail(shared_, "append returned seq " + std::to_string(*seq) + ", expected " +
                              std::to_string(last_seq_ + 1));
    }
    acknowledge(1);
  }

  // An offline import: all or nothing.
  void append_import(std::int64_t n) {
    std::vector<RawMessage> batch;
    for (std::int64_t j = 0; j < n; ++j) batch.push_back(generate(plan_.message_seed, next_ + j));
    shared_.in_flight_first = next_;
    shared_.in_flight_count = n;
    shared_.append_phase = kAppendingBatch;
    auto last = appender_.append_raw_batch(batch);
    if (!last) child_fail(shared_, "append_raw_batch: " + last.error().message);
    if (*last != last_seq_ + n) {
      child_fail(shared_, "append_raw_batch returned seq " + std::to_string(*last) + ", expected " +
                              std::to_string(last_seq_ + n));
    }
    acknowledge(n);
  }

  // One normalization batch. `expected`: the messages it must take, or -1
  // when appends run concurrently (then at least one, at most what was
  // committed when it returned).
  void normalize(std::int64_t max_messages, std::int64_t expected) {
    shared_.progress_before = progress_;
    shared_.batch_expected = expected;
    shared_.normalize_phase = kNormalizing;
    auto stats =
        normalizer_.normalize_pending(plan_.config, static_cast<std::size_t>(max_messages));
    if (!stats) child_fail(shared_, "normalize_pending: " + stats.error().message);
    const bool plausible = expected >= 0
                               ? stats->messages == expected
                               : stats->messages >= 1 && stats->messages <= max_messages &&
                                     progress_ + stats->messages <= published_last_seq();
    if (!plausible) {
      child_fail(shared_, "normalize_pending took " + std::to_string(stats->messages) +
                              " messages, expected " + std::to_string(expected) + " (max " +
                              std::to_string(max_messages) + ")");
    }
    progress_ += stats->messages;
    shared_.progress = progress_;
    if (++shared_.batches == 1 && plan_.warm_up) {
      const char warm = 'w';
      if (::write(signal_fd_, &warm, 1) != 1) child_fail(shared_, "cannot signal the first batch");
    }
    shared_.normalize_phase = kNormalizeIdle;
  }

  void checkpoint() {
    shared_.normalize_phase = kCheckpointing;
    auto done = normalizer_.checkpoint();
    if (!done) child_fail(shared_, "checkpoint: " + done.error().message);
    shared_.normalize_phase = kNormalizeIdle;
  }

  // One connection appends and the other normalizes, taking turns.
  [[noreturn]] void run_sequential() {
    std::mt19937_64 rng(plan_.action_seed);
    for (;;) {
      const std::int64_t roll = uniform(rng, 0, 99);
      if (roll < 45 && next_ + 40 < kCapacity) {
        for (std::int64_t n = uniform(rng, 1, 40); n > 0; --n) append_one();
      } else if (roll < 52 && next_ + 800 < kCapacity) {
        append_import(uniform(rng, 50, 800));
      } else if (roll < 97) {
        const std::int64_t max_messages = uniform(rng, 50, 500);
        normalize(max_messages, std::min(max_messages, last_seq_ - progress_));
      } else {
        checkpoint();
      }
    }
  }

  // As the daemon: this thread appends, another normalizes whenever
  // something is pending (and checkpoints now and then).
  [[noreturn]] void run_concurrent() {
    std::thread normalizer_thread([this] {
      std::mt19937_64 rng(plan_.action_seed ^ 0x5bd1e995);
      for (;;) {
        {
          std::unique_lock lock(mutex_);
          changed_.wait(lock, [&] { return published_last_seq_ > progress_; });
        }
        if (uniform(rng, 0, 99) < 5) checkpoint();
        normalize(uniform(rng, 50, 500), -1);
        {
          std::lock_guard lock(mutex_);
          published_progress_ = progress_;
        }
        changed_.notify_all();
      }
    });
    normalizer_thread.detach();  // both threads end with the process
    std::mt19937_64 rng(plan_.action_seed);
    for (;;) {
      {  // Keep the backlog bounded, as a broker's in-flight window would.
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return published_last_seq_ - published_progress_ < 3000; });
      }
      if (uniform(rng, 0, 99) < 90 && next_ + 40 < kCapacity) {
        for (std::int64_t n = uniform(rng, 1, 40); n > 0; --n) append_one();
      } else if (next_ + 800 < kCapacity) {
        append_import(uniform(rng, 50, 800));
      }
    }
  }

 private:
  static std::int64_t uniform(std::mt19937_64& rng, std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  }

  void acknowledge(std::int64_t n) {
    for (std::int64_t j = 0; j < n; ++j) seq_of_[next_ + j] = last_seq_ + 1 + j;
    last_seq_ += n;
    next_ += n;
    shared_.last_seq = last_seq_;
    shared_.next_message = next_;
    shared_.in_flight_count = 0;
    shared_.append_phase = kAppendIdle;
    {
      std::lock_guard lock(mutex_);
      published_last_seq_ = last_seq_;
    }
    changed_.notify_all();
  }

  std::int64_t published_last_seq() {
    std::lock_guard lock(mutex_);
    return published_last_seq_;
  }

  const ChildPlan& plan_;
  Shared& shared_;
  std::atomic<std::int64_t>* seq_of_;
  Buffer& appender_;
  Buffer& normalizer_;
  std::int64_t next_;      // appending thread only
  std::int64_t last_seq_;  // appending thread only
  std::int64_t progress_;  // normalizing thread only
  // For the other thread (concurrent rounds), guarded by mutex_:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::int64_t published_last_seq_;
  std::int64_t published_progress_;
  int signal_fd_;  // the pipe to the parent
};

// Opens the buffer as the daemon does and works until killed. Never returns.
[[noreturn]] void run_child(const ChildPlan& plan, Shared& shared,
                            std::atomic<std::int64_t>* seq_of, int ready_fd, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(4);  // the parent is gone already
  try {
    g_child_shared = &shared;
    g_kill_point = plan.kill_point;
    g_kill_countdown = plan.kill_at;
    sqlite3_auto_extension(reinterpret_cast<void (*)()>(&on_connection));
    auto appender = Buffer::open(plan.config.buffer);  // first: kAppendConnection
    if (!appender) child_fail(shared, "open: " + appender.error().message);
    auto normalizer = Buffer::open(plan.config.buffer);  // second: kNormalizeConnection
    if (!normalizer) child_fail(shared, "open: " + normalizer.error().message);
    ChildWork work(plan, shared, seq_of, **appender, **normalizer, ready_fd);
    const char ready = 'r';
    if (::write(ready_fd, &ready, 1) != 1) child_fail(shared, "cannot signal readiness");
    // ready_fd stays open: the parent sees it close when this process dies.
    if (plan.concurrent) work.run_concurrent();
    work.run_sequential();
  } catch (const std::exception& e) {
    child_fail(shared, std::string("exception: ") + e.what());
  } catch (...) {
    child_fail(shared, "unknown exception");
  }
}

// Kills and reaps the child on every path out of the parent's loop.
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (pid_ > 0) kill_and_wait();
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  int kill_and_wait() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// ---------------------------------------------------------------------------
// Parent-side helpers.

std::string describe_child_end(int status, const Shared& shared) {
  std::ostringstream out;
  if (WIFEXITED(status)) {
    out << "child exited with " << WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out << "child died of signal " << WTERMSIG(status);
  }
  if (shared.failed != 0) out << ": " << shared.error;
  return out.str();
}

std::vector<std::string> pragma_rows(meter::sqlite::Database& db, const char* pragma) {
  std::vector<std::string> rows;
  auto statement = db.prepare(pragma);
  while (statement.step()) rows.push_back(statement.column_text(0));
  return rows;
}

std::int64_t single_int(meter::sqlite::Database& db, const char* sql) {
  auto statement = db.prepare(sql);
  if (!statement.step()) throw std::runtime_error(std::string("no row: ") + sql);
  return statement.column_int(0);
}

std::string flags_text(meter::FlagSet flags) { return meter::join_flags(flags, ';'); }

std::string describe(const Measurement& m) {
  std::ostringstream out;
  out << m.device_id << "/" << m.metric_type << " " << meter::format_timestamp(m.timestamp_ms)
      << " value=" << m.value << " " << m.unit << " delta=" << m.delta.value_or("null")
      << " flags=" << flags_text(m.flags) << " revision=" << m.revision
      << " synced_revision=" << m.synced_revision << " raw_seq=" << m.raw_seq
      << " first_received=" << m.first_received_ms << " event_id=" << m.event_id;
  return out.str();
}

bool same(const Measurement& a, const Measurement& b) {
  return a.event_id == b.event_id && a.device_id == b.device_id && a.metric_type == b.metric_type &&
         a.timestamp_ms == b.timestamp_ms && a.value == b.value && a.unit == b.unit &&
         a.delta == b.delta && a.flags == b.flags && a.revision == b.revision &&
         a.synced_revision == b.synced_revision && a.raw_seq == b.raw_seq &&
         a.first_received_ms == b.first_received_ms;
}

struct Snapshot {
  meter::BufferStatus status;
  std::vector<Measurement> measurements;
  std::vector<RawOutcome> outcomes;
};

Snapshot snapshot(Buffer& buffer) {
  Snapshot s;
  auto status = buffer.status();
  REQUIRE(status);
  s.status = *status;
  auto listed =
      buffer.for_each_measurement([&](const Measurement& m) { s.measurements.push_back(m); });
  REQUIRE(listed);
  auto outcomes =
      buffer.for_each_raw_outcome([&](const RawOutcome& o) { s.outcomes.push_back(o); });
  REQUIRE(outcomes);
  return s;
}

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

struct Tally {
  int kills = 0;
  // Inside normalize_pending:
  int normalize_writes = 0;         // in its transaction, with uncommitted writes
  int normalize_before_writes = 0;  // in its transaction, before the first write
  int normalize_committing = 0;     // between the commit hook and the end of COMMIT
  int normalize_outside_txn = 0;    // in the call but outside BEGIN..COMMIT
  int normalize_rolled_back = 0;    // normalized_through_seq found where the batch started
  int normalize_committed = 0;      // ... or past the whole batch
  // Inside appends:
  int append_single = 0;
  int append_batch = 0;
  int append_committed_unacknowledged = 0;  // the interrupted append turned out committed
  int append_lost_unacknowledged = 0;       // ... or not: the broker would redeliver it
  // Neither in a normalization transaction nor in an append: between calls,
  // in normalize_pending outside its transaction, in a checkpoint.
  int outside = 0;
  int both = 0;  // in a normalization transaction and an append (concurrent rounds)
  int by_point[kKillPoints] = {};  // where the kill came from (KillPoint)
  int missed_points = 0;           // targeted, but the child had not got there in time
  int warm = 0;                    // random, timed from the child's first completed batch
  int concurrent_rounds = 0;

  int normalize() const {
    return normalize_writes + normalize_before_writes + normalize_committing +
           normalize_outside_txn;
  }
  int inside_transaction() const {
    return normalize_writes + normalize_before_writes + normalize_committing;
  }
};

}  // namespace

TEST_CASE("SIGKILL mid-normalization loses nothing and doubles nothing", "[crash]") {
  const Options options = g_options;
  REQUIRE(options.kills > 0);
  REQUIRE(options.quick_check_every > 0);
  std::uint64_t seed = options.seed;
  if (seed == 0) seed = (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  std::cout << "crash test: --crash-seed " << seed << " --kills " << options.kills
            << " --max-delay-ms " << options.max_delay_ms << std::endl;
  std::mt19937_64 rng(seed);

  meter::test::TempDir dir;
  Config config = meter::test::make_config();
  config.buffer.path = dir.file("buffer.db");
  config.buffer.durability = Durability::normal;

  SharedMapping mapping;
  Shared& shared = mapping.shared();
  std::atomic<std::int64_t>* seq_of = mapping.seq_of();

  // The raw log in seq order: log[seq - 1] is the message number stored at seq.
  std::vector<std::int64_t> log;
  std::vector<std::int64_t> lost;  // interrupted, unacknowledged and not in the log

  {  // A backlog to start with, so the first children have normalizing to do.
    auto opened = Buffer::open(config.buffer);
    REQUIRE(opened);
    std::vector<RawMessage> initial;
    for (std::int64_t k = 0; k < options.initial_messages; ++k)
      initial.push_back(generate(seed, k));
    auto last = (*opened)->append_raw_batch(initial);
    REQUIRE(last);
    REQUIRE(*last == options.initial_messages);
    for (std::int64_t k = 0; k < options.initial_messages; ++k) log.push_back(k);
    shared.next_message = options.initial_messages;
    shared.last_seq = options.initial_messages;
  }  // closed: no SQLite connection is open across fork()

  Tally tally;
  using Clock = std::chrono::steady_clock;
  const auto started_at = Clock::now();
  Clock::duration in_checks{};
  std::int64_t total_batches = 0;
  const pid_t parent = ::getpid();
  for (int round = 0; round < options.kills; ++round) {
    // This child's starting point, as the previous kill left it.
    const std::int64_t first_message = shared.next_message;
    shared.append_phase = kAppendIdle;
    shared.normalize_phase = kNormalizeIdle;
    for (auto& connection : shared.connection) connection.reset();
    shared.in_flight_count = 0;
    shared.batch_expected = 0;
    shared.batches = 0;
    shared.progress_before = shared.progress.load();

    ChildPlan plan;
    plan.config = config;
    // Every combination of durability, concurrency and kill point comes round.
    plan.config.buffer.durability =
        (round / 2) % 2 == 1 ? Durability::power_loss : Durability::normal;
    plan.message_seed = seed;
    plan.action_seed = rng();
    plan.concurrent = round % 2 == 1;
    if (round % 3 == 2) {  // a targeted kill, cycling through the points
      plan.kill_point = 1 + (round / 3) % (kKillPoints - 1);
      plan.kill_at = std::uniform_int_distribution<std::int64_t>(
          1, plan.kill_point == kBeforeWrite ? 1000 : 4)(rng);
    }
    // Half the random kills are timed from the child's first completed batch
    // rather than from its start, so that they do not all land in what a
    // restart does first (the redelivery index is loaded in the first batch).
    plan.warm_up = plan.kill_point == kRandomMoment && (round / 6) % 2 == 1;
    shared.killed_itself_at = kRandomMoment;
    const auto delay = std::chrono::microseconds(
        std::uniform_int_distribution<std::int64_t>(0, options.max_delay_ms * 1000)(rng));

    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    Fd ready_read(fds[0]);
    Fd ready_write(fds[1]);
    std::cout.flush();
    std::cerr.flush();
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      run_child(plan, shared, seq_of, fds[1], parent);
    }
    ChildProcess child(pid);
    ready_write.reset();

    // Wait until the child has opened the buffer and is at work (or has
    // completed its first batch), then kill it at a random moment: that
    // moment is what this test varies. A child that is to kill itself is
    // waited for (its end of the pipe closes when it dies), and killed if it
    // has not within 10 s.
    pollfd ready{ready_read.get(), POLLIN, 0};
    const int polled = ::poll(&ready, 1, 60000);
    char byte = 0;
    const bool started = polled == 1 && ::read(ready_read.get(), &byte, 1) == 1;
    if (!started) {
      const int status = child.kill_and_wait();
      FAIL("child " << round << " did not start: " << describe_child_end(status, shared));
    }
    if (plan.kill_point == kRandomMoment) {
      if (plan.warm_up) {
        pollfd warm{ready_read.get(), POLLIN, 0};
        const bool warmed = ::poll(&warm, 1, 10000) == 1 && ::read(ready_read.get(), &byte, 1) == 1;
        if (warmed) ++tally.warm;
      }
      std::this_thread::sleep_for(delay);
    } else {
      pollfd gone{ready_read.get(), POLLIN, 0};
      ::poll(&gone, 1, 10000);
    }
    const int status = child.kill_and_wait();
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      FAIL("child " << round << " was not killed at work: " << describe_child_end(status, shared));
    }
    ++tally.kills;
    total_batches += shared.batches;
    const int killed_itself_at = shared.killed_itself_at;
    ++tally.by_point[killed_itself_at];
    if (plan.kill_point != kRandomMoment && killed_itself_at == kRandomMoment)
      ++tally.missed_points;

    // Where did it land?
    const bool in_normalize = shared.normalize_phase == kNormalizing;
    const ConnectionState& normalizing = shared.connection[kNormalizeConnection];
    const bool transaction_open = normalizing.transaction_open != 0;
    const bool committing = normalizing.committing != 0;
    const bool in_normalize_transaction = in_normalize && (transaction_open || committing);
    if (in_normalize) {
      if (committing) {
        ++tally.normalize_committing;
      } else if (transaction_open && normalizing.writes > 0) {
        ++tally.normalize_writes;
      } else if (transaction_open) {
        ++tally.normalize_before_writes;
      } else {
        ++tally.normalize_outside_txn;
      }
    }
    const int append_phase = shared.append_phase;
    if (append_phase == kAppending) ++tally.append_single;
    if (append_phase == kAppendingBatch) ++tally.append_batch;
    const bool in_append = append_phase != kAppendIdle;
    if (in_normalize_transaction && in_append) ++tally.both;
    if (!in_normalize_transaction && !in_append) ++tally.outside;
    if (plan.concurrent) ++tally.concurrent_rounds;

    INFO("after kill " << round);
    meter::sqlite::Database db(config.buffer.path);  // recovers the WAL, as a restart does
    if (round % options.quick_check_every == 0 || round + 1 == options.kills) {
      const auto check_started = Clock::now();
      const auto quick = pragma_rows(db, "PRAGMA quick_check");
      in_checks += Clock::now() - check_started;
      REQUIRE(quick == std::vector<std::string>{"ok"});
    }

    // The raw log: every acknowledged message at its seq; an interrupted
    // append whole or not at all.
    const std::int64_t raw_count = single_int(db, "SELECT count(*) FROM raw_messages");
    const std::int64_t raw_max = single_int(db, "SELECT coalesce(max(seq), 0) FROM raw_messages");
    REQUIRE(raw_count == raw_max);  // no gaps
    const std::int64_t in_flight_first = shared.in_flight_first;
    const std::int64_t in_flight_end =
        shared.in_flight_count > 0 ? in_flight_first + shared.in_flight_count : in_flight_first;
    const std::int64_t end = std::max<std::int64_t>(shared.next_message, in_flight_end);
    std::vector<std::int64_t> unacknowledged;
    bool acknowledged_in_flight = false;
    for (std::int64_t k = first_message; k < end; ++k) {
      const std::int64_t seq = seq_of[k];
      if (seq != 0) {
        INFO("message " << k);
        REQUIRE(unacknowledged.empty());  // acknowledged in order
        REQUIRE(seq == static_cast<std::int64_t>(log.size()) + 1);
        log.push_back(k);
        if (k >= in_flight_first && k < in_flight_end) acknowledged_in_flight = true;
      } else {
        REQUIRE(k >= in_flight_first);
        REQUIRE(k < in_flight_end);
        unacknowledged.push_back(k);
      }
    }
    const auto acknowledged = static_cast<std::int64_t>(log.size());
    const auto pending = static_cast<std::int64_t>(unacknowledged.size());
    if (raw_count == acknowledged + pending && pending > 0) {
      // The interrupted append committed: its rows must be exactly those messages.
      auto rows = db.prepare("SELECT received_ms FROM raw_messages WHERE seq > ?1 ORDER BY seq");
      rows.bind(1, acknowledged);
      for (std::int64_t k : unacknowledged) {
        REQUIRE(rows.step());
        REQUIRE(message_of_received_ms(rows.column_int(0)) == k);
        log.push_back(k);
      }
      ++tally.append_committed_unacknowledged;
    } else {
      INFO("raw messages " << raw_count << ", acknowledged " << acknowledged
                           << ", interrupted append of " << pending);
      REQUIRE(raw_count == acknowledged);
      REQUIRE_FALSE(acknowledged_in_flight);  // a batch is all or nothing
      lost.insert(lost.end(), unacknowledged.begin(), unacknowledged.end());
      if (pending > 0) ++tally.append_lost_unacknowledged;
    }

    // Normalization progress: a batch is all or nothing, and a kill inside its
    // transaction before the commit rolls it back.
    const std::int64_t through =
        single_int(db, "SELECT value FROM counters WHERE name = 'normalized_through_seq'");
    if (in_normalize) {
      const std::int64_t before = shared.progress_before;
      const std::int64_t expected = shared.batch_expected;
      INFO("normalized_through_seq " << through << ", before the batch " << before << ", batch of "
                                     << expected << " (-1: concurrent)");
      if (expected >= 0) {
        REQUIRE((through == before || through == before + expected));
      } else {
        REQUIRE(through >= before);
        REQUIRE(through <= raw_count);
      }
      if (transaction_open && !committing) REQUIRE(through == before);
      INFO("the child killed itself " << kKillPointNames[killed_itself_at]);
      switch (killed_itself_at) {
        case kBeforeWrite:
        case kInCommitHook:
        case kAtBegin:
          REQUIRE(through == before);
          break;
        case kAfterCommit:
          if (expected >= 0) {
            REQUIRE(through == before + expected);
          } else {
            REQUIRE(through > before);
          }
          break;
        default:
          break;
      }
      if (through != before) {
        ++tally.normalize_committed;
      } else if (expected != 0) {
        ++tally.normalize_rolled_back;
      }
    } else {
      REQUIRE(through == shared.progress);
    }

    shared.next_message = end;
    shared.last_seq = raw_count;
    shared.progress = through;
  }

  const auto kills_done_at = Clock::now();
  // Normalize the rest, as the agent does after a restart.
  Snapshot crashed;
  {
    auto opened = Buffer::open(config.buffer);
    REQUIRE(opened);
    auto stats = (*opened)->normalize_all(config);
    REQUIRE(stats);
    crashed = snapshot(**opened);
  }

  // (1) The database is intact.
  meter::sqlite::Database db(config.buffer.path);
  const auto integrity = pragma_rows(db, "PRAGMA integrity_check");
  REQUIRE(integrity == std::vector<std::string>{"ok"});

  // (2) The raw log is exactly the acknowledged messages (and interrupted
  // appends that committed), each once, in order, byte for byte.
  const auto raw_total = static_cast<std::int64_t>(log.size());
  {
    std::vector<bool> seen(static_cast<std::size_t>(shared.next_message.load()), false);
    for (std::int64_t k : log) {
      REQUIRE(k < shared.next_message);
      REQUIRE_FALSE(seen[static_cast<std::size_t>(k)]);
      seen[static_cast<std::size_t>(k)] = true;
    }
    for (std::int64_t k : lost) {
      REQUIRE_FALSE(seen[static_cast<std::size_t>(k)]);
      seen[static_cast<std::size_t>(k)] = true;
    }
    REQUIRE(std::all_of(seen.begin(), seen.end(), [](bool b) { return b; }));  // none unaccounted

    auto rows = db.prepare(
        "SELECT seq, received_ms, topic, payload, qos, retained, dup FROM raw_messages ORDER BY "
        "seq");
    std::int64_t seq = 0;
    while (rows.step()) {
      ++seq;
      INFO("raw message at seq " << seq);
      REQUIRE(rows.column_int(0) == seq);
      REQUIRE(seq <= raw_total);
      const std::int64_t k = log[static_cast<std::size_t>(seq - 1)];
      const RawMessage expected = generate(seed, k);
      REQUIRE(rows.column_int(1) == expected.received_ms);
      REQUIRE(rows.column_text(2) == expected.topic);
      REQUIRE(rows.column_blob(3) == expected.payload);
      REQUIRE(rows.column_int(4) == expected.qos);
      REQUIRE(rows.column_int(5) == (expected.retained ? 1 : 0));
      REQUIRE(rows.column_int(6) == (expected.dup ? 1 : 0));
    }
    REQUIRE(seq == raw_total);
  }

  // (3) Normalization equals that of the same raw log without any crash.
  meter::test::TempDir reference_dir;
  Config reference_config = config;
  reference_config.buffer.path = reference_dir.file("reference.db");
  Snapshot reference;
  {
    auto opened = Buffer::open(reference_config.buffer);
    REQUIRE(opened);
    std::vector<RawMessage> chunk;
    for (std::size_t i = 0; i < log.size(); ++i) {
      chunk.push_back(generate(seed, log[i]));
      if (chunk.size() == 10000 || i + 1 == log.size()) {
        auto appended = (*opened)->append_raw_batch(chunk);
        REQUIRE(appended);
        chunk.clear();
      }
    }
    auto stats = (*opened)->normalize_all(reference_config);
    REQUIRE(stats);
    reference = snapshot(**opened);
  }

  // Everything the crashed buffer reports must equal the reference: a batch
  // applied twice shows in the duplicates counter or in revisions, one lost in
  // missing rows or normalized_through_seq.
  const auto& cs = crashed.status;
  const auto& rs = reference.status;
  std::vector<std::string> differences;
  auto compare = [&](const char* what, auto crashed_value, auto reference_value) {
    if (crashed_value != reference_value) {
      std::ostringstream out;
      out << what << ": crashed " << crashed_value << ", reference " << reference_value;
      differences.push_back(out.str());
    }
  };
  compare("raw_messages vs. the log", cs.raw_messages, raw_total);
  compare("last_seq vs. the log", cs.last_seq, raw_total);
  compare("normalized_through_seq vs. last_seq", cs.normalized_through_seq, cs.last_seq);
  compare("raw_messages", cs.raw_messages, rs.raw_messages);
  compare("normalized_through_seq", cs.normalized_through_seq, rs.normalized_through_seq);
  compare("duplicates", cs.duplicates, rs.duplicates);
  compare("decode_errors", cs.decode_errors, rs.decode_errors);
  compare("ignored", cs.ignored, rs.ignored);
  compare("series", cs.series, rs.series);
  compare("measurements", cs.measurements, rs.measurements);
  compare("unsynced", cs.unsynced, rs.unsynced);
  for (const auto& [name, count] : rs.flag_counts) {
    const auto found = cs.flag_counts.find(name);
    compare(("measurements flagged " + name).c_str(),
            found == cs.flag_counts.end() ? std::int64_t{0} : found->second, count);
  }
  for (const auto& [name, count] : cs.flag_counts) {
    if (rs.flag_counts.count(name) == 0) {
      compare(("measurements flagged " + name).c_str(), count, std::int64_t{0});
    }
  }
  compare("exported measurements", crashed.measurements.size(), reference.measurements.size());
  int shown = 0;
  for (std::size_t i = 0; i < std::min(crashed.measurements.size(), reference.measurements.size());
       ++i) {
    if (!same(crashed.measurements[i], reference.measurements[i]) && shown++ < 5) {
      differences.push_back("measurement " + std::to_string(i) +
                            ":\n    crashed:   " + describe(crashed.measurements[i]) +
                            "\n    reference: " + describe(reference.measurements[i]));
    }
  }
  compare("raw outcomes", crashed.outcomes.size(), reference.outcomes.size());
  shown = 0;
  for (std::size_t i = 0; i < std::min(crashed.outcomes.size(), reference.outcomes.size()); ++i) {
    const auto& c = crashed.outcomes[i];
    const auto& r = reference.outcomes[i];
    if ((c.seq != r.seq || c.kind != r.kind || c.reason != r.reason) && shown++ < 5) {
      differences.push_back("raw outcome " + std::to_string(i) + ": crashed seq " +
                            std::to_string(c.seq) + " " + c.kind + " '" + c.reason +
                            "', reference seq " + std::to_string(r.seq) + " " + r.kind + " '" +
                            r.reason + "'");
    }
  }
  if (!differences.empty()) {
    std::string all;
    for (const auto& d : differences) all += "\n  " + d;
    FAIL("the crashed buffer differs from the uncrashed reference (crash test seed "
         << seed << "):" << all);
  }

  // The run exercised what it claims to.
  std::int64_t revised = 0;
  for (const auto& m : crashed.measurements) {
    if (m.revision > 1) ++revised;
  }
  auto flagged = [&](const char* name) {
    auto found = cs.flag_counts.find(name);
    return found == cs.flag_counts.end() ? std::int64_t{0} : found->second;
  };
  REQUIRE(cs.duplicates > 0);
  REQUIRE(cs.decode_errors > 0);
  REQUIRE(cs.ignored > 0);
  REQUIRE(revised > 0);
  REQUIRE(flagged("out_of_order") > 0);
  REQUIRE(flagged("timestamp_conflict") > 0);
  REQUIRE(flagged("gateway_timestamp") > 0);
  // Drops: glitches (the series came back) or resets (docs/QUALITY.md).
  REQUIRE(flagged("counter_reset") + flagged("glitch") > 0);
  REQUIRE(flagged("future_timestamp") > 0);

  std::cout << "crash test: " << tally.kills << " kills, " << tally.inside_transaction()
            << " inside normalization transactions (" << tally.normalize_writes
            << " with uncommitted writes), " << tally.append_single + tally.append_batch
            << " inside appends, " << tally.outside << " outside";
  if (tally.both > 0) std::cout << " (" << tally.both << " inside both)";
  std::cout << "; integrity ok; " << raw_total << " raw messages, " << crashed.measurements.size()
            << " measurements identical to the uncrashed reference\n"
            << "  normalization kills: " << tally.normalize_writes << " with uncommitted writes, "
            << tally.normalize_before_writes << " after BEGIN before the first write, "
            << tally.normalize_committing << " during COMMIT, " << tally.normalize_outside_txn
            << " in normalize_pending outside its transaction (e.g. waiting for the write lock); "
            << "afterwards the batch was not applied " << tally.normalize_rolled_back
            << " times, applied whole " << tally.normalize_committed << " times\n"
            << "  append kills: " << tally.append_single << " single, " << tally.append_batch
            << " import batches; " << tally.append_committed_unacknowledged << " had committed, "
            << tally.append_lost_unacknowledged << " had not (" << lost.size()
            << " unacknowledged messages not stored)\n"
            << "  kills " << kKillPointNames[kRandomMoment] << ": " << tally.by_point[kRandomMoment]
            << " (" << tally.warm << " timed from the child's first completed batch, "
            << tally.missed_points << " meant to be targeted); the child killed itself "
            << kKillPointNames[kBeforeWrite] << ": " << tally.by_point[kBeforeWrite] << ", "
            << kKillPointNames[kInCommitHook] << ": " << tally.by_point[kInCommitHook] << ", "
            << kKillPointNames[kAtBegin] << ": " << tally.by_point[kAtBegin] << ", "
            << kKillPointNames[kAfterCommit] << ": " << tally.by_point[kAfterCommit] << "\n"
            << "  " << tally.kills - tally.concurrent_rounds << " rounds took turns on the two "
            << "connections, " << tally.concurrent_rounds << " normalized on a thread while "
            << "appending; the killed children completed " << total_batches
            << " normalization batches\n"
            << "  both buffers: " << cs.duplicates << " duplicates, " << revised
            << " revised measurements, " << cs.decode_errors << " decode errors, " << cs.ignored
            << " ignored, " << cs.series << " series\n"
            << "  time: " << seconds(kills_done_at - started_at) << " s killing (of which "
            << seconds(in_checks) << " s in quick_check), " << seconds(Clock::now() - kills_done_at)
            << " s final checks and the reference" << std::endl;

  // The acceptance point: kills must have landed inside normalization
  // transactions with work in them, or this run proved nothing.
  REQUIRE(tally.normalize_writes > 0);
  REQUIRE(tally.normalize_rolled_back > 0);
}

int main(int argc, char* argv[]) {
  Catch::Session session;
  using Catch::clara::Opt;
  auto cli = session.cli() |
             Opt(g_options.kills, "n")["--kills"]("how many times the child is killed (100)") |
             Opt(g_options.seed, "seed")["--crash-seed"](
                 "seed of the messages and the child's "
                 "choices (random)") |
             Opt(g_options.max_delay_ms, "ms")["--max-delay-ms"](
                 "kill moments are uniform in [0, ms] after the child started (50)") |
             Opt(g_options.initial_messages,
                 "n")["--initial-messages"]("raw messages before the first child (3000)") |
             Opt(g_options.quick_check_every,
                 "n")["--quick-check-every"]("PRAGMA quick_check after every n-th kill (1)");
  session.cli(cli);
  const int parsed = session.applyCommandLine(argc, argv);
  if (parsed != 0) return parsed;
  return session.run();
}
