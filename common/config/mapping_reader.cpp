// The mappings' YAML reader: topic filters, `when`, `ignore`, formats,
// timestamps and presets (a preset file is read by a Parser of its own); the
// readings and text sources are read in reading_reader.cpp. The Parser class
// is declared in parser.hpp; the rest of the document is read in
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
  return parse_mappings_list(value, out, true);
}

bool Parser::parse_mappings_list(const Value& value, std::vector<MappingConfig>& out,
                                 bool allow_preset) {
  if (!value.node.IsSequence()) return fail_expected(value, "a list of mappings");
  if (value.node.size() == 0) return fail(value, "at least one mapping is required");
  std::vector<YAML::Mark> topic_marks;
  std::vector<std::size_t>
      item_of;  // the list item each mapping came from (a preset may give several)
  for (std::size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node item = value.node[i];
    const Value item_value{item, item.IsNull() ? value.mark : item.Mark(),
                           value.path + "[" + std::to_string(i) + "]"};
    std::vector<MappingConfig> mappings;
    YAML::Mark topic_mark;
    if (!parse_mapping(item_value, mappings, topic_mark, allow_preset)) return false;
    for (MappingConfig& mapping : mappings) {
      // A repeated filter can never match: the earlier one always wins
      // (unless the earlier one applies only `when` its conditions hold).
      for (std::size_t k = 0; k < out.size(); ++k) {
        if (out[k].topic == mapping.topic && out[k].when.empty()) {
          return fail(topic_mark, item_value.path + ".topic: same filter as " + value.path + "[" +
                                      std::to_string(item_of[k]) + "] (line " +
                                      std::to_string(topic_marks[k].line + 1) +
                                      "), so it would never match");
        }
      }
      out.push_back(std::move(mapping));
      topic_marks.push_back(topic_mark);
      item_of.push_back(i);
    }
  }
  return true;
}

bool Parser::parse_mapping(const Value& value, std::vector<MappingConfig>& out,
                           YAML::Mark& topic_mark, bool allow_preset) {
  std::vector<Entry> entries;
  const KeyList user_keys{"preset",    "topic",    "format", "timestamp",
                          "device_id", "readings", "when",   "ignore"};
  const KeyList preset_keys{"topic",    "format", "timestamp", "device_id",
                            "readings", "when",   "ignore"};
  if (!read_map(value, allow_preset ? user_keys : preset_keys, entries)) return false;
  // The preset first, then every other key given replaces the preset's
  // key whole (a shallow merge: what you read in the config is what holds
  // for that key, nothing is half-inherited).
  const Entry* preset = find_entry(entries, "preset");
  std::vector<MappingConfig> bases(1);
  if (preset != nullptr) {
    bases.clear();
    if (!load_preset(preset->value, bases)) return false;
    topic_mark = preset->value.mark;
    if (bases.size() > 1) {
      for (const Entry& entry : entries) {
        if (entry.key != "preset" && entry.key != "timestamp") {
          return fail(entry.key_mark,
                      "preset " + quote(bases.front().preset) + " has " +
                          std::to_string(bases.size()) +
                          " mappings: only 'timestamp' may be given beside it (copy the "
                          "preset's file next to the config to change more)");
        }
      }
    }
  }
  for (MappingConfig& mapping : bases) {
    if (!apply_mapping_keys(entries, mapping, topic_mark)) return false;
    if (preset == nullptr && !require(value, entries, KeyList{"topic"})) return false;
    if (!validate_mapping(value, mapping)) return false;
    for (const ReadingMapping& reading : mapping.readings) {
      if (reading.metric_type.kind == TextSource::Kind::constant) {
        metric_references_.push_back(
            MetricReference{reading.metric_type.constant, value.mark, value.path, mapping.preset});
      }
      for (const auto& [level, metric] : reading.metric_type.level_map) {
        metric_references_.push_back(
            MetricReference{metric, value.mark, value.path, mapping.preset});
      }
    }
    out.push_back(std::move(mapping));
  }
  return true;
}

bool Parser::apply_mapping_keys(const std::vector<Entry>& entries, MappingConfig& out,
                                YAML::Mark& topic_mark) {
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "topic") {
      ok = parse_topic_filter(entry.value, out.topic);
      topic_mark = entry.value.mark;
    } else if (entry.key == "when") {
      out.when.clear();
      ok = parse_topic_conditions(entry.value, out.when);
    } else if (entry.key == "ignore") {
      std::string reason;
      ok = non_empty_text(entry.value, "a reason text, e.g. \"status topic\"", reason);
      out.ignore = std::move(reason);
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
  return true;
}

bool Parser::parse_topic_conditions(const Value& value, std::vector<TopicCondition>& out) {
  if (!value.node.IsSequence()) {
    return fail_expected(value, "a list of {topic_level: N, match: PATTERN}");
  }
  if (value.node.size() == 0) return fail(value, "at least one condition is required");
  for (std::size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node item = value.node[i];
    const Value item_value{item, item.IsNull() ? value.mark : item.Mark(),
                           value.path + "[" + std::to_string(i) + "]"};
    std::vector<Entry> entries;
    if (!item.IsMap()) return fail_expected(item_value, "a map {topic_level: N, match: PATTERN}");
    if (!read_map(item_value, KeyList{"topic_level", "match"}, entries)) return false;
    if (!require(item_value, entries, KeyList{"topic_level", "match"})) return false;
    TopicCondition condition;
    if (!parse_topic_level(find_entry(entries, "topic_level")->value, true,
                           condition.topic_level)) {
      return false;
    }
    if (!parse_pattern(find_entry(entries, "match")->value, condition.pattern)) return false;
    out.push_back(std::move(condition));
  }
  return true;
}

bool Parser::parse_pattern(const Value& value, std::string& out) {
  constexpr std::string_view kExpected =
      "a pattern: text with at most one '*' standing for any characters, e.g. \"switch:*\"";
  if (!scalar(value, kExpected, out)) return false;
  if (out.empty() || !is_valid_utf8(out) || std::count(out.begin(), out.end(), '*') > 1) {
    return fail_expected(value, kExpected);
  }
  return true;
}

bool Parser::validate_mapping(const Value& value, const MappingConfig& mapping) {
  const std::string where = mapping.preset.empty() ? "" : " (preset '" + mapping.preset + "')";
  const bool has_device_id =
      mapping.device_id.kind != TextSource::Kind::constant || !mapping.device_id.constant.empty();
  if (mapping.ignore) {
    if (has_device_id || !mapping.readings.empty() || mapping.timestamp.path) {
      return fail(value, "ignore" + where +
                             ": a mapping that ignores its messages has no device_id, readings "
                             "or timestamp.path");
    }
    return true;
  }
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
  const bool every_reading_has_device =
      !mapping.readings.empty() &&
      std::all_of(mapping.readings.begin(), mapping.readings.end(),
                  [](const ReadingMapping& reading) { return reading.device_id.has_value(); });
  if (!has_device_id && !every_reading_has_device) {
    return fail(value, "missing required key 'device_id'" + where);
  }
  if (mapping.readings.empty()) return fail(value, "missing required key 'readings'" + where);
  if (mapping.format == PayloadFormat::plain) {
    if (mapping.readings.size() != 1) {
      return fail(value,
                  "format plain" + where + " takes exactly one reading: the payload is one number");
    }
    const ReadingMapping& reading = mapping.readings.front();
    if (uses_payload(mapping.device_id) || uses_payload(reading.unit) ||
        (reading.device_id && uses_payload(*reading.device_id)) ||
        uses_payload(reading.metric_type) || reading.value || mapping.timestamp.path ||
        reading.each || reading.timestamp_path || reading.combination != ValueCombination::single) {
      return fail(value, "format plain" + where +
                             " has no JSON to point into: no path, each, sum or difference in "
                             "device_id, value, unit or timestamp (the value is the whole "
                             "payload, the timestamp the receive time)");
    }
    return validate_per_metric_units(value, mapping, where);
  }
  for (std::size_t i = 0; i < mapping.readings.size(); ++i) {
    if (!mapping.readings[i].value) {
      return fail(value, "readings[" + std::to_string(i) + "]" + where +
                             ": missing required key 'value' (format json)");
    }
  }
  // `key` and `key_match` name an `each` member: every reading needs one.
  const bool device_uses_key = uses_key(mapping.device_id);
  // A mapping whose every reading names its own device needs no device_id of its own.
  for (std::size_t i = 0; i < mapping.readings.size(); ++i) {
    const ReadingMapping& reading = mapping.readings[i];
    const bool reading_device_uses_key =
        reading.device_id ? uses_key(*reading.device_id) : device_uses_key;
    if (!reading.each &&
        (reading_device_uses_key || uses_key(reading.metric_type) || uses_key(reading.unit))) {
      return fail(value, "readings[" + std::to_string(i) + "]" + where +
                             ": key and key_match name the member an 'each' matched; this "
                             "reading has no 'each'");
    }
  }
  return validate_per_metric_units(value, mapping, where);
}

bool Parser::uses_payload(const TextSource& source) {
  if (source.kind == TextSource::Kind::json_path || source.kind == TextSource::Kind::key ||
      source.kind == TextSource::Kind::key_match) {
    return true;
  }
  return std::any_of(source.parts.begin(), source.parts.end(),
                     [](const TextSource& part) { return uses_payload(part); });
}

bool Parser::uses_key(const TextSource& source) {
  if (source.kind == TextSource::Kind::key || source.kind == TextSource::Kind::key_match) {
    return true;
  }
  return std::any_of(source.parts.begin(), source.parts.end(),
                     [](const TextSource& part) { return uses_key(part); });
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

bool Parser::load_preset(const Value& value, std::vector<MappingConfig>& out) {
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
  for (MappingConfig& mapping : out) mapping.preset = name;
  return true;
}

bool Parser::parse_preset_document(const std::string& text, std::vector<MappingConfig>& out) {
  try {
    const YAML::Node root = YAML::Load(text);
    const Value top{root, root.Mark(), ""};
    if (root.IsNull()) return fail(top, "empty preset; expected description and mapping");
    std::vector<Entry> entries;
    if (!read_map(top, KeyList{"description", "mapping", "mappings"}, entries)) return false;
    if (!require(top, entries, KeyList{"description"})) return false;
    std::string description;
    if (!scalar(find_entry(entries, "description")->value, "a text", description)) {
      return false;
    }
    const Entry* one = find_entry(entries, "mapping");
    const Entry* many = find_entry(entries, "mappings");
    if ((one == nullptr) == (many == nullptr)) {
      return fail(top, "a preset has exactly one of 'mapping' (one) or 'mappings' (a list)");
    }
    YAML::Mark topic_mark;
    if (one != nullptr) return parse_mapping(one->value, out, topic_mark, false);
    // Several: the same checks as a config's mappings list (a repeated filter
    // needs `when` on the earlier one).
    std::vector<MappingConfig> list;
    if (!parse_mappings_list(many->value, list, false)) return false;
    for (MappingConfig& mapping : list) out.push_back(std::move(mapping));
    return true;
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

}  // namespace meter::config_parser

namespace meter {

bool pattern_matches(std::string_view pattern, std::string_view text, std::string_view* star) {
  const std::size_t wildcard = pattern.find('*');
  if (wildcard == std::string_view::npos) {
    if (pattern != text) return false;
    if (star != nullptr) *star = {};
    return true;
  }
  const std::string_view prefix = pattern.substr(0, wildcard);
  const std::string_view suffix = pattern.substr(wildcard + 1);
  if (text.size() < prefix.size() + suffix.size() || !text.starts_with(prefix) ||
      !text.ends_with(suffix)) {
    return false;
  }
  if (star != nullptr) {
    *star = text.substr(prefix.size(), text.size() - prefix.size() - suffix.size());
  }
  return true;
}

namespace {

// Level `index` of `topic` (negative from the end), or none.
std::optional<std::string_view> topic_level_at(std::string_view topic, int index) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = topic.find('/', start);
    levels.push_back(topic.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  const auto count = static_cast<long>(levels.size());
  const long at = index < 0 ? count + index : index;
  if (at < 0 || at >= count) return std::nullopt;
  return levels[static_cast<std::size_t>(at)];
}

}  // namespace

std::string MappingConfig::label() const {
  std::string text = topic;
  for (const TopicCondition& condition : when) {
    text += " when " + std::to_string(condition.topic_level) + "=" + condition.pattern;
  }
  if (!preset.empty()) text += " (" + preset + ")";
  return text;
}

bool mapping_applies(const MappingConfig& mapping, std::string_view topic) {
  if (!topic_matches(mapping.topic, topic)) return false;
  for (const TopicCondition& condition : mapping.when) {
    const auto level = topic_level_at(topic, condition.topic_level);
    if (!level || !pattern_matches(condition.pattern, *level)) return false;
  }
  return true;
}

}  // namespace meter
