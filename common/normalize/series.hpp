// The series rules: how a reading's delta and neighbour-dependent flags follow
// from its place in its series (device_id, metric_type), ordered by
// (timestamp, value). Pure functions; the series engine
// (common/normalize/series_engine.hpp) decides with them what storing a
// reading does to its series.
#pragma once

#include <cstdint>
#include <optional>

#include "common/config/config.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/decimal.hpp"

namespace meter {

// Flags that only the reading's own content decides (unions over every copy).
inline constexpr FlagSet kIntrinsicFlags =
    flag_bit(Flag::gateway_timestamp) | flag_bit(Flag::leap_second) |
    flag_bit(Flag::dst_ambiguous) | flag_bit(Flag::dst_gap) | flag_bit(Flag::clock_unsynced) |
    flag_bit(Flag::scale_rounded);

// Flags recomputed whenever a neighbour changes.
inline constexpr FlagSet kNeighbourFlags =
    flag_bit(Flag::first_reading) | flag_bit(Flag::counter_reset) |
    flag_bit(Flag::suspicious_jump) | flag_bit(Flag::beyond_retention);

struct SeriesKey {
  std::int64_t timestamp_ms = 0;
  Decimal value;
};

// Series order: timestamp, then value (so equal timestamps order the same way
// whatever the arrival order).
bool series_before(const SeriesKey& a, const SeriesKey& b);

struct DeltaOutcome {
  std::optional<Decimal> delta;
  FlagSet flags = 0;  // a subset of kNeighbourFlags
};

// What a counter reading's delta and flags are, given the value of the reading
// before it. `predecessor` is empty when the series has none (first_reading)
// and `beyond_retention` says the predecessor was pruned from the buffer.
// Gauges have no delta and no neighbour flags.
DeltaOutcome compute_delta(const MetricConfig& metric, const Decimal& value,
                           const std::optional<Decimal>& predecessor, bool beyond_retention);

// Flags that depend on the value alone (negative_value for counters).
FlagSet value_flags(const MetricConfig& metric, const Decimal& value);

}  // namespace meter
