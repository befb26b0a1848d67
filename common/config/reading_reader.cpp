// The readings' YAML reader: a mapping's readings, their values (path, sum,
// difference, each, scale, timestamp) and the text sources of device ids,
// metrics and units. Split from mapping_reader.cpp (mappings, presets), which
// it serves; the Parser class is declared in parser.hpp.
#include <algorithm>
#include <string>
#include <vector>

#include "common/config/parser.hpp"
#include "common/util/quote.hpp"
#include "common/util/utf8.hpp"

namespace meter::config_parser {
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
  if (!read_map(value,
                KeyList{"metric_type", "value", "unit", "arrays", "required", "each", "scale",
                        "timestamp", "device_id"},
                entries)) {
    return false;
  }
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "metric_type") {
      ok = parse_text_source(entry.value, TextSourceUse::metric_type, out.metric_type);
    } else if (entry.key == "value") {
      ok = parse_value_source(entry.value, out);
    } else if (entry.key == "each") {
      ok = parse_each(entry.value, out);
    } else if (entry.key == "scale") {
      ok = parse_scale(entry.value, out);
    } else if (entry.key == "timestamp") {
      ok = parse_reading_timestamp(entry.value, out);
    } else if (entry.key == "device_id") {
      TextSource device_id;
      ok = parse_text_source(entry.value, TextSourceUse::device_id, device_id);
      out.device_id = std::move(device_id);
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

bool Parser::parse_value_source(const Value& value, ReadingMapping& out) {
  constexpr std::string_view kExpected =
      "a map {path: JSON_POINTER}, {sum: [POINTER, ...]} or {difference: [POINTER, POINTER]}, "
      "e.g. {path: /ENERGY/Total}";
  std::vector<Entry> entries;
  if (!value.node.IsMap()) return fail_expected(value, kExpected);
  if (!read_map(value, KeyList{"path", "sum", "difference"}, entries)) return false;
  if (entries.size() != 1) {
    return fail(value, "expected exactly one of path, sum, difference, got " +
                           std::to_string(entries.size()));
  }
  const Entry& entry = entries.front();
  out.terms.clear();
  if (entry.key == "path") {
    JsonPointer pointer;
    if (!parse_json_pointer(entry.value, pointer)) return false;
    out.combination = ValueCombination::single;
    out.value = std::move(pointer);
    return true;
  }
  const bool sum = entry.key == "sum";
  out.combination = sum ? ValueCombination::sum : ValueCombination::difference;
  const Value& list = entry.value;
  const std::string expected = sum ? "a list of two or more JSON pointers"
                                   : "a list of two JSON pointers: [minuend, subtrahend]";
  if (!list.node.IsSequence()) return fail_expected(list, expected);
  if (list.node.size() < 2 || (!sum && list.node.size() != 2)) return fail_expected(list, expected);
  for (std::size_t i = 0; i < list.node.size(); ++i) {
    const YAML::Node item = list.node[i];
    const Value item_value{item, item.IsNull() ? list.mark : item.Mark(),
                           list.path + "[" + std::to_string(i) + "]"};
    JsonPointer pointer;
    if (!parse_json_pointer(item_value, pointer)) return false;
    out.terms.push_back(std::move(pointer));
  }
  out.value = out.terms.front();
  return true;
}

bool Parser::parse_each(const Value& value, ReadingMapping& out) {
  std::vector<Entry> entries;
  if (!value.node.IsMap()) {
    return fail_expected(value,
                         "a map {path: JSON_POINTER, keys: PATTERN}, e.g. "
                         "{path: /params, keys: \"switch:*\"}");
  }
  if (!read_map(value, KeyList{"path", "keys"}, entries)) return false;
  if (!require(value, entries, KeyList{"keys"})) return false;
  EachMember each;
  if (const Entry* path = find_entry(entries, "path")) {
    if (!parse_json_pointer(path->value, each.object)) return false;
  }
  if (!parse_pattern(find_entry(entries, "keys")->value, each.keys)) return false;
  out.each = std::move(each);
  return true;
}

bool Parser::parse_scale(const Value& value, ReadingMapping& out) {
  constexpr std::string_view kFactor = "a decimal factor such as 0.001";
  Scale scale;
  if (value.node.IsScalar()) {
    std::string text;
    if (!scalar(value, kFactor, text)) return false;
    Result<Decimal> factor = Decimal::parse(text);
    if (!factor || factor->is_zero()) return fail_expected(value, kFactor);
    scale.multiply = std::move(*factor);
    out.scale = std::move(scale);
    return true;
  }
  if (!value.node.IsMap()) {
    return fail_expected(value,
                         "a decimal factor, or a map {multiply: DECIMAL, divide: INTEGER, "
                         "decimals: N}");
  }
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"multiply", "divide", "decimals"}, entries)) return false;
  bool has_decimals = false;
  for (const Entry& entry : entries) {
    if (entry.key == "multiply") {
      std::string text;
      if (!scalar(entry.value, kFactor, text)) return false;
      Result<Decimal> factor = Decimal::parse(text);
      if (!factor || factor->is_zero()) return fail_expected(entry.value, kFactor);
      scale.multiply = std::move(*factor);
    } else if (entry.key == "divide") {
      int divisor = 0;
      if (!whole_number(entry.value, 1, 1000000000, divisor)) return false;
      scale.divide = static_cast<std::uint64_t>(divisor);
    } else if (entry.key == "decimals") {
      if (!whole_number(entry.value, 0, 20, scale.decimals)) return false;
      has_decimals = true;
    }
  }
  if (scale.divide > 1 && !has_decimals) {
    return fail(value,
                "scale with divide needs decimals: the places a quotient that is no finite "
                "decimal is rounded to (changing them later gives those readings new event_ids)");
  }
  out.scale = std::move(scale);
  return true;
}

bool Parser::parse_reading_timestamp(const Value& value, ReadingMapping& out) {
  std::vector<Entry> entries;
  if (!value.node.IsMap()) {
    return fail_expected(value, "a map {path: JSON_POINTER} (format and zone are the mapping's)");
  }
  if (!read_map(value, KeyList{"path"}, entries)) return false;
  if (!require(value, entries, KeyList{"path"})) return false;
  JsonPointer pointer;
  if (!parse_json_pointer(entries.front().value, pointer)) return false;
  out.timestamp_path = std::move(pointer);
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
  // The sources, then the two modifiers of topic_level (`match`, `map`).
  const KeyList device_keys{"constant", "path",      "topic_level", "topic_levels_from",
                            "key",      "key_match", "parts",       "match"};
  const KeyList metric_keys{"constant", "topic_level", "topic_levels_from", "match", "map"};
  const KeyList unit_keys{"constant", "path", "per_metric", "topic_level", "map"};
  const KeyList keys = use == TextSourceUse::device_id     ? device_keys
                       : use == TextSourceUse::metric_type ? metric_keys
                                                           : unit_keys;
  if (!value.node.IsMap()) {
    return fail_expected(value, "a constant or a map with one of " + join(keys));
  }
  std::vector<Entry> entries;
  if (!read_map(value, keys, entries)) return false;
  const Entry* match = find_entry(entries, "match");
  const Entry* map = find_entry(entries, "map");
  std::vector<const Entry*> sources;
  for (const Entry& entry : entries) {
    if (entry.key != "match" && entry.key != "map") sources.push_back(&entry);
  }
  if (sources.size() != 1) {
    return fail(
        value, "expected exactly one of " + join(keys) + ", got " + std::to_string(sources.size()));
  }
  const Entry& entry = *sources.front();
  if ((match != nullptr || map != nullptr) && entry.key != "topic_level") {
    return fail(value, "match and map go with topic_level");
  }
  if (use == TextSourceUse::unit && entry.key == "topic_level" && map == nullptr) {
    return fail(value, "a unit from a topic level needs map: {LEVEL: UNIT, ...}");
  }
  if (use == TextSourceUse::metric_type && entry.key == "topic_level" && map == nullptr &&
      match != nullptr) {
    return fail(value, "a metric from a matched topic level needs map: {TEXT: METRIC, ...}");
  }
  if (match != nullptr && !parse_pattern(match->value, out.level_pattern)) return false;
  if (map != nullptr && !parse_level_map(map->value, use, out.level_map)) return false;
  if (entry.key == "key" || entry.key == "key_match") {
    bool yes = false;
    if (!boolean(entry.value, yes)) return false;
    if (!yes) return fail_expected(entry.value, "true");
    out.kind = entry.key == "key" ? TextSource::Kind::key : TextSource::Kind::key_match;
    return true;
  }
  if (entry.key == "parts") return parse_parts(entry.value, out);
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

bool Parser::parse_parts(const Value& value, TextSource& out) {
  if (!value.node.IsSequence() || value.node.size() == 0) {
    return fail_expected(value,
                         "a list of texts and sources, e.g. [{topic_level: 1}, \"/ch\", "
                         "{key_match: true}]");
  }
  out.kind = TextSource::Kind::parts;
  for (std::size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node item = value.node[i];
    const Value item_value{item, item.IsNull() ? value.mark : item.Mark(),
                           value.path + "[" + std::to_string(i) + "]"};
    TextSource part;
    if (item.IsMap()) {
      if (!parse_text_source(item_value, TextSourceUse::device_id, part)) return false;
      if (part.kind == TextSource::Kind::parts) return fail(item_value, "parts do not nest");
    } else {
      // A separator such as "/" is a part too; only the whole id must be non-empty.
      part.kind = TextSource::Kind::constant;
      constexpr std::string_view kExpected = "a text without control characters";
      if (!scalar(item_value, kExpected, part.constant)) return false;
      bool ok = !part.constant.empty() && is_valid_utf8(part.constant);
      for (const char c : part.constant)
        ok = ok && static_cast<unsigned char>(c) >= 0x20 && c != 0x7F;
      if (!ok) return fail_expected(item_value, kExpected);
    }
    out.parts.push_back(std::move(part));
  }
  return true;
}

bool Parser::parse_level_map(const Value& value, TextSourceUse use,
                             std::map<std::string, std::string, std::less<>>& out) {
  std::vector<Entry> entries;
  if (!value.node.IsMap()) return fail_expected(value, "a map of topic level text to value");
  if (!read_map(value, std::nullopt, entries)) return false;
  if (entries.empty()) return fail(value, "at least one entry is required");
  for (const Entry& entry : entries) {
    std::string text;
    if (!parse_constant(entry.value, use, text)) return false;
    out.emplace(entry.key, std::move(text));
  }
  return true;
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
