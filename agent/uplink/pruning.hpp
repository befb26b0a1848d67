// The uplink's pruning of confirmed data (docs/PROTOCOL.md, "Nothing
// unconfirmed is deleted"), run on the uplink thread between requests: by age
// (uplink.retention) and for the disk budget (buffer.max_size_mib).
#pragma once

#include <chrono>
#include <cstdint>

#include "agent/ops/log.hpp"
#include "agent/uplink/uplink_clock.hpp"
#include "agent/uplink/uplink_metrics.hpp"
#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"

namespace meter::agent {

class UplinkPruner {
 public:
  UplinkPruner(Buffer& buffer, Logger& logger, UplinkMetrics& metrics, UplinkClock& clock)
      : buffer_(buffer), logger_(logger), metrics_(metrics), clock_(clock) {}

  // Prunes what is due under `config` now, if anything; says what it did.
  void maybe_prune(const Config& config);

 private:
  Buffer& buffer_;
  Logger& logger_;
  UplinkMetrics& metrics_;
  UplinkClock& clock_;
  std::chrono::steady_clock::time_point next_prune_{};
  std::chrono::steady_clock::time_point next_budget_check_{};
  // For the disk budget: records confirmed at the last prune, and whether
  // "nothing confirmed to prune" was said (once, until something is pruned).
  std::int64_t confirmed_at_budget_prune_ = -1;
  bool nothing_to_prune_said_ = false;
};

}  // namespace meter::agent
