#include "agent/cli/discover.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string_view>

#include "common/config/config.hpp"
#include "common/decode/json.hpp"
#include "common/decode/mapping.hpp"
#include "common/util/quote.hpp"

namespace meter::agent {
namespace {

// The mappings block's order: specific filters before the general ones that
// would take their topics (zigbee2mqtt/+/+ before zigbee2mqtt/#).
constexpr std::array<std::string_view, 13> kPresetOrder = {"tasmota",
                                                           "tasmota_state",
                                                           "tasmota_boot",
                                                           "shelly_gen1",
                                                           "shelly_gen2",
                                                           "shelly_rpc",
                                                           "zigbee2mqtt_attributes",
                                                           "zigbee2mqtt",
                                                           "esphome",
                                                           "opendtu",
                                                           "emonhub",
                                                           "dsmr_reader",
                                                           "dsmr_reader_topics"};

// Presets whose readings include the restart evidence metric `uptime`.
bool needs_uptime(std::string_view preset) {
  return preset == "tasmota_state" || preset == "shelly_gen2" || preset == "shelly_rpc" ||
         preset == "esphome";
}

std::vector<std::string> levels_of(const std::string& topic) {
  std::vector<std::string> levels;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = topic.find('/', start);
    levels.push_back(topic.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) return levels;
    start = end + 1;
  }
}

bool is_number(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\n' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  if (text.empty()) return false;
  auto parsed = parse_json(text);
  return parsed && parsed->number() != nullptr;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool has_member(const JsonValue& object, std::string_view key) {
  return object.find(key) != nullptr;
}

bool is_component(std::string_view level) {
  for (std::string_view prefix : {"switch:", "em:", "emdata:", "em1:", "em1data:"}) {
    if (starts_with(level, prefix)) return true;
  }
  return level == "sys";
}

}  // namespace

std::string topic_shape(const std::string& topic) {
  std::string shape;
  bool first = true;
  for (const std::string& level : levels_of(topic)) {
    if (!first) shape += '/';
    first = false;
    const bool digit =
        std::any_of(level.begin(), level.end(), [](char c) { return c >= '0' && c <= '9'; });
    shape += digit ? "+" : level;
  }
  return shape;
}

std::string recognize_preset(const SeenMessage& message) {
  const std::vector<std::string> levels = levels_of(message.topic);
  const std::size_t n = levels.size();
  const std::string& last = levels.back();
  std::optional<JsonValue> json;
  if (auto parsed = parse_json(message.payload); parsed && parsed->object() != nullptr) {
    json = std::move(*parsed);
  }
  if (n >= 3 && levels[n - 3] == "tele" && json) {
    if (last == "SENSOR") {
      const JsonValue* analog = json->find("ANALOG");
      bool ct = false;
      if (analog != nullptr && analog->object() != nullptr) {
        for (const JsonMember& member : *analog->object())
          ct = ct || starts_with(member.first, "CTEnergy");
      }
      if (has_member(*json, "ENERGY") || ct) return "tasmota";
    }
    if (last == "STATE" && has_member(*json, "UptimeSec")) return "tasmota_state";
    if (last == "INFO3") {
      const JsonValue* info = json->find("Info3");
      if (info != nullptr && info->object() != nullptr && has_member(*info, "BootCount")) {
        return "tasmota_boot";
      }
    }
  }
  if (n == 5 && levels[0] == "shellies" && (levels[2] == "relay" || levels[2] == "emeter") &&
      (last == "power" || last == "energy" || last == "total") && is_number(message.payload)) {
    return "shelly_gen1";
  }
  if (n == 3 && levels[1] == "status" && is_component(last) && json) return "shelly_gen2";
  if (n == 3 && levels[1] == "events" && last == "rpc" && json) {
    const JsonValue* method = json->find("method");
    const std::string* name = method != nullptr ? method->string() : nullptr;
    if (name != nullptr && (*name == "NotifyStatus" || *name == "NotifyFullStatus")) {
      return "shelly_rpc";
    }
  }
  if (levels[0] == "zigbee2mqtt" && n >= 2 && levels[1] != "bridge") {
    if (n == 3 && (last == "energy" || last == "power") && is_number(message.payload)) {
      return "zigbee2mqtt_attributes";
    }
    if (json && (has_member(*json, "energy") || has_member(*json, "power"))) return "zigbee2mqtt";
  }
  if (n == 4 && levels[1] == "sensor" && last == "state" && is_number(message.payload)) {
    return "esphome";
  }
  if (n == 4 && levels[0] == "solar" && levels[2] == "0" &&
      (last == "yieldtotal" || last == "power") && is_number(message.payload)) {
    return "opendtu";
  }
  if (n == 3 && levels[0] == "emon" && (starts_with(last, "P") || starts_with(last, "E")) &&
      is_number(message.payload)) {
    return "emonhub";
  }
  if (message.topic == "dsmr/json" && json && has_member(*json, "electricity_delivered_1")) {
    return "dsmr_reader";
  }
  if (n == 3 && levels[0] == "dsmr" && levels[1] == "reading" &&
      (starts_with(last, "electricity_delivered_") || last == "electricity_currently_delivered") &&
      is_number(message.payload)) {
    return "dsmr_reader_topics";
  }
  return "";
}

Result<DiscoverReport> discover(const std::vector<SeenMessage>& messages,
                                const std::string& presets_dir) {
  std::map<std::string, PresetFit, std::less<>> fits;
  for (const SeenMessage& message : messages) {
    const std::string preset = recognize_preset(message);
    if (preset.empty()) continue;
    PresetFit& fit = fits[preset];
    if (fit.messages++ == 0) {
      fit.preset = preset;
      fit.example_topic = message.topic;
    }
  }
  DiscoverReport report;
  bool uptime = false;
  bool boot_count = false;
  std::string mappings;
  for (std::string_view preset : kPresetOrder) {
    const auto it = fits.find(preset);
    if (it == fits.end()) continue;
    report.presets.push_back(it->second);
    uptime = uptime || needs_uptime(preset);
    boot_count = boot_count || preset == "tasmota_boot";
    mappings += "  - preset: " + std::string(preset) + "\n";
  }
  report.config_block =
      "metrics:\n  energy: {kind: counter, unit: kWh}\n"
      "  power: {kind: gauge, unit: W}\n";
  // Restart evidence with its role (docs/QUALITY.md, device_restarted).
  if (uptime) report.config_block += "  uptime: {kind: gauge, unit: s, role: uptime_seconds}\n";
  if (boot_count) {
    report.config_block += "  boot_count: {kind: gauge, unit: count, role: boot_count}\n";
  }
  report.config_block += "mappings:\n" + (mappings.empty() ? "  []\n" : mappings);

  // Check the block: decode every message seen with it.
  std::optional<Config> config;
  if (!mappings.empty()) {
    auto parsed = parse_config(
        "gateway_id: discover\npresets_dir: " + presets_dir + "\n" + report.config_block,
        "<discover>");
    if (!parsed) return Error{"the presets do not load: " + parsed.error().message};
    config = std::move(*parsed);
  }
  std::map<std::string, TopicShape, std::less<>> unfitted;
  for (const SeenMessage& message : messages) {
    std::string reason;
    const MappingConfig* mapping = config ? config->mapping_for(message.topic) : nullptr;
    if (mapping == nullptr) {
      reason = "no preset takes this topic";
    } else if (auto decoded = decode_message(*mapping, message.topic, message.payload); !decoded) {
      reason = "preset '" + mapping->preset + "': " + decoded.error().message;
    } else {
      continue;
    }
    TopicShape& shape = unfitted[topic_shape(message.topic)];
    if (shape.messages++ == 0) {
      shape.shape = topic_shape(message.topic);
      shape.example_topic = message.topic;
      shape.example_payload = quoted_short(message.payload, 60, NonAscii::escape);
      shape.reason = reason;
    }
  }
  for (auto& [name, shape] : unfitted) report.unfitted.push_back(std::move(shape));
  std::stable_sort(
      report.unfitted.begin(), report.unfitted.end(),
      [](const TopicShape& a, const TopicShape& b) { return a.messages > b.messages; });
  return report;
}

}  // namespace meter::agent
