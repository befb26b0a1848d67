// A small JSON document model that keeps every number as the exact text it
// was sent as, and its parser (common/decode/json.cpp: strict RFC 8259, no double
// anywhere).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/util/result.hpp"

namespace meter {

struct JsonValue;
struct JsonMember;  // a key and its value, like std::pair (see below why not one)
using JsonArray = std::vector<JsonValue>;
using JsonObject = std::vector<JsonMember>;  // in document order

struct JsonNumber {
  std::string text;  // exactly as in the document, e.g. "1.50", "-0", "2e3"
};

struct JsonValue {
  std::variant<std::nullptr_t, bool, JsonNumber, std::string, JsonArray, JsonObject> data;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(data); }
  const JsonNumber* number() const { return std::get_if<JsonNumber>(&data); }
  const std::string* string() const { return std::get_if<std::string>(&data); }
  const JsonArray* array() const { return std::get_if<JsonArray>(&data); }
  const JsonObject* object() const { return std::get_if<JsonObject>(&data); }
  const bool* boolean() const { return std::get_if<bool>(&data); }

  // Member of an object by key (the last one when a key repeats), or nullptr.
  const JsonValue* find(std::string_view key) const;
};

// Not std::pair<std::string, JsonValue>: instantiating that pair asks whether
// JsonValue is default-constructible, which needs the variant, which needs
// the pair again; clang rejects the cycle (GCC happens to accept it).
struct JsonMember {
  std::string first;  // the key
  JsonValue second;
};

// Parses one JSON document (RFC 8259). Limits: nesting depth 64, total size is
// the caller's. Errors say where ("syntax error at byte 17: ..."): the 0-based
// offset of the byte that failed, or the input's size for an unexpected end.
// Strings are UTF-8 (invalid UTF-8 in the input is a syntax error); a leading
// UTF-8 BOM is skipped. Numbers whose magnitude exceeds a double ("1e400") are
// rejected; all others keep their text, including "-0" and big integers.
Result<JsonValue> parse_json(std::string_view text);

// Appends `s` as a JSON string literal (with quotes), escaping as RFC 8259 asks:
// \" \\ \b \f \n \r \t, other bytes below 0x20 as \u00XX; valid UTF-8 is
// copied as is. The output is always valid JSON: each byte of `s` that is not
// part of well-formed UTF-8 becomes U+FFFD (lossy, but `s` is normally valid
// UTF-8 here, e.g. a string that parse_json produced).
void append_json_string(std::string& out, std::string_view s);

}  // namespace meter
