#include "agent/normalizer/disk_budget.hpp"

#include "common/buffer/buffer.hpp"

namespace meter::agent {

bool DiskBudget::estimate_exceeds(std::int64_t message_bytes) const {
  const std::int64_t budget = limit_.load();
  if (budget == 0) return false;
  return used_at_measurement_.load() + acknowledged_bytes_.load() -
             acknowledged_at_measurement_.load() + message_bytes >
         budget;
}

bool DiskBudget::wait_for_measurement(std::int64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock lock(measured_mutex_);
  return measured_.wait_for(lock, timeout, [&] { return measurements_.load() != seen; });
}

DiskBudget::Change DiskBudget::record(std::int64_t used, std::int64_t acknowledged) {
  const std::int64_t budget = limit_.load();
  bool over = false;
  if (budget != 0) {
    over = budget_used_up(used, budget);
    used_at_measurement_ = used;
    acknowledged_at_measurement_ = acknowledged;
    {
      std::lock_guard lock(measured_mutex_);
      ++measurements_;
    }
    measured_.notify_all();
  }
  if (over == over_.exchange(over)) return Change::none;
  return over ? Change::reached : Change::below_again;
}

Result<std::int64_t> measure_budget_use(Buffer& buffer, InboxPosition absorbed, std::int64_t limit,
                                        Logger& logger) {
  constexpr std::string_view kBuffer = "buffer";
  auto database = buffer.used_bytes();
  if (!database) {
    return Error{"cannot measure the buffer for its disk budget: " + database.error().message};
  }
  const auto inbox = budget_bytes_of_inbox(inbox_pending_bytes(buffer.path(), absorbed));
  if (budget_used_up(*database + inbox, limit)) {
    // The WAL file keeps the largest size it ever had (~10 MiB after a burst:
    // automatic checkpoints every 10,000 pages) although a checkpoint has
    // emptied it: before refusing messages, give that room back.
    if (auto truncated = buffer.checkpoint_truncate(); !truncated) {
      logger.warning(kBuffer,
                     "cannot truncate the WAL for the disk budget: " + truncated.error().message);
    } else if (*truncated) {
      database = buffer.used_bytes();
      if (!database) {
        return Error{"cannot measure the buffer for its disk budget: " + database.error().message};
      }
    }
  }
  return *database + inbox;
}

}  // namespace meter::agent
