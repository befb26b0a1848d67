// libFuzzer target for the mapping layer: decode_message through every
// shipped preset (config/presets/) and a hand-written json mapping that uses
// every source form. The first input byte picks the topic (one the mapping
// matches, or a topic taken from the input up to the first TAB); the rest is
// the payload. Besides "does not crash, does not throw, does not leak" it
// checks properties that must hold for every input (see check_* below).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.hpp"
#include "common/decode/decode.hpp"
#include "common/decode/json.hpp"
#include "common/decode/mapping.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/util/utf8.hpp"

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

const std::string kConfig = R"(
gateway_id: fuzz
presets_dir: )" METER_SOURCE_DIR R"(/config/presets
metrics:
  energy: {kind: counter, unit: kWh}
  power: {kind: gauge, unit: kW}
mappings:
  - preset: tasmota
  - preset: shelly_em
  - preset: zigbee2mqtt
  - preset: plain
  - preset: seed
    topic: "seed/#"
  - preset: tasmota
    topic: "clock/+/SENSOR"
    timestamp: {path: /Time, format: rfc3339, zone: Europe/Berlin}
  - topic: "every/+/+/#"
    format: json
    device_id: {path: /meter/id}
    timestamp: {path: /ts, format: epoch_milliseconds}
    readings:
      - metric_type: {topic_level: 2}
        value: {path: /v}
        unit: {path: /unit}
        arrays: channels
      - metric_type: energy
        value: {path: "/params/emdata:0/total_act"}
        unit: {per_metric: {energy: Wh}}
        required: true
)";

// A topic each mapping matches, in the order of kConfig.
const char* const kTopics[] = {
    "tele/tasmota_1A2B3C/SENSOR",
    "shellypro3em-a8032abe54dc/status/emdata:0",
    "zigbee2mqtt/living room/plug",
    "meters/m7/energy",
    "seed/m1",
    "clock/tasmota_1A2B3C/SENSOR",
    "every/site/power/x",
};

const meter::Config& config() {
  static const meter::Config parsed = [] {
    auto result = meter::parse_config(kConfig, "<fuzz>");
    if (!result) {
      std::fprintf(stderr, "fuzz config: %s\n", result.error().message.c_str());
      std::abort();
    }
    return std::move(result).value();
  }();
  return parsed;
}

// Messages go to logs and the status: short, printable ASCII.
void check_message(const std::string& message) {
  require(!message.empty(), "message is empty");
  require(message.size() <= 300, "message is too long");
  for (char c : message) require(c >= 0x20 && c < 0x7F, "message is not printable ASCII");
}

bool same(const meter::Result<meter::Decoded>& a, const meter::Result<meter::Decoded>& b) {
  if (a.ok() != b.ok()) return false;
  if (!a) return a.error().message == b.error().message;
  if (a->ignored_reason != b->ignored_reason || a->readings.size() != b->readings.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a->readings.size(); ++i) {
    const auto& x = a->readings[i];
    const auto& y = b->readings[i];
    if (x.device_id != y.device_id || x.timestamp != y.timestamp ||
        x.metric_type != y.metric_type || x.value != y.value || x.unit != y.unit) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

void check_decode(const meter::MappingConfig& mapping, std::string_view topic,
                  std::string_view payload) {
  auto decoded = meter::decode_message(mapping, topic, payload);
  require(same(decoded, meter::decode_message(mapping, topic, payload)), "not deterministic");

  if (mapping.format == meter::PayloadFormat::seed_json) {
    require(same(decoded, meter::decode_seed_json(payload)), "seed_json differs from the seed");
    return;
  }
  const bool word = meter::is_non_reading_word(payload) && !trim(payload).empty();
  if (!decoded) {
    check_message(decoded.error().message);
    require(!word, "a non-reading word is an error");
    return;
  }
  if (decoded->ignored_reason) {
    check_message(*decoded->ignored_reason);
    require(decoded->readings.empty(), "ignored payload with readings");
    return;
  }
  require(!word, "a non-reading word gave readings");
  require(!decoded->readings.empty(), "neither readings nor an ignored reason");
  require(meter::is_valid_utf8(payload), "readings from a payload that is not valid UTF-8");
  if (mapping.format == meter::PayloadFormat::json) {
    require(meter::parse_json(payload).ok(), "readings from a payload that is not JSON");
  }
  for (const meter::DecodedReading& reading : decoded->readings) {
    require(!reading.device_id.empty(), "reading with empty device_id");
    require(!reading.metric_type.empty(), "reading with empty metric_type");
    require(!reading.unit.empty(), "reading with empty unit");
    require(meter::is_valid_utf8(reading.device_id) && meter::is_valid_utf8(reading.metric_type) &&
                meter::is_valid_utf8(reading.value) && meter::is_valid_utf8(reading.unit),
            "reading field is not valid UTF-8");
    // Only a json mapping with a timestamp path reads a timestamp; the
    // others use the receive time.
    require(reading.timestamp.has_value() ==
                (mapping.format == meter::PayloadFormat::json && mapping.timestamp.path),
            "timestamp without a timestamp path, or none with one");
    if (mapping.format == meter::PayloadFormat::plain) {
      require(reading.value == trim(payload), "plain value is not the payload");
    }
    // Whatever the payload, canonicalize must answer (an error is fine).
    auto canonical = meter::canonicalize(reading, config(), mapping.timestamp, 1719835230000);
    if (canonical) {
      require(canonical->unit == config().metric(canonical->metric_type)->unit,
              "canonical unit is not the metric's");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const meter::Config& agent_config = config();
  const std::size_t choice = data[0] % (std::size(kTopics) + 1);
  if (choice < std::size(kTopics)) {
    const meter::MappingConfig* mapping = agent_config.mapping_for(kTopics[choice]);
    require(mapping != nullptr, "a fixed topic matches no mapping");
    check_decode(*mapping, kTopics[choice], input);
    return 0;
  }
  // The topic from the input: device ids and metrics from any topic levels.
  const std::size_t tab = input.find('\t');
  if (tab == std::string_view::npos) return 0;
  const std::string_view topic = input.substr(0, tab);
  if (const meter::MappingConfig* mapping = agent_config.mapping_for(topic)) {
    check_decode(*mapping, topic, input.substr(tab + 1));
  }
  return 0;
}
