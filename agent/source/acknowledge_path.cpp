#include "agent/source/acknowledge_path.hpp"

#include <algorithm>
#include <optional>
#include <thread>

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kBuffer = "buffer";

}  // namespace

AcknowledgePath::AcknowledgePath(std::unique_ptr<InboxWriter> inbox, Shared shared,
                                 std::int64_t inbox_max_bytes)
    : inbox_(std::move(inbox)), shared_(std::move(shared)), inbox_max_bytes_(inbox_max_bytes) {}

// If this blocks longer than 1.5 x keepalive the broker drops the connection
// and redelivers the message later (DUP) — the raw log may then hold it twice,
// the measurements once.
void AcknowledgePath::commit(const RawMessage& message) {
  auto& metrics = shared_.metrics;
  auto& logger = shared_.logger;
  std::chrono::milliseconds delay = 20ms;
  std::int64_t failures = 0;
  for (;;) {
    try {
      auto committed = try_commit(message);
      if (committed) {
        ++metrics.appended;
        if (failures > 0) log_recovered(failures);
        shared_.wake_normalizer();
        return;
      }
      ++failures;
      ++metrics.append_failures;
      metrics.append_blocked = true;
      logger.error(kBuffer, "cannot store a message (topic '" + message.topic +
                                "'), NOT acknowledging it; the broker keeps it and will "
                                "redeliver: " +
                                committed.error().message);
    } catch (const std::exception& e) {
      ++failures;
      ++metrics.append_failures;
      logger.error(kBuffer,
                   std::string("unexpected error storing a message, retrying: ") + e.what());
    } catch (...) {
      ++failures;
      ++metrics.append_failures;
      logger.error(kBuffer, "unexpected error storing a message, retrying");
    }
    // A retry delay, not a synchronization: the disk needs time to get room.
    std::this_thread::sleep_for(delay);
    delay = std::min<std::chrono::milliseconds>(delay * 2, kAppendRetryMax);
  }
}

std::int64_t AcknowledgePath::backlog() const {
  return inbox_backlog(inbox_->position(), shared_.progress.absorbed());
}

Status AcknowledgePath::try_commit(const RawMessage& message) {
  const std::int64_t message_bytes = budget_bytes_of_message(
      static_cast<std::int64_t>(message.topic.size() + message.payload.size()));
  std::lock_guard lock(mutex_);
  if (auto admitted = admit(message_bytes); !admitted) return admitted;
  auto appended = inbox_->append(message);
  if (appended) shared_.budget.note_acknowledged(message_bytes);
  return appended;
}

std::vector<bool> AcknowledgePath::commit_group(const std::vector<RawMessage>& messages) {
  std::vector<bool> committed(messages.size(), false);
  std::vector<std::int64_t> sizes(messages.size(), 0);
  std::optional<Error> refused;
  bool any = false;
  std::int64_t admitted = 0;  // budget bytes of this group's messages appended so far
  {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const auto& message = messages[i];
      sizes[i] = budget_bytes_of_message(
          static_cast<std::int64_t>(message.topic.size() + message.payload.size()));
      // Admitted with what this group already took: the budget's estimate
      // counts acknowledged messages only after the sync, and a group can be
      // thousands of messages (the batched connection).
      Status appended = admit(admitted + sizes[i]);
      if (appended) appended = inbox_->append_unsynced(message);
      if (appended) admitted += sizes[i];
      if (!appended) {
        // The rest of the group is refused with it: each admit may wait for
        // the normalizer (kNormalizerWait), and nothing after a refused
        // message may be acknowledged before it anyway (the batched
        // connection acknowledges in arrival order).
        refused = appended.error();
        break;
      }
      committed[i] = true;
      any = true;
    }
    if (any) {
      if (auto synced = inbox_->sync(); !synced) {
        if (!refused) refused = synced.error();
        std::fill(committed.begin(), committed.end(), false);
        any = false;
      }
    }
  }
  auto& metrics = shared_.metrics;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (!committed[i]) continue;
    shared_.budget.note_acknowledged(sizes[i]);
    ++metrics.appended;
  }
  if (refused) {
    ++group_failures_;
    ++metrics.append_failures;
    metrics.append_blocked = true;
    shared_.logger.error(kBuffer,
                         "cannot store " +
                             std::to_string(std::count(committed.begin(), committed.end(), false)) +
                             " of " + std::to_string(messages.size()) +
                             " messages, NOT acknowledging them; the broker keeps them "
                             "and will redeliver: " +
                             refused->message);
  } else if (group_failures_ > 0) {
    log_recovered(group_failures_);
    group_failures_ = 0;
  }
  if (any) shared_.wake_normalizer();
  return committed;
}

void AcknowledgePath::log_recovered(std::int64_t failures) {
  shared_.metrics.append_blocked = false;
  shared_.logger.warning(kBuffer, "the buffer accepts writes again after " +
                                      std::to_string(failures) +
                                      " failed attempts; acknowledging again");
}

// Refused while the inbox holds more than inbox_max_bytes the normalizer has
// not moved: then the database itself is failing, and the broker should keep
// what we cannot store.
Status AcknowledgePath::admit(std::int64_t message_bytes) {
  auto& budget = shared_.budget;
  if (!budget.over() && budget.estimate_exceeds(message_bytes)) {
    // Only an estimate says so: wait for the normalizer to measure (it takes
    // in what is pending and checks) rather than refuse on a guess.
    const auto seen = budget.measurements();
    shared_.wake_normalizer();
    budget.wait_for_measurement(seen, kNormalizerWait);
  }
  if (budget.over() || budget.estimate_exceeds(message_bytes)) {
    return Error{"the buffer has used its disk budget (buffer.max_size_mib, " +
                 std::to_string(budget.limit() / (1024 * 1024)) +
                 " MiB); nothing unconfirmed is deleted to make room: acknowledging again once "
                 "the central side has confirmed records and the uplink has pruned them"};
  }
  const bool full_disk = shared_.max_page_count.load() != 0;  // the test seam
  inbox_->set_space_limit(full_disk ? std::optional<std::int64_t>(0) : std::nullopt);
  if (backlog() > inbox_max_bytes_) {
    // Usually the normalizer is only behind (a burst on a busy CPU): wait for
    // it. Holding the acknowledgement back is the flow control MQTT expects.
    ++shared_.metrics.inbox_full_waits;
    shared_.wake_normalizer();
    const auto written = inbox_->position();
    shared_.progress.wait_until(
        [&](InboxPosition absorbed) {
          return inbox_backlog(written, absorbed) <= inbox_max_bytes_;
        },
        kNormalizerWait);
    if (backlog() > inbox_max_bytes_) {
      return Error{"the inbox holds " + std::to_string(backlog() / 1024) +
                   " KiB of messages the buffer database has not taken in (see the "
                   "normalizer's errors)"};
    }
  }
  return Ok{};
}

}  // namespace meter::agent
