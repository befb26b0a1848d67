// libFuzzer target for the mapping layer: decode_message through every
// shipped preset (config/presets/) and hand-written json mappings that use
// every source form and every composing feature (parts, each, when, ignore,
// scale, sum, difference, a reading's own timestamp and device id). The first input byte picks the
// topic (one the mapping matches, or a topic taken from the input up to the first TAB); the rest is
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
  uptime: {kind: gauge, unit: s, role: uptime_seconds}
  boot_count: {kind: gauge, unit: count, role: boot_count}
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
  - preset: shelly_gen1
  - preset: shelly_rpc
  - preset: zigbee2mqtt_attributes
    topic: "z2a/+/+"
  - preset: esphome
  - preset: opendtu
  - preset: emonhub
  - preset: dsmr_reader
  - preset: tasmota_state
  - preset: tasmota_boot
  - preset: dsmr_reader_topics
  # Every composing form: when, parts, each with key and key_match, scale,
  # sum, difference, a reading's own timestamp and device id, level maps.
  - topic: "compose/+/+"
    when: [{topic_level: -1, match: "c*"}]
    format: json
    device_id: {parts: [{topic_level: 1, match: "d*"}, "/", {key: true}, "/", {key_match: true}]}
    timestamp: {path: /ts, format: epoch_seconds}
    readings:
      - metric_type: energy
        each: {path: /params, keys: "sw*:x"}
        value: {path: /e}
        unit: Wh
        scale: {multiply: 1.5, divide: 7, decimals: 4}
        timestamp: {path: /t2}
      - metric_type: power
        value: {sum: [/a, /b, /c]}
        unit: W
        scale: 0.001
        device_id: {parts: [{topic_level: 0}, {path: /id}]}
      - metric_type: {topic_level: -1, map: {c1: power, c2: energy}}
        value: {difference: [/a, /b]}
        unit: {topic_level: -1, map: {c1: kW, c2: MWh}}
        device_id: {topic_levels_from: 1}
  - topic: "compose/+/+"
    ignore: "not a compose topic"
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
    "shellies/plug-s/relay/0/energy",
    "shellies/em/emeter/1/total",
    "!pro/status/em1data:1",
    "!plus/status/switch:0",
    "pro/events/rpc",
    "z2a/plug/energy",
    "node/sensor/power/state",
    "solar/1164/0/yieldtotal",
    "emon/emontx4/E1",
    "dsmr/json",
    "tele/tasmota_1A2B3C/STATE",
    "tele/tasmota_1A2B3C/INFO3",
    "dsmr/reading/electricity_delivered_2",
    "compose/dev1/c2",
    "compose/dev1/other",
};

// shelly_gen2 takes +/status/+ as shelly_em does: it cannot share their config.
const std::string kSecondConfig = R"(
gateway_id: fuzz
presets_dir: )" METER_SOURCE_DIR R"(/config/presets
metrics:
  energy: {kind: counter, unit: kWh}
  power: {kind: gauge, unit: kW}
  uptime: {kind: gauge, unit: s, role: uptime_seconds}
  boot_count: {kind: gauge, unit: count, role: boot_count}
mappings:
  - preset: shelly_gen2
    timestamp: {format: rfc3339}
)";

// Topics of kSecondConfig: these carry a '!' in front in kTopics.
const meter::Config& second_config() {
  static const meter::Config parsed = [] {
    auto result = meter::parse_config(kSecondConfig, "<fuzz second>");
    if (!result) {
      std::fprintf(stderr, "fuzz second config: %s\n", result.error().message.c_str());
      std::abort();
    }
    return std::move(result).value();
  }();
  return parsed;
}

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

  if (mapping.ignore) {
    require(decoded.ok() && decoded->ignored_reason == mapping.ignore,
            "an ignore mapping did not ignore with its reason");
    return;
  }
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
    // Only a json mapping with a timestamp path (its own or a reading's)
    // reads a timestamp; the others use the receive time.
    bool any_timestamp_path = mapping.timestamp.path.has_value();
    bool any_rounding_scale = false;
    for (const meter::ReadingMapping& r : mapping.readings) {
      any_timestamp_path = any_timestamp_path || r.timestamp_path.has_value();
      any_rounding_scale = any_rounding_scale || (r.scale && r.scale->divide > 1);
    }
    if (mapping.format != meter::PayloadFormat::json || !any_timestamp_path) {
      require(!reading.timestamp.has_value(), "timestamp without a timestamp path");
    } else if (mapping.timestamp.path) {
      require(reading.timestamp.has_value(), "no timestamp with a mapping timestamp path");
    }
    require(!reading.rounded || any_rounding_scale, "rounded without a rounding scale");
    if (mapping.format == meter::PayloadFormat::plain && !mapping.readings.front().scale) {
      require(reading.value == trim(payload), "plain value is not the payload");
    }
    if (any_rounding_scale || mapping.readings.front().scale) {
      // A scaled value is canonical decimal text.
      auto parsed = meter::Decimal::parse(reading.value);
      require(!mapping.readings.front().scale || mapping.format != meter::PayloadFormat::plain ||
                  (parsed.ok() && parsed->text() == reading.value),
              "a scaled value is not canonical decimal text");
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
  // Choice 7 is the topic from the input, where the seeds in corpus/mapping
  // (written when there were 7 fixed topics) expect it.
  constexpr std::size_t kFromInput = 7;
  const std::size_t choice = data[0] % (std::size(kTopics) + 1);
  if (choice != kFromInput) {
    std::string_view topic = kTopics[choice < kFromInput ? choice : choice - 1];
    const bool second = topic.front() == '!';
    if (second) topic.remove_prefix(1);
    const meter::MappingConfig* mapping =
        (second ? second_config() : agent_config).mapping_for(topic);
    require(mapping != nullptr, "a fixed topic matches no mapping");
    check_decode(*mapping, topic, input);
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
