// The agent's configuration: parsed once from YAML into an immutable,
// validated struct. Unknown keys, wrong types and impossible values are
// errors that name file:line:column and the key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/decimal.hpp"
#include "common/result.hpp"
#include "common/timestamp.hpp"

namespace meter {

enum class MetricKind { counter, gauge };

struct MetricConfig {
  std::string name;  // e.g. "energy"; never contains '|'
  MetricKind kind = MetricKind::gauge;
  std::string unit;  // canonical unit, e.g. "kWh"
  // counter only: a delta above this (canonical unit) is flagged suspicious_jump.
  std::optional<Decimal> jump_threshold;
};

enum class Durability {
  power_loss,  // synchronous=FULL: a committed append survives power loss (default)
  normal,  // synchronous=NORMAL: survives a killed process; may lose the last commits on power loss
};

struct BufferConfig {
  std::string path = "/var/lib/meter-agent/buffer.db";
  Durability durability = Durability::power_loss;
};

enum class PayloadFormat { seed_json };

struct TimestampConfig {
  TimestampFormat format = TimestampFormat::rfc3339;
  std::string zone_name;                  // empty: no zone (offset required)
  const date::time_zone* zone = nullptr;  // resolved from zone_name
};

struct MappingConfig {
  std::string topic;  // MQTT topic filter, '+' and '#' wildcards
  PayloadFormat format = PayloadFormat::seed_json;
  TimestampConfig timestamp;
};

struct NormalizeConfig {
  std::int64_t future_tolerance_ms = 5 * 60 * 1000;  // readings further ahead get future_timestamp
  std::size_t batch_size = 5000;                     // raw messages per normalization transaction
};

struct Config {
  std::string source;      // file the config came from ("<string>" for text)
  std::string gateway_id;  // names this gateway to the central side
  BufferConfig buffer;
  std::map<std::string, MetricConfig, std::less<>> metrics;
  std::vector<MappingConfig> mappings;  // first match wins
  NormalizeConfig normalize;

  const MetricConfig* metric(std::string_view name) const;
  // The first mapping whose filter matches `topic`, or nullptr.
  const MappingConfig* mapping_for(std::string_view topic) const;
};

// Reads and validates a YAML file. Error messages start with "FILE:LINE:COLUMN: ".
Result<Config> load_config(const std::string& path);
Result<Config> parse_config(std::string_view yaml_text, const std::string& source_name);

// MQTT topic filter matching ('+' one level, '#' the rest, per MQTT 3.1.1 4.7).
bool topic_matches(std::string_view filter, std::string_view topic);

}  // namespace meter
