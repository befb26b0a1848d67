#include "common/decode/decode.hpp"

#include <array>
#include <cstddef>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include "common/decode/json.hpp"
#include "common/util/utf8.hpp"

namespace meter {

namespace {

// Plain words that devices publish on the topics their readings share:
// availability/LWT messages (Zigbee2MQTT, Tasmota: "online"/"offline"),
// switch states ("on"/"off", "true"/"false"), Home Assistant's placeholder
// states ("unavailable"/"unknown"), and what a sensor without a value prints
// ("nan", "null"). Compared case-insensitively, also as a JSON string
// ("\"online\""). Kept short on purpose: anything else that is not a reading
// is an error, so that a misconfigured meter gets noticed.
constexpr std::array<std::string_view, 10> kNonReadingWords = {
    "online", "offline", "on", "off", "true", "false", "null", "nan", "unavailable", "unknown",
};

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_json_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_json_space(s.back())) s.remove_suffix(1);
  return s;
}

// How a value is named in an error: literals as themselves, numbers with
// their text (cut short: it is payload content), the rest by kind.
std::string describe(const JsonValue& value) {
  constexpr std::size_t kMaxShown = 32;
  if (value.is_null()) return "null";
  if (const bool* b = value.boolean()) return *b ? "true" : "false";
  if (const JsonNumber* n = value.number()) {
    if (n->text.size() <= kMaxShown) return "number " + n->text;
    return "number " + n->text.substr(0, kMaxShown) + "...";
  }
  if (value.string() != nullptr) return "a string";
  if (value.array() != nullptr) return "an array";
  return "an object";
}

Error member_error(std::string_view name, std::string_view problem) {
  return Error{"member '" + std::string(name) + "': " + std::string(problem)};
}

Error wrong_type(std::string_view name, std::string_view expected, const JsonValue& found) {
  return member_error(name, "expected " + std::string(expected) + ", got " + describe(found));
}

Result<const JsonValue*> required(const JsonValue& object, std::string_view name) {
  const JsonValue* member = object.find(name);
  if (member == nullptr) return Error{"member '" + std::string(name) + "' missing"};
  return member;
}

Result<std::string> required_string(const JsonValue& object, std::string_view name) {
  auto member = required(object, name);
  if (!member) return member.error();
  const std::string* text = (*member)->string();
  if (text == nullptr) return wrong_type(name, "a string", **member);
  return *text;
}

bool has_reading_member(const JsonValue& object) {
  return object.find("device_id") != nullptr || object.find("metric_type") != nullptr ||
         object.find("value") != nullptr;
}

Result<DecodedReading> decode_reading(const JsonValue& object) {
  DecodedReading reading;

  auto device_id = required_string(object, "device_id");
  if (!device_id) return device_id.error();
  if (device_id->empty()) return member_error("device_id", "must not be empty");
  reading.device_id = std::move(*device_id);

  auto metric_type = required_string(object, "metric_type");
  if (!metric_type) return metric_type.error();
  reading.metric_type = std::move(*metric_type);

  // The decimal syntax of a string value is checked by normalization, with
  // the limits of Decimal; here it only has to be text.
  auto value = required(object, "value");
  if (!value) return value.error();
  if (const JsonNumber* number = (*value)->number()) {
    reading.value = number->text;
  } else if (const std::string* text = (*value)->string()) {
    reading.value = *text;
  } else {
    return wrong_type("value", "a number or a decimal string", **value);
  }

  auto unit = required_string(object, "unit");
  if (!unit) return unit.error();
  reading.unit = std::move(*unit);

  if (const JsonValue* timestamp = object.find("timestamp"); timestamp != nullptr) {
    if (const std::string* text = timestamp->string()) {
      reading.timestamp = *text;
    } else if (const JsonNumber* number = timestamp->number()) {
      reading.timestamp = number->text;
    } else if (!timestamp->is_null()) {
      return wrong_type("timestamp", "a string, a number or null", *timestamp);
    }
  }
  return reading;
}

Result<Decoded> decode(std::string_view payload) {
  // MQTT clears a retained message with an empty one; whitespace alone
  // carries nothing either.
  const std::string_view trimmed = trim(payload);
  if (trimmed.empty()) return Decoded{.readings = {}, .ignored_reason = "empty payload"};

  if (const std::size_t bad = first_invalid_utf8(payload); bad != std::string_view::npos) {
    return Error{"payload is not valid UTF-8 (byte " + std::to_string(bad) + ")"};
  }

  // Before JSON: "true"/"false"/"null" are JSON too, "ONLINE" and "nan" not.
  if (is_non_reading_word(trimmed)) {
    return Decoded{.readings = {},
                   .ignored_reason = "non-reading payload '" + std::string(trimmed) + "'"};
  }

  auto json = parse_json(payload);
  if (!json) return Error{"payload is not JSON: " + json.error().message};

  if (const std::string* word = json->string(); word != nullptr && is_non_reading_word(*word)) {
    return Decoded{.readings = {}, .ignored_reason = "non-reading payload '" + *word + "'"};
  }

  if (json->object() != nullptr) {
    if (!has_reading_member(*json)) {
      return Decoded{.readings = {},
                     .ignored_reason = "object without device_id, metric_type or value"};
    }
    auto reading = decode_reading(*json);
    if (!reading) return reading.error();
    Decoded decoded;
    decoded.readings.push_back(std::move(*reading));
    return decoded;
  }

  if (const JsonArray* elements = json->array()) {
    // Unlike a lone object, an element without reading members is an error:
    // an array is a batch of readings, so a stray element means a bad batch.
    if (elements->empty()) return Error{"payload is an empty array"};
    Decoded decoded;
    decoded.readings.reserve(elements->size());
    for (std::size_t i = 0; i < elements->size(); ++i) {
      const JsonValue& element = (*elements)[i];
      const std::string where = "element " + std::to_string(i) + ": ";
      if (element.object() == nullptr) {
        return Error{where + "expected an object, got " + describe(element)};
      }
      auto reading = decode_reading(element);
      if (!reading) return Error{where + reading.error().message};
      decoded.readings.push_back(std::move(*reading));
    }
    return decoded;
  }

  return Error{"payload is " + describe(*json) + ", expected an object or an array of objects"};
}

}  // namespace

bool is_non_reading_word(std::string_view word) {
  word = trim(word);
  for (std::string_view known : kNonReadingWords) {
    if (known.size() != word.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < word.size() && same; ++i) {
      char c = word[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      same = c == known[i];
    }
    if (same) return true;
  }
  return false;
}

Result<Decoded> decode_seed_json(std::string_view payload) {
  try {
    return decode(payload);
  } catch (const std::bad_alloc&) {
    return Error{"payload too large to decode: out of memory"};
  } catch (const std::exception& e) {
    return Error{std::string("payload could not be decoded: ") + e.what()};
  }
}

}  // namespace meter
