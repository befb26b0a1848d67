// The mappings' YAML reader: topic filters, formats, readings, text sources,
// timestamps and presets (a preset file is read by a Parser of its own). The
// Parser class is declared in parser.hpp; the rest of the document is read in
// config_reader.cpp.
#include <algorithm>
#include <string>
#include <system_error>
#include <vector>

#include "common/config/parser.hpp"
#include "common/util/quote.hpp"
#include "common/util/utf8.hpp"

namespace meter::config_parser {

bool Parser::parse_mappings(const Value& value, std::vector<MappingConfig>& out) {
  if (!value.node.IsSequence()) return fail_expected(value, "a list of mappings");
  if (value.node.size() == 0) return fail(value, "at least one mapping is required");
  std::vector<YAML::Mark> topic_marks;
  for (std::size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node item = value.node[i];
    const Value item_value{item, item.IsNull() ? value.mark : item.Mark(),
                           value.path + "[" + std::to_string(i) + "]"};
    MappingConfig mapping;
    YAML::Mark topic_mark;
    if (!parse_mapping(item_value, mapping, topic_mark)) return false;
    // A repeated filter can never match: the earlier one always wins.
    for (std::size_t k = 0; k < out.size(); ++k) {
      if (out[k].topic == mapping.topic) {
        return fail(topic_mark, item_value.path + ".topic: same filter as " + value.path + "[" +
                                    std::to_string(k) + "] (line " +
                                    std::to_string(topic_marks[k].line + 1) +
                                    "), so it would never match");
      }
    }
    out.push_back(std::move(mapping));
    topic_marks.push_back(topic_mark);
  }
  return true;
}

bool Parser::parse_mapping(const Value& value, MappingConfig& out, YAML::Mark& topic_mark,
                           bool allow_preset) {
  std::vector<Entry> entries;
  const KeyList user_keys{"preset", "topic", "format", "timestamp", "device_id", "readings"};
  const KeyList preset_keys{"topic", "format", "timestamp", "device_id", "readings"};
  if (!read_map(value, allow_preset ? user_keys : preset_keys, entries)) return false;
  // The preset first, then every other key given replaces the preset's
  // key whole (a shallow merge: what you read in the config is what holds
  // for that key, nothing is half-inherited).
  const Entry* preset = find_entry(entries, "preset");
  if (preset != nullptr) {
    if (!load_preset(preset->value, out)) return false;
    topic_mark = preset->value.mark;
  }
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "topic") {
      ok = parse_topic_filter(entry.value, out.topic);
      topic_mark = entry.value.mark;
    } else if (entry.key == "format") {
      ok = one_of(entry.value,
                  {{"seed_json", PayloadFormat::seed_json},
                   {"json", PayloadFormat::json},
                   {"plain", PayloadFormat::plain}},
                  out.format);
    } else if (entry.key == "timestamp") {
      out.timestamp = TimestampConfig{};
      ok = parse_timestamp_config(entry.value, out.timestamp);
    } else if (entry.key == "device_id") {
      ok = parse_text_source(entry.value, TextSourceUse::device_id, out.device_id);
    } else if (entry.key == "readings") {
      out.readings.clear();
      ok = parse_readings(entry.value, out.readings);
    }
    if (!ok) return false;
  }
  if (preset == nullptr && !require(value, entries, KeyList{"topic"})) return false;
  if (!validate_mapping(value, out)) return false;
  for (const ReadingMapping& reading : out.readings) {
    if (reading.metric_type.kind == TextSource::Kind::constant) {
      metric_references_.push_back(
          MetricReference{reading.metric_type.constant, value.mark, value.path, out.preset});
    }
  }
  return true;
}

bool Parser::validate_mapping(const Value& value, const MappingConfig& mapping) {
  const std::string where = mapping.preset.empty() ? "" : " (preset '" + mapping.preset + "')";
  const bool has_device_id =
      mapping.device_id.kind != TextSource::Kind::constant || !mapping.device_id.constant.empty();
  if (mapping.format == PayloadFormat::seed_json) {
    if (has_device_id || !mapping.readings.empty()) {
      return fail(value, "device_id and readings are for format json or plain; seed_json" + where +
                             " reads them from each payload");
    }
    if (mapping.timestamp.path) {
      return fail(value, "timestamp.path is for format json; seed_json" + where +
                             " reads the member 'timestamp'");
    }
    return true;
  }
  if (!has_device_id) return fail(value, "missing required key 'device_id'" + where);
  if (mapping.readings.empty()) return fail(value, "missing required key 'readings'" + where);
  if (mapping.format == PayloadFormat::plain) {
    if (mapping.readings.size() != 1) {
      return fail(value,
                  "format plain" + where + " takes exactly one reading: the payload is one number");
    }
    const ReadingMapping& reading = mapping.readings.front();
    if (mapping.device_id.kind == TextSource::Kind::json_path ||
        reading.unit.kind == TextSource::Kind::json_path || reading.value ||
        mapping.timestamp.path) {
      return fail(value, "format plain" + where +
                             " has no JSON to point into: no path in device_id, value, unit "
                             "or timestamp (the value is the whole payload, the timestamp the "
                             "receive time)");
    }
    return validate_per_metric_units(value, mapping, where);
  }
  for (std::size_t i = 0; i < mapping.readings.size(); ++i) {
    if (!mapping.readings[i].value) {
      return fail(value, "readings[" + std::to_string(i) + "]" + where +
                             ": missing required key 'value' (format json)");
    }
  }
  return validate_per_metric_units(value, mapping, where);
}

bool Parser::parse_readings(const Value& value, std::vector<ReadingMapping>& out) {
  if (!value.node.IsSequence()) return fail_expected(value, "a list of readings");
  if (value.node.size() == 0) return fail(value, "at least one reading is required");
  for (std::size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node item = value.node[i];
    const Value item_value{item, item.IsNull() ? value.mark : item.Mark(),
                           value.path + "[" + std::to_string(i) + "]"};
    ReadingMapping reading;
    if (!parse_reading(item_value, reading)) return false;
    out.push_back(std::move(reading));
  }
  return true;
}

bool Parser::parse_reading(const Value& value, ReadingMapping& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"metric_type", "value", "unit", "arrays", "required"}, entries)) {
    return false;
  }
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "metric_type") {
      ok = parse_text_source(entry.value, TextSourceUse::metric_type, out.metric_type);
    } else if (entry.key == "value") {
      ok = parse_value_source(entry.value, out.value);
    } else if (entry.key == "unit") {
      ok = parse_text_source(entry.value, TextSourceUse::unit, out.unit);
    } else if (entry.key == "arrays") {
      ok = one_of(entry.value, {{"error", ArrayValues::error}, {"channels", ArrayValues::channels}},
                  out.arrays);
    } else if (entry.key == "required") {
      ok = boolean(entry.value, out.required);
    }
    if (!ok) return false;
  }
  return require(value, entries, KeyList{"metric_type", "unit"});
}

bool Parser::parse_value_source(const Value& value, std::optional<JsonPointer>& out) {
  std::vector<Entry> entries;
  if (!value.node.IsMap()) {
    return fail_expected(value, "a map {path: JSON_POINTER}, e.g. {path: /ENERGY/Total}");
  }
  if (!read_map(value, KeyList{"path"}, entries)) return false;
  if (!require(value, entries, KeyList{"path"})) return false;
  JsonPointer pointer;
  if (!parse_json_pointer(entries.front().value, pointer)) return false;
  out = std::move(pointer);
  return true;
}

bool Parser::parse_json_pointer(const Value& value, JsonPointer& out) {
  constexpr std::string_view kExpected = "a JSON pointer (RFC 6901), e.g. /ENERGY/Total";
  std::string text;
  if (!scalar(value, kExpected, text)) return false;
  if (!is_valid_utf8(text)) return fail_expected(value, kExpected);
  Result<JsonPointer> pointer = JsonPointer::parse(text);
  if (!pointer) return fail(value, pointer.error().message + ", got " + quote(text));
  out = std::move(*pointer);
  return true;
}

bool Parser::parse_text_source(const Value& value, TextSourceUse use, TextSource& out) {
  out = TextSource{};
  if (value.node.IsScalar()) return parse_constant(value, use, out.constant);
  const KeyList device_keys{"constant", "path", "topic_level", "topic_levels_from"};
  const KeyList metric_keys{"constant", "topic_level", "topic_levels_from"};
  const KeyList unit_keys{"constant", "path", "per_metric"};
  const KeyList keys = use == TextSourceUse::device_id     ? device_keys
                       : use == TextSourceUse::metric_type ? metric_keys
                                                           : unit_keys;
  if (!value.node.IsMap()) {
    return fail_expected(value, "a constant or a map with one of " + join(keys));
  }
  std::vector<Entry> entries;
  if (!read_map(value, keys, entries)) return false;
  if (entries.size() != 1) {
    return fail(
        value, "expected exactly one of " + join(keys) + ", got " + std::to_string(entries.size()));
  }
  const Entry& entry = entries.front();
  if (entry.key == "constant") {
    out.kind = TextSource::Kind::constant;
    return parse_constant(entry.value, use, out.constant);
  }
  if (entry.key == "path") {
    out.kind = TextSource::Kind::json_path;
    return parse_json_pointer(entry.value, out.path);
  }
  if (entry.key == "per_metric") {
    out.kind = TextSource::Kind::per_metric_constant;
    return parse_per_metric_units(entry.value, out.per_metric);
  }
  const bool single = entry.key == "topic_level";
  out.kind = single ? TextSource::Kind::topic_level : TextSource::Kind::topic_levels_from;
  return parse_topic_level(entry.value, single, out.topic_level);
}

bool Parser::parse_constant(const Value& value, TextSourceUse use, std::string& out) {
  if (use == TextSourceUse::unit) return parse_unit(value, out);
  if (use == TextSourceUse::metric_type) {
    constexpr std::string_view kExpected = "a metric name (1 to 64 characters of a-z, 0-9, '_')";
    if (!scalar(value, kExpected, out)) return false;
    if (!is_name(out, false)) return fail_expected(value, kExpected);
    return true;
  }
  constexpr std::string_view kExpected = "a device id (UTF-8 text without control characters)";
  if (!scalar(value, kExpected, out)) return false;
  bool ok = !out.empty() && is_valid_utf8(out);
  for (const char c : out) ok = ok && static_cast<unsigned char>(c) >= 0x20 && c != 0x7F;
  if (!ok) return fail_expected(value, kExpected);
  return true;
}

bool Parser::parse_topic_level(const Value& value, bool allow_negative, int& out) {
  const std::string expected =
      allow_negative ? std::string("a topic level index: 0 for the first, -1 for the last")
                     : std::string("a topic level index from 0 (the first level)");
  std::string text;
  if (!scalar(value, expected, text)) return false;
  const bool negative = !text.empty() && text.front() == '-';
  if (negative && !allow_negative) return fail_expected(value, expected);
  const auto number = parse_unsigned(std::string_view(text).substr(negative ? 1 : 0));
  // An MQTT topic is at most 65535 bytes, so at most 32768 levels.
  if (!number || *number > 32768 || (negative && *number == 0)) {
    return fail_expected(value, expected);
  }
  out = negative ? -static_cast<int>(*number) : static_cast<int>(*number);
  return true;
}

std::vector<fs::path> Parser::preset_dirs() const {
  if (!presets_dir_.empty()) return {fs::path(presets_dir_)};
  return {(base_dir_ / "presets").lexically_normal(), fs::path(kInstalledPresetsDir)};
}

std::string Parser::available_presets() const {
  std::vector<std::string> names;
  for (const fs::path& dir : preset_dirs()) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".yaml") names.push_back(it->path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none found" : out;
}

std::string Parser::searched_dirs() const {
  std::string out;
  for (const fs::path& dir : preset_dirs()) out += (out.empty() ? "" : ", ") + dir.string();
  return out;
}

bool Parser::load_preset(const Value& value, MappingConfig& out) {
  constexpr std::string_view kExpected = "a preset name (a-z, 0-9, '_')";
  std::string name;
  if (!scalar(value, kExpected, name)) return false;
  if (!is_name(name, false)) return fail_expected(value, kExpected);
  fs::path file;
  for (const fs::path& dir : preset_dirs()) {
    std::error_code ec;
    if (fs::is_regular_file(dir / (name + ".yaml"), ec)) {
      file = dir / (name + ".yaml");
      break;
    }
  }
  if (file.empty()) {
    return fail(value, "unknown preset " + quote(name) + "; available: " + available_presets() +
                           " (searched " + searched_dirs() + "; set presets_dir to change)");
  }
  Result<std::string> text = read_file(file.string());
  if (!text) return fail(value, "preset " + quote(name) + ": " + text.error().message);
  Parser preset_parser(file.string(), file.parent_path());
  if (!preset_parser.parse_preset_document(*text, out)) {
    return fail(value, "preset " + quote(name) + ": " + preset_parser.error().message);
  }
  out.preset = name;
  return true;
}

bool Parser::parse_preset_document(const std::string& text, MappingConfig& out) {
  try {
    const YAML::Node root = YAML::Load(text);
    const Value top{root, root.Mark(), ""};
    if (root.IsNull()) return fail(top, "empty preset; expected description and mapping");
    std::vector<Entry> entries;
    if (!read_map(top, KeyList{"description", "mapping"}, entries)) return false;
    if (!require(top, entries, KeyList{"description", "mapping"})) return false;
    std::string description;
    if (!scalar(find_entry(entries, "description")->value, "a text", description)) {
      return false;
    }
    YAML::Mark topic_mark;
    return parse_mapping(find_entry(entries, "mapping")->value, out, topic_mark, false);
  } catch (const YAML::Exception& e) {
    return fail(e.mark, "invalid YAML: " + e.msg);
  }
}

bool Parser::check_metric_references(const Config& config) {
  for (const MetricReference& reference : metric_references_) {
    if (config.metric(reference.metric) != nullptr) continue;
    std::string message = display_path(reference.path) +
                          (reference.preset.empty() ? "" : " (preset '" + reference.preset + "')") +
                          ": a reading has metric_type " + quote(reference.metric) +
                          ", which is not declared under metrics; declare it";
    message += reference.preset.empty() ? " or remove the reading"
                                        : " or give this mapping its own readings";
    return fail(reference.mark, message);
  }
  return true;
}

bool Parser::parse_topic_filter(const Value& value, std::string& out) {
  // `topic: #` is the likeliest way to get here: YAML reads it as a comment.
  if (value.node.IsNull()) {
    return fail(value,
                "expected an MQTT topic filter, got an empty value (quote a filter that starts "
                "with '#': YAML reads an unquoted one as a comment)");
  }
  if (!scalar(value, "an MQTT topic filter", out)) return false;
  if (const auto problem = topic_filter_problem(out)) {
    return fail(value, "invalid MQTT topic filter " + quote(out) + ": " + *problem);
  }
  // The agent's own raw log uses these topics (operator events such as
  // `meter replace`, docs/PROTOCOL.md): a mapping must never decode them.
  if (std::string_view(out).starts_with(kReservedTopicPrefix)) {
    return fail(value, "topics starting with " + std::string(kReservedTopicPrefix) +
                           " are reserved for the agent's own records, got " + quote(out));
  }
  return true;
}

bool Parser::parse_timestamp_config(const Value& value, TimestampConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"path", "format", "zone"}, entries)) return false;
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "path") {
      JsonPointer pointer;
      ok = parse_json_pointer(entry.value, pointer);
      out.path = std::move(pointer);
    } else if (entry.key == "format") {
      ok = one_of(entry.value,
                  {{"rfc3339", TimestampFormat::rfc3339},
                   {"epoch_seconds", TimestampFormat::epoch_seconds},
                   {"epoch_milliseconds", TimestampFormat::epoch_milliseconds}},
                  out.format);
    } else if (entry.key == "zone") {
      ok = parse_zone(entry.value, out.zone_name, out.zone);
    }
    if (!ok) return false;
  }
  return true;
}

bool Parser::parse_zone(const Value& value, std::string& name_out,
                        const date::time_zone*& zone_out) {
  constexpr std::string_view kExpected = "an IANA time zone name such as Europe/Berlin";
  std::string name;
  if (!scalar(value, kExpected, name)) return false;
  if (name.empty()) return fail_expected(value, kExpected);
  Result<const date::time_zone*> zone = find_time_zone(name);
  if (!zone) return fail(value, zone.error().message);
  name_out = std::move(name);
  zone_out = *zone;
  return true;
}

bool Parser::validate_per_metric_units(const Value& value, const MappingConfig& mapping,
                                       const std::string& where) {
  for (std::size_t i = 0; i < mapping.readings.size(); ++i) {
    const ReadingMapping& reading = mapping.readings[i];
    if (reading.unit.kind == TextSource::Kind::per_metric_constant &&
        reading.metric_type.kind == TextSource::Kind::constant &&
        !reading.unit.per_metric.contains(reading.metric_type.constant)) {
      return fail(value, "readings[" + std::to_string(i) + "]" + where + ": unit.per_metric " +
                             "has no unit for its metric_type " +
                             quote(reading.metric_type.constant));
    }
  }
  return true;
}

bool Parser::parse_per_metric_units(const Value& value,
                                    std::map<std::string, std::string, std::less<>>& out) {
  std::vector<Entry> entries;
  if (!value.node.IsMap()) return fail_expected(value, "a map of metric name to unit");
  if (!read_map(value, std::nullopt, entries)) return false;
  if (entries.empty()) return fail(value, "at least one metric is required");
  for (const Entry& entry : entries) {
    if (!is_name(entry.key, false)) {
      return fail(entry.key_mark, display_path(value.path) + ": invalid metric name " +
                                      quote(entry.key) +
                                      "; expected 1 to 64 characters of a-z, 0-9, '_'");
    }
    std::string unit;
    if (!parse_unit(entry.value, unit)) return false;
    out.emplace(entry.key, std::move(unit));
  }
  return true;
}

}  // namespace meter::config_parser
