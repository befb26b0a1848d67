#include "agent/uplink/pruning.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

namespace meter::agent {
namespace {

using namespace std::chrono_literals;
constexpr std::string_view kUplink = "uplink";
// The disk budget (buffer.max_size_mib): pruning starts once the database uses
// this share of it, and goes down to the next; the redelivery window may keep
// at most 1/kRedeliveryDivisor of it.
constexpr double kBudgetPruneAt = 0.9;
constexpr double kBudgetPruneTo = 0.75;
constexpr std::int64_t kRedeliveryDivisor = 16;
constexpr auto kBudgetCheckInterval = 1s;

}  // namespace

// Pruning: confirmed data older than uplink.retention, every prune_interval;
// and, with a disk budget, confirmed data of any age, the oldest stored first,
// once the database passes kBudgetPruneAt of the budget (down to
// kBudgetPruneTo): an agent whose buffer filled during an outage must make room
// by itself once the central has confirmed the backlog, whatever the retention.
void UplinkPruner::maybe_prune(const Config& config) {
  const auto& uplink = config.uplink;
  const std::int64_t budget = config.buffer.max_size_bytes;
  const auto now = clock_.steady_now();
  const bool by_age = uplink.retention_ms > 0 && now >= next_prune_;
  bool for_budget = false;
  const std::int64_t confirmed = metrics_.raw_confirmed + metrics_.measurements_confirmed;
  if (budget != 0 && now >= next_budget_check_) {
    next_budget_check_ = now + kBudgetCheckInterval;
    auto used = buffer_.used_bytes();
    if (!used) {
      logger_.warning(kUplink,
                      "cannot measure the buffer for its disk budget: " + used.error().message);
    } else if (static_cast<double>(*used) > kBudgetPruneAt * static_cast<double>(budget)) {
      // Nothing new became prunable unless the central confirmed something
      // since the last try (or the retention's turn has come).
      for_budget = confirmed != confirmed_at_budget_prune_ || by_age;
    }
  }
  if (!by_age && !for_budget) return;
  // The redelivery window, bounded in bytes under a budget: 50,000 big
  // payloads would otherwise be more than a small budget holds.
  std::int64_t window = kRedeliveryWindow;
  if (budget != 0) {
    auto bounded = buffer_.redelivery_window(budget / kRedeliveryDivisor);
    if (!bounded) {
      logger_.warning(kUplink, "pruning failed (nothing deleted): " + bounded.error().message);
      return;
    }
    window = *bounded;
  }
  auto count = [&](const PruneStats& pruned) {
    metrics_.pruned_measurements += pruned.measurements_deleted;
    metrics_.pruned_raw += pruned.raw_deleted;
    return std::to_string(pruned.measurements_deleted) + " confirmed measurements and " +
           std::to_string(pruned.raw_deleted) + " confirmed raw messages";
  };
  if (by_age) {
    next_prune_ = now + std::chrono::milliseconds(uplink.prune_interval_ms);
    auto pruned = buffer_.prune_synced(PruneScope{clock_.now_ms() - uplink.retention_ms,
                                                  std::numeric_limits<std::int64_t>::max(), window,
                                                  keep_for_series_rules(config)});
    if (!pruned) {
      logger_.warning(kUplink, "pruning failed (nothing deleted): " + pruned.error().message);
      return;
    }
    if (pruned->measurements_deleted + pruned->raw_deleted > 0) {
      logger_.info(kUplink, "pruned " + count(*pruned) + " older than uplink.retention");
    }
  }
  if (for_budget) {
    confirmed_at_budget_prune_ = confirmed;
    const auto started = clock_.steady_now();
    auto pruned = buffer_.prune_to_size(
        static_cast<std::int64_t>(kBudgetPruneTo * static_cast<double>(budget)), window,
        keep_for_series_rules(config));
    // Each try scans the measurements; while the central confirms a backlog
    // batch by batch, trying every second could keep this thread from
    // uploading: at most a tenth of its time goes to pruning.
    next_budget_check_ =
        std::max(next_budget_check_, clock_.steady_now() + 10 * (clock_.steady_now() - started));
    if (!pruned) {
      logger_.warning(kUplink, "pruning for the disk budget failed (nothing deleted): " +
                                   pruned.error().message);
      return;
    }
    auto used = buffer_.used_bytes();
    const std::string now_used = used ? std::to_string(*used) : "?";
    if (pruned->measurements_deleted + pruned->raw_deleted > 0) {
      ++metrics_.budget_prunes;
      nothing_to_prune_said_ = false;
      logger_.warning(kUplink, "the buffer is near its disk budget (buffer.max_size_mib): pruned " +
                                   count(*pruned) +
                                   ", the oldest first, before uplink.retention; it uses " +
                                   now_used + " of " + std::to_string(budget) + " bytes now");
    } else if (!std::exchange(nothing_to_prune_said_, true)) {
      logger_.warning(kUplink, "the buffer is near its disk budget (buffer.max_size_mib, " +
                                   now_used + " of " + std::to_string(budget) +
                                   " bytes) and holds nothing confirmed to prune: waiting for "
                                   "the central to confirm the backlog");
    }
  }
}

}  // namespace meter::agent
