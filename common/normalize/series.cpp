#include "common/normalize/series.hpp"

namespace meter {

bool series_before(const SeriesKey& a, const SeriesKey& b) {
  if (a.timestamp_ms != b.timestamp_ms) return a.timestamp_ms < b.timestamp_ms;
  return a.value < b.value;
}

DeltaOutcome compute_delta(const MetricConfig& metric, const Decimal& value,
                           const std::optional<Decimal>& predecessor, bool beyond_retention) {
  DeltaOutcome outcome;
  if (metric.kind != MetricKind::counter) return outcome;
  if (beyond_retention) {
    outcome.flags = flag_bit(Flag::beyond_retention);
    return outcome;
  }
  if (!predecessor) {
    outcome.flags = flag_bit(Flag::first_reading);
    return outcome;
  }
  auto delta = subtract(value, *predecessor);
  if (!delta) {
    // Both values are within Decimal's limits, so their difference can exceed
    // them by at most one digit; treat that like a reset: no delta we can trust.
    outcome.flags = flag_bit(Flag::counter_reset);
    return outcome;
  }
  if (delta->is_negative()) {
    outcome.flags = flag_bit(Flag::counter_reset);
    return outcome;
  }
  if (metric.jump_threshold && *delta > *metric.jump_threshold) {
    outcome.flags = flag_bit(Flag::suspicious_jump);
  }
  outcome.delta = std::move(*delta);
  return outcome;
}

FlagSet value_flags(const MetricConfig& metric, const Decimal& value) {
  if (metric.kind == MetricKind::counter && value.is_negative()) {
    return flag_bit(Flag::negative_value);
  }
  return 0;
}

}  // namespace meter
