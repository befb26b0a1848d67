// The acknowledge path's commit: one record in the inbox
// (common/buffer/inbox.hpp), which the normalizer later moves into the raw
// log, with the flow control around it:
// - the disk budget (agent/normalizer/disk_budget.hpp): past it, refuse;
// - a full inbox (more than `inbox_max_bytes` not yet absorbed): wait for the
//   normalizer, and refuse if that does not help (the database is failing);
// - a refused or failed commit is logged and retried with backoff, never
//   acknowledged: the broker keeps the message.
// Runs on the MQTT source's callback thread, one message at a time, and with
// ingest workers (agent/source/ingest_workers.hpp) on their group-commit
// thread too: a mutex keeps one inbox writer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "agent/normalizer/disk_budget.hpp"
#include "agent/normalizer/inbox_progress.hpp"
#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/source/message_sink.hpp"
#include "common/buffer/inbox.hpp"

namespace meter::agent {

// Acknowledged messages the inbox may hold that the buffer has not taken in;
// beyond it the acknowledge path waits for the normalizer, and refuses if
// that does not help (the database is failing).
inline constexpr std::int64_t kInboxMaxBytes = 64 * 1024 * 1024;

class AcknowledgePath final : public MessageSink {
 public:
  struct Shared {
    DiskBudget& budget;
    InboxProgress& progress;  // how far the normalizer has absorbed the inbox
    Metrics& metrics;
    Logger& logger;
    std::function<void()> wake_normalizer;
    // Test seam (Daemon::set_max_page_count): non-zero, the inbox takes nothing more.
    const std::atomic<std::int64_t>& max_page_count;
  };
  AcknowledgePath(std::unique_ptr<InboxWriter> inbox, Shared shared, std::int64_t inbox_max_bytes);

  // Returns once `message` is in the inbox; until then retries (with backoff
  // up to kAppendRetryMax), logging each failure.
  void commit(const RawMessage& message) override;

  // One attempt: the budget, the inbox's fill, then the append.
  Status try_commit(const RawMessage& message);

  // Group commit: the messages appended in order until one is refused (the
  // rest with it), then one sync for all appended. The result says, message
  // by message, whether it is committed (may be acknowledged): a prefix. A
  // refusal or failure is logged once for the group.
  std::vector<bool> commit_group(const std::vector<RawMessage>& messages);

  // How long a wait for the normalizer (a full inbox, or a budget estimate to
  // measure) lasts before the attempt counts as failed.
  static constexpr std::chrono::milliseconds kNormalizerWait{2000};
  static constexpr std::chrono::milliseconds kAppendRetryMax{5000};

 private:
  std::int64_t backlog() const;
  // The budget and the inbox's fill, before an append (the mutex held).
  Status admit(std::int64_t message_bytes);
  void log_recovered(std::int64_t failures);

  std::unique_ptr<InboxWriter> inbox_;
  Shared shared_;
  std::int64_t inbox_max_bytes_;
  std::mutex mutex_;                 // the inbox writer is used by one thread at a time
  std::int64_t group_failures_ = 0;  // consecutive failed groups (logged once recovered)
};

}  // namespace meter::agent
