#include "common/decode/mapping.hpp"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/decode/json.hpp"
#include "common/decode/scale.hpp"
#include "common/util/quote.hpp"
#include "common/util/utf8.hpp"

namespace meter {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Text from a payload, a topic or a config goes into log lines and the
// status: printable ASCII, one line, short.
std::string shown(std::string_view text) { return quoted_short(text, 40, NonAscii::escape); }

std::string describe(const JsonValue& value) {
  if (value.is_null()) return "null";
  if (const bool* b = value.boolean()) return *b ? "true" : "false";
  if (const JsonNumber* n = value.number()) return "number " + shown(n->text);
  if (const std::string* s = value.string()) return "string " + shown(*s);
  if (value.array() != nullptr) return "an array";
  return "an object";
}

std::vector<std::string_view> topic_levels(std::string_view topic) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = topic.find('/', start);
    if (end == std::string_view::npos) {
      levels.push_back(topic.substr(start));
      return levels;
    }
    levels.push_back(topic.substr(start, end - start));
    start = end + 1;
  }
}

// What a message's readings are built from.
struct Message {
  std::string_view topic;
  std::vector<std::string_view> levels;
  const JsonValue* document = nullptr;  // format json only
};

// The member of an `each` a reading instance comes from; none outside `each`.
struct Member {
  std::string_view key;
  std::string_view key_match;
  const JsonValue* value = nullptr;  // what value paths resolve against
};

Result<std::string> from_topic(const TextSource& source, const Message& message,
                               std::string_view field, bool apply_map = true) {
  const auto count = static_cast<long>(message.levels.size());
  const long index = source.topic_level < 0 ? count + source.topic_level : source.topic_level;
  if (index < 0 || index >= count) {
    return Error{std::string(field) + ": topic " + shown(message.topic) + " has no level " +
                 std::to_string(source.topic_level)};
  }
  std::string text;
  if (source.kind == TextSource::Kind::topic_level) {
    text = message.levels[static_cast<std::size_t>(index)];
  } else {
    // Zigbee2MQTT friendly names may contain '/': the name is every level
    // after the base topic, joined back together.
    for (auto i = static_cast<std::size_t>(index); i < message.levels.size(); ++i) {
      if (i > static_cast<std::size_t>(index)) text += '/';
      text += message.levels[i];
    }
  }
  // Brokers only pass UTF-8 topics, but `meter-agent import` takes any bytes.
  if (!is_valid_utf8(text)) {
    return Error{std::string(field) + ": topic " + shown(message.topic) + " is not valid UTF-8"};
  }
  if (text.empty()) {
    return Error{std::string(field) + ": topic level " + std::to_string(source.topic_level) +
                 " of " + shown(message.topic) + " is empty"};
  }
  if (!source.level_pattern.empty()) {
    std::string_view star;
    if (!pattern_matches(source.level_pattern, text, &star)) {
      return Error{std::string(field) + ": topic level " + shown(text) + " does not match " +
                   shown(source.level_pattern)};
    }
    text = std::string(star);
    if (text.empty() && source.level_map.empty()) {
      return Error{std::string(field) + ": topic level matched " + shown(source.level_pattern) +
                   " with nothing for '*'"};
    }
  }
  if (apply_map && !source.level_map.empty()) {
    const auto it = source.level_map.find(text);
    if (it == source.level_map.end()) {
      return Error{std::string(field) + ": topic level " + shown(text) + " is not in the map"};
    }
    return it->second;
  }
  return text;
}

Result<std::string> text_field(const TextSource& source, const Message& message,
                               std::string_view field, std::string_view metric_type,
                               const Member& member);

Result<std::string> from_parts(const TextSource& source, const Message& message,
                               std::string_view field, std::string_view metric_type,
                               const Member& member) {
  std::string text;
  for (const TextSource& part : source.parts) {
    auto piece = text_field(part, message, field, metric_type, member);
    if (!piece) return piece.error();
    text += *piece;
  }
  return text;
}

// device_id, metric_type or unit; `metric_type` is known when the unit is
// looked up per metric.
Result<std::string> text_field(const TextSource& source, const Message& message,
                               std::string_view field, std::string_view metric_type,
                               const Member& member) {
  switch (source.kind) {
    case TextSource::Kind::constant:
      return source.constant;
    case TextSource::Kind::topic_level:
    case TextSource::Kind::topic_levels_from:
      return from_topic(source, message, field);
    case TextSource::Kind::per_metric_constant: {
      const auto it = source.per_metric.find(metric_type);
      if (it == source.per_metric.end()) {
        return Error{std::string(field) + ": no unit configured for metric " + shown(metric_type)};
      }
      return it->second;
    }
    case TextSource::Kind::key:
      return std::string(member.key);
    case TextSource::Kind::key_match:
      if (member.key_match.empty()) {
        return Error{std::string(field) + ": key " + shown(member.key) +
                     " matched '*' with nothing"};
      }
      return std::string(member.key_match);
    case TextSource::Kind::parts:
      return from_parts(source, message, field, metric_type, member);
    case TextSource::Kind::json_path:
      break;
  }
  const JsonValue* value =
      message.document == nullptr ? nullptr : source.path.resolve(*message.document);
  if (value == nullptr || value->is_null()) {
    return Error{std::string(field) + ": " + shown(source.path.text) + " is missing"};
  }
  if (const std::string* text = value->string()) {
    // As from a topic level: an empty id (or metric, or unit) names nothing.
    if (text->empty()) {
      return Error{std::string(field) + " at " + shown(source.path.text) + " is empty"};
    }
    return *text;
  }
  // A numeric id (e.g. a Modbus address) is as good as a string one.
  if (const JsonNumber* number = value->number()) return number->text;
  return Error{std::string(field) + " at " + shown(source.path.text) + ": expected a string, got " +
               describe(*value)};
}

// The topic level a level-mapped metric is chosen by, when the map does not
// list it; none otherwise (also when the level is missing: text_field says so).
std::optional<std::string> unmapped_level(const TextSource& source, const Message& message) {
  if (source.kind != TextSource::Kind::topic_level || source.level_map.empty()) return {};
  auto level = from_topic(source, message, "metric_type", false);
  if (!level || source.level_map.contains(*level)) return {};
  return *level;
}

bool uses_member(const TextSource& source) {
  if (source.kind == TextSource::Kind::key || source.kind == TextSource::Kind::key_match) {
    return true;
  }
  for (const TextSource& part : source.parts) {
    if (uses_member(part)) return true;
  }
  return false;
}

// One value as the mapping found it: a number's text, a string that may hold
// a decimal (normalize checks it), or nothing (absent, null, "nan", ...).
Result<std::optional<std::string>> scalar_value(const JsonValue& value, const std::string& where) {
  if (value.is_null()) return std::optional<std::string>();
  if (const JsonNumber* number = value.number()) return std::optional<std::string>(number->text);
  if (const std::string* text = value.string()) {
    // "" is what Zigbee2MQTT's /get requests carry for the attribute asked for.
    if (trim(*text).empty() || is_non_reading_word(*text)) return std::optional<std::string>();
    return std::optional<std::string>(*text);
  }
  return Error{where + ": expected a number, got " + describe(value)};
}

struct ValueAt {
  std::string text;
  std::optional<std::size_t> channel;  // the array index, for arrays: channels
  bool rounded = false;
};

// sum / difference: every term must be there (else no reading), exactly.
Result<std::vector<ValueAt>> combined_value(const ReadingMapping& reading, const JsonValue& root) {
  std::vector<ValueAt> values;
  std::optional<Decimal> total;
  for (std::size_t i = 0; i < reading.terms.size(); ++i) {
    const JsonPointer& term = reading.terms[i];
    const JsonValue* found = term.resolve(root);
    if (found == nullptr) return values;
    const std::string where = "value at " + shown(term.text);
    auto text = scalar_value(*found, where);
    if (!text) return text.error();
    if (!*text) return values;
    Result<Decimal> number = Decimal::parse(**text);
    if (!number) return Error{where + ": " + number.error().message};
    if (!total) {
      total = std::move(*number);
      continue;
    }
    Result<Decimal> next = reading.combination == ValueCombination::sum ? add(*total, *number)
                                                                        : subtract(*total, *number);
    if (!next) return Error{where + ": " + next.error().message};
    total = std::move(*next);
  }
  values.push_back(ValueAt{total->text(), std::nullopt, false});
  return values;
}

Result<std::vector<ValueAt>> values_of(const ReadingMapping& reading, const JsonValue& root) {
  if (reading.combination != ValueCombination::single) return combined_value(reading, root);
  std::vector<ValueAt> values;
  const JsonValue* found = reading.value->resolve(root);
  if (found == nullptr) return values;
  const std::string where = "value at " + shown(reading.value->text);
  if (const JsonArray* elements = found->array()) {
    if (reading.arrays != ArrayValues::channels) {
      return Error{where +
                   ": expected a number, got an array (set arrays: channels for one "
                   "reading per element)"};
    }
    for (std::size_t i = 0; i < elements->size(); ++i) {
      auto element = scalar_value((*elements)[i], where + "[" + std::to_string(i) + "]");
      if (!element) return element.error();
      if (*element) values.push_back(ValueAt{std::move(**element), i, false});
    }
    return values;
  }
  auto single = scalar_value(*found, where);
  if (!single) return single.error();
  if (*single) values.push_back(ValueAt{std::move(**single), std::nullopt, false});
  return values;
}

Result<std::optional<std::string>> timestamp_at(const JsonPointer& path, const JsonValue& root) {
  const JsonValue* stamp = path.resolve(root);
  const std::string where = "timestamp at " + shown(path.text);
  if (stamp == nullptr || stamp->is_null()) return Error{where + " is missing"};
  if (const std::string* text = stamp->string()) return std::optional<std::string>(*text);
  if (const JsonNumber* number = stamp->number()) return std::optional<std::string>(number->text);
  return Error{where + ": expected a string or a number, got " + describe(*stamp)};
}

// One reading's worth of the message: its values (none when absent), and
// the metric and unit they carry.
struct Found {
  std::vector<ValueAt> values;
  std::string metric_type;
  std::string unit;
  Member member;
  const ReadingMapping* reading = nullptr;
};

// The members an `each` reading takes, in document order; none when the
// object is absent (or not an object).
std::vector<Member> members_of(const EachMember& each, const JsonValue& document) {
  std::vector<Member> members;
  const JsonValue* object = each.object.resolve(document);
  if (object == nullptr || object->object() == nullptr) return members;
  for (const JsonMember& member : *object->object()) {
    std::string_view star;
    if (pattern_matches(each.keys, member.first, &star)) {
      members.push_back(Member{member.first, star, &member.second});
    }
  }
  return members;
}

Result<Decoded> decode_mapped(const MappingConfig& mapping, std::string_view topic,
                              std::string_view payload) {
  const std::string_view trimmed = trim(payload);
  // MQTT clears a retained message with an empty one.
  if (trimmed.empty()) return Decoded{.readings = {}, .ignored_reason = "empty payload"};
  if (const std::size_t bad = first_invalid_utf8(payload); bad != std::string_view::npos) {
    return Error{"payload is not valid UTF-8 (byte " + std::to_string(bad) + ")"};
  }
  // Before JSON: "ONLINE" and "nan" are not JSON, "true" and "null" are.
  if (is_non_reading_word(trimmed)) {
    return Decoded{.readings = {}, .ignored_reason = "non-reading payload " + shown(trimmed)};
  }

  Message message{topic, topic_levels(topic), nullptr};
  std::optional<JsonValue> document;
  if (mapping.format == PayloadFormat::json) {
    auto parsed = parse_json(payload);
    if (!parsed) return Error{"payload is not JSON: " + parsed.error().message};
    document = std::move(*parsed);
    message.document = &*document;
    if (const std::string* word = document->string(); word != nullptr) {
      // A text state ("Charging", "\"online\""): not a reading, not an error.
      return Decoded{.readings = {}, .ignored_reason = "text payload " + shown(*word)};
    }
  }

  std::vector<Found> found;
  std::string absent;  // the value paths that were absent, null or non-readings
  // `each` readings without a matching member, metrics not in a level map.
  std::vector<std::string> unmatched;
  auto note_unmatched = [&unmatched](std::string what) {
    if (std::find(unmatched.begin(), unmatched.end(), what) == unmatched.end()) {
      unmatched.push_back(std::move(what));
    }
  };
  for (const ReadingMapping& reading : mapping.readings) {
    std::vector<Member> members;
    if (reading.each) {
      members = members_of(*reading.each, *document);
      if (members.empty()) {
        note_unmatched("no member of " + shown(reading.each->object.text) + " matches " +
                       shown(reading.each->keys));
        continue;
      }
    } else {
      members.push_back(Member{{}, {}, document ? &*document : nullptr});
    }
    // A metric chosen by topic level from a map: a level not in the map is
    // a topic the mapping does not read (OpenDTU's voltage beside its
    // yieldtotal), so no reading rather than an error.
    if (const auto level = unmapped_level(reading.metric_type, message)) {
      note_unmatched("topic level " + shown(*level) + " is not in the metric map");
      continue;
    }
    for (const Member& member : members) {
      Found item;
      item.member = member;
      item.reading = &reading;
      if (reading.value) {
        auto values = values_of(reading, *member.value);
        if (!values) return values.error();
        item.values = std::move(*values);
        if (item.values.empty()) {
          if (reading.required) {
            return Error{"value at " + shown(reading.value->text) + " missing"};
          }
          absent += (absent.empty() ? "" : ", ") + shown(reading.value->text);
          continue;
        }
      } else {
        item.values.push_back(ValueAt{std::string(trimmed), std::nullopt, false});
      }
      if (reading.scale) {
        for (ValueAt& value : item.values) {
          auto scaled = apply_scale(value.text, *reading.scale);
          if (!scaled) {
            // The reason may quote the whole value again: logs and status get it short.
            std::string why = scaled.error().message;
            if (why.size() > 100) why = why.substr(0, 97) + "...";
            return Error{"value " + shown(value.text) + ": " + why};
          }
          value.text = std::move(scaled->text);
          value.rounded = scaled->rounded;
        }
      }
      auto metric_type = text_field(reading.metric_type, message, "metric_type", {}, member);
      if (!metric_type) return metric_type.error();
      item.metric_type = std::move(*metric_type);
      auto unit = text_field(reading.unit, message, "unit", item.metric_type, member);
      if (!unit) return unit.error();
      item.unit = std::move(*unit);
      found.push_back(std::move(item));
    }
  }

  if (found.empty()) {
    if (document && document->number() != nullptr) {
      return Error{
          "payload is a number, but the mapping reads members of a JSON document (use "
          "format: plain for payloads that are one number)"};
    }
    if (absent.empty() && !unmatched.empty()) {
      std::string reasons;
      for (const std::string& what : unmatched) reasons += (reasons.empty() ? "" : "; ") + what;
      return Decoded{.readings = {}, .ignored_reason = "no reading in payload (" + reasons + ")"};
    }
    return Decoded{.readings = {},
                   .ignored_reason = "no reading in payload (absent or null: " + absent + ")"};
  }

  const bool device_per_member = uses_member(mapping.device_id);
  const bool mapping_device_used = std::any_of(
      found.begin(), found.end(), [](const Found& item) { return !item.reading->device_id; });
  std::string device_id;
  if (!device_per_member && mapping_device_used) {
    auto id = text_field(mapping.device_id, message, "device_id", {}, Member{});
    if (!id) return id.error();
    device_id = std::move(*id);
  }
  std::optional<std::string> timestamp;
  if (mapping.format == PayloadFormat::json && mapping.timestamp.path) {
    auto stamp = timestamp_at(*mapping.timestamp.path, *document);
    if (!stamp) return stamp.error();
    timestamp = std::move(*stamp);
  }

  Decoded decoded;
  for (Found& item : found) {
    std::optional<std::string> item_timestamp = timestamp;
    if (item.reading->timestamp_path) {
      auto stamp = timestamp_at(*item.reading->timestamp_path, *document);
      if (!stamp) return stamp.error();
      item_timestamp = std::move(*stamp);
    }
    std::string item_device_id = device_id;
    if (item.reading->device_id || device_per_member) {
      const TextSource& source =
          item.reading->device_id ? *item.reading->device_id : mapping.device_id;
      auto id = text_field(source, message, "device_id", {}, item.member);
      if (!id) return id.error();
      if (id->empty()) return Error{"device_id is empty"};
      item_device_id = std::move(*id);
    }
    for (ValueAt& value : item.values) {
      DecodedReading reading;
      reading.device_id = item_device_id;
      if (value.channel) reading.device_id += "/ch" + std::to_string(*value.channel + 1);
      reading.timestamp = item_timestamp;
      reading.metric_type = item.metric_type;
      reading.value = std::move(value.text);
      reading.unit = item.unit;
      reading.rounded = value.rounded;
      decoded.readings.push_back(std::move(reading));
    }
  }
  return decoded;
}

}  // namespace

Result<Decoded> decode_message(const MappingConfig& mapping, std::string_view topic,
                               std::string_view payload) {
  if (mapping.ignore) return Decoded{.readings = {}, .ignored_reason = *mapping.ignore};
  if (mapping.format == PayloadFormat::seed_json) return decode_seed_json(payload);
  try {
    return decode_mapped(mapping, topic, payload);
  } catch (const std::bad_alloc&) {
    return Error{"payload too large to decode: out of memory"};
  } catch (const std::exception& e) {
    return Error{std::string("payload could not be decoded: ") + e.what()};
  }
}

}  // namespace meter
