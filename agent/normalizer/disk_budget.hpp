// The disk budget (buffer.max_size_mib): past it the acknowledge path stops
// acknowledging (the broker keeps the messages) instead of deleting anything
// unconfirmed. Two threads share it:
//
// - the normalizer measures what the buffer uses (database pages, WAL, the
//   inbox not yet absorbed) after every pass and records it here (`record`);
// - the acknowledge path asks before each commit whether one more message
//   fits (`estimate_exceeds`), counting what it acknowledged since the last
//   measurement at what it will take once stored, because a pass may take
//   seconds while thousands of messages are acknowledged.
//
// Only numbers here: the measuring (SQLite, files) is measure_budget_use in
// the same folder, so the decisions are testable with made-up numbers.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "agent/ops/log.hpp"
#include "common/buffer/inbox.hpp"
#include "common/util/result.hpp"

namespace meter {
class Buffer;
}

namespace meter::agent {

class DiskBudget {
 public:
  // 0: no budget (the disk's own size is the limit).
  void set_limit(std::int64_t bytes) { limit_ = bytes; }
  std::int64_t limit() const { return limit_.load(); }

  // ---- the acknowledge path
  // Whether the last measurement found the budget used up.
  bool over() const { return over_.load(); }
  // Whether a message of `message_bytes` (budget_bytes_of_message) would pass
  // the budget, by the last measurement plus what was acknowledged since.
  bool estimate_exceeds(std::int64_t message_bytes) const;
  // Counts a committed message of `message_bytes` until the next measurement.
  void note_acknowledged(std::int64_t message_bytes) { acknowledged_bytes_ += message_bytes; }
  // Measurements recorded so far; wait_for_measurement waits (at most
  // `timeout`) until there are more than `seen`. True if there are.
  std::int64_t measurements() const { return measurements_.load(); }
  bool wait_for_measurement(std::int64_t seen, std::chrono::milliseconds timeout);

  // ---- the normalizer
  // Taken before measuring: a message acknowledged meanwhile may count twice,
  // never not at all. Pass it to `record`.
  std::int64_t acknowledged_bytes() const { return acknowledged_bytes_.load(); }
  enum class Change { none, reached, below_again };
  // Records a measurement of `used` bytes (taken after `acknowledged`);
  // whether that crossed the budget either way. Without a budget, `used` is
  // ignored and the budget is never over.
  Change record(std::int64_t used, std::int64_t acknowledged);

 private:
  std::atomic<std::int64_t> limit_{0};
  std::atomic<bool> over_{false};
  // What the last measurement counted, and bytes acknowledged (a running total) then.
  std::atomic<std::int64_t> used_at_measurement_{0};
  std::atomic<std::int64_t> acknowledged_at_measurement_{0};
  std::atomic<std::int64_t> acknowledged_bytes_{0};
  std::atomic<std::int64_t> measurements_{0};
  std::mutex measured_mutex_;  // with measured_: the acknowledge path waits for a measurement
  std::condition_variable measured_;
};

// What the budget counts for `buffer`: its pages in use and WAL, and the inbox
// after `absorbed` at what it will take once stored (budget_bytes_of_inbox).
// When that uses up `limit`, the WAL is truncated first (it keeps the largest
// size it ever had although a checkpoint emptied it) and measured again; a
// failed truncation is only logged.
Result<std::int64_t> measure_budget_use(Buffer& buffer, InboxPosition absorbed, std::int64_t limit,
                                        Logger& logger);

}  // namespace meter::agent
