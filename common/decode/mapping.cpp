#include "common/decode/mapping.hpp"

#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/decode/json.hpp"
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

Result<std::string> from_topic(const TextSource& source, const Message& message,
                               std::string_view field) {
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
  return text;
}

// device_id, metric_type or unit; `metric_type` is known when the unit is
// looked up per metric.
Result<std::string> text_field(const TextSource& source, const Message& message,
                               std::string_view field, std::string_view metric_type = {}) {
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
};

Result<std::vector<ValueAt>> values_of(const ReadingMapping& reading, const JsonValue& document) {
  std::vector<ValueAt> values;
  const JsonValue* found = reading.value->resolve(document);
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
      if (*element) values.push_back(ValueAt{std::move(**element), i});
    }
    return values;
  }
  auto single = scalar_value(*found, where);
  if (!single) return single.error();
  if (*single) values.push_back(ValueAt{std::move(**single), std::nullopt});
  return values;
}

// One reading's worth of the message: its values (none when absent), and
// the metric and unit they carry.
struct Found {
  std::vector<ValueAt> values;
  std::string metric_type;
  std::string unit;
};

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
  for (const ReadingMapping& reading : mapping.readings) {
    Found item;
    if (reading.value) {
      auto values = values_of(reading, *document);
      if (!values) return values.error();
      item.values = std::move(*values);
      if (item.values.empty()) {
        if (reading.required) return Error{"value at " + shown(reading.value->text) + " missing"};
        absent += (absent.empty() ? "" : ", ") + shown(reading.value->text);
        continue;
      }
    } else {
      item.values.push_back(ValueAt{std::string(trimmed), std::nullopt});
    }
    auto metric_type = text_field(reading.metric_type, message, "metric_type");
    if (!metric_type) return metric_type.error();
    item.metric_type = std::move(*metric_type);
    auto unit = text_field(reading.unit, message, "unit", item.metric_type);
    if (!unit) return unit.error();
    item.unit = std::move(*unit);
    found.push_back(std::move(item));
  }

  if (found.empty()) {
    if (document && document->number() != nullptr) {
      return Error{
          "payload is a number, but the mapping reads members of a JSON document (use "
          "format: plain for payloads that are one number)"};
    }
    return Decoded{.readings = {},
                   .ignored_reason = "no reading in payload (absent or null: " + absent + ")"};
  }

  auto device_id = text_field(mapping.device_id, message, "device_id");
  if (!device_id) return device_id.error();
  std::optional<std::string> timestamp;
  if (mapping.format == PayloadFormat::json && mapping.timestamp.path) {
    const JsonValue* stamp = mapping.timestamp.path->resolve(*document);
    const std::string where = "timestamp at " + shown(mapping.timestamp.path->text);
    if (stamp == nullptr || stamp->is_null()) return Error{where + " is missing"};
    if (const std::string* text = stamp->string()) {
      timestamp = *text;
    } else if (const JsonNumber* number = stamp->number()) {
      timestamp = number->text;
    } else {
      return Error{where + ": expected a string or a number, got " + describe(*stamp)};
    }
  }

  Decoded decoded;
  for (Found& item : found) {
    for (ValueAt& value : item.values) {
      DecodedReading reading;
      reading.device_id = *device_id;
      if (value.channel) reading.device_id += "/ch" + std::to_string(*value.channel + 1);
      reading.timestamp = timestamp;
      reading.metric_type = item.metric_type;
      reading.value = std::move(value.text);
      reading.unit = item.unit;
      decoded.readings.push_back(std::move(reading));
    }
  }
  return decoded;
}

}  // namespace

Result<Decoded> decode_message(const MappingConfig& mapping, std::string_view topic,
                               std::string_view payload) {
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
