// JSON Pointer (RFC 6901): how a mapping names a value inside a JSON payload.
// Chosen over a dotted syntax because real meters' keys contain the
// characters a dotted syntax would need for itself: Shelly's component keys
// ("em:0", "emdata:0"), keys with '.', and array indexes ("/Power/1").
// "/ENERGY/Total" is member Total of member ENERGY; "~1" stands for '/', "~0"
// for '~'; "" is the whole document.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/decode/json.hpp"
#include "common/util/result.hpp"

namespace meter {

struct JsonPointer {
  std::string text;                 // as written in the config, e.g. "/ENERGY/Total"
  std::vector<std::string> tokens;  // unescaped reference tokens

  // Parses RFC 6901 syntax; errors say what is wrong ("must start with '/'").
  static Result<JsonPointer> parse(std::string_view text);

  // The value the pointer names in `document`, or nullptr when it names
  // nothing (a missing member, an index past the end, a token that is not an
  // index into an array, or a step into a number, string, ...).
  const JsonValue* resolve(const JsonValue& document) const;

  bool operator==(const JsonPointer& other) const { return text == other.text; }
};

}  // namespace meter
