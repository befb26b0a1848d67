#include "common/normalize/canonicalize.hpp"

#include "common/normalize/timestamp.hpp"
#include "common/normalize/units.hpp"
#include "common/util/utf8.hpp"

namespace meter {
namespace {

bool has_control_character(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

std::string Reading::timestamp_text() const { return format_timestamp(timestamp_ms); }

EventId Reading::event_id() const {
  return compute_event_id(device_id, timestamp_text(), metric_type, value.text());
}

Result<Reading> canonicalize(const DecodedReading& decoded, const Config& config,
                             const TimestampConfig& timestamp_config, std::int64_t received_ms) {
  Reading reading;
  if (decoded.device_id.empty()) return Error{"device_id is empty"};
  if (decoded.device_id.size() > kMaxDeviceIdBytes) {
    return Error{"device_id is longer than " + std::to_string(kMaxDeviceIdBytes) + " bytes"};
  }
  if (!is_valid_utf8(decoded.device_id)) return Error{"device_id is not valid UTF-8"};
  if (has_control_character(decoded.device_id)) {
    return Error{"device_id contains a control character"};
  }
  reading.device_id = decoded.device_id;

  const MetricConfig* metric = config.metric(decoded.metric_type);
  if (metric == nullptr) {
    std::string known;
    for (const auto& [name, unused] : config.metrics) {
      known += known.empty() ? name : ", " + name;
    }
    std::string shown = decoded.metric_type.size() > kMaxMetricNameBytes
                            ? decoded.metric_type.substr(0, kMaxMetricNameBytes) + "..."
                            : decoded.metric_type;
    return Error{"metric_type '" + shown + "' is not declared in the config (declared: " + known +
                 ")"};
  }
  reading.metric_type = metric->name;

  auto value = Decimal::parse(decoded.value);
  if (!value) return Error{"value: " + value.error().message};
  auto shift = unit_shift(decoded.unit, metric->unit);
  if (!shift) return Error{"unit: " + shift.error().message};
  auto canonical_value = value->shifted(*shift);
  if (!canonical_value) return Error{"value: " + canonical_value.error().message};
  reading.value = std::move(*canonical_value);
  reading.unit = metric->unit;
  if (decoded.rounded) reading.flags |= flag_bit(Flag::scale_rounded);

  reading.received_ms = received_ms;
  if (decoded.timestamp) {
    auto time = parse_timestamp(*decoded.timestamp, timestamp_config.format, timestamp_config.zone);
    if (!time) return Error{"timestamp: " + time.error().message};
    reading.timestamp_ms = time->ms;
    reading.flags |= time->flags;
  } else {
    reading.timestamp_ms = received_ms;
    reading.flags |= flag_bit(Flag::gateway_timestamp);
  }
  return reading;
}

}  // namespace meter
