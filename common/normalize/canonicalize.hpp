// normalize: a decoded reading -> its canonical form (UTC timestamp, exact
// value in the metric's canonical unit) and the flags that belong to the
// reading alone. Flags that depend on other readings of the series (deltas,
// resets, order) are the series rules' job (series.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "common/config/config.hpp"
#include "common/decode/decode.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/event_id.hpp"
#include "common/util/result.hpp"

namespace meter {

struct Reading {
  std::string device_id;
  std::string metric_type;
  std::int64_t timestamp_ms = 0;  // UTC
  Decimal value;                  // in `unit`
  std::string unit;               // the metric's canonical unit
  FlagSet flags = 0;  // gateway_timestamp, leap_second, dst_ambiguous, dst_gap, scale_rounded
  std::int64_t received_ms = 0;  // gateway receive time, UTC

  std::string timestamp_text() const;
  EventId event_id() const;
};

// Limits on what a reading may carry; beyond them it is a decode error.
inline constexpr std::size_t kMaxDeviceIdBytes = 256;
inline constexpr std::size_t kMaxMetricNameBytes = 64;

// Errors name the field and the value ("unit 'kVAh' is not an energy unit;
// accepted: Wh, kWh, MWh, GWh"). `received_ms` stands in for a missing
// timestamp (flag gateway_timestamp).
Result<Reading> canonicalize(const DecodedReading& decoded, const Config& config,
                             const TimestampConfig& timestamp_config, std::int64_t received_ms);

}  // namespace meter
