// libFuzzer target for the payload path: parse_json, append_json_string and
// decode_seed_json. Besides "does not crash, does not throw, does not leak"
// it checks properties that must hold for every input (see check_* below).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/decode/decode.hpp"
#include "common/decode/json.hpp"

namespace {

using meter::JsonValue;

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

// An oracle for UTF-8 validity written differently from the two in the code
// under test (decode the code point, then judge it), so that a shared
// mistake is unlikely.
bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if (b < 0x80) {
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      extra = 1;
      cp = b & 0x1Fu;
      min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      extra = 2;
      cp = b & 0x0Fu;
      min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      extra = 3;
      cp = b & 0x07u;
      min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

// Messages go to logs and exports: short, printable ASCII, no payload bytes.
void check_message(const std::string& message) {
  require(!message.empty(), "message is empty");
  require(message.size() <= 300, "message is too long");
  for (char c : message) require(c >= 0x20 && c < 0x7F, "message is not printable ASCII");
}

void serialize(const JsonValue& value, std::string& out) {
  if (value.is_null()) {
    out += "null";
  } else if (const bool* b = value.boolean()) {
    out += *b ? "true" : "false";
  } else if (const auto* n = value.number()) {
    out += n->text;
  } else if (const std::string* s = value.string()) {
    meter::append_json_string(out, *s);
  } else if (const auto* array = value.array()) {
    out += '[';
    for (std::size_t i = 0; i < array->size(); ++i) {
      if (i > 0) out += ',';
      serialize((*array)[i], out);
    }
    out += ']';
  } else {
    out += '{';
    bool first = true;
    for (const auto& [key, member] : *value.object()) {
      if (!first) out += ',';
      first = false;
      meter::append_json_string(out, key);
      out += ':';
      serialize(member, out);
    }
    out += '}';
  }
}

bool same(const JsonValue& a, const JsonValue& b) {
  if (a.data.index() != b.data.index()) return false;
  if (a.is_null()) return true;
  if (a.boolean() != nullptr) return *a.boolean() == *b.boolean();
  if (a.number() != nullptr) return a.number()->text == b.number()->text;
  if (a.string() != nullptr) return *a.string() == *b.string();
  if (a.array() != nullptr) {
    const auto &x = *a.array(), &y = *b.array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!same(x[i], y[i])) return false;
    }
    return true;
  }
  const auto &x = *a.object(), &y = *b.object();
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i].first != y[i].first || !same(x[i].second, y[i].second)) return false;
  }
  return true;
}

void check_strings_utf8(const JsonValue& value) {
  if (const std::string* s = value.string()) {
    require(is_valid_utf8(*s), "parsed string is not valid UTF-8");
  } else if (const auto* array = value.array()) {
    for (const JsonValue& element : *array) check_strings_utf8(element);
  } else if (const auto* object = value.object()) {
    for (const auto& [key, member] : *object) {
      require(is_valid_utf8(key), "parsed key is not valid UTF-8");
      check_strings_utf8(member);
    }
  } else if (const auto* n = value.number()) {
    require(!n->text.empty(), "number without text");
  }
}

void check_parse(std::string_view input) {
  auto parsed = meter::parse_json(input);
  if (!parsed) {
    check_message(parsed.error().message);
    return;
  }
  require(input.find('\0') == std::string_view::npos, "accepted a raw NUL byte");
  check_strings_utf8(*parsed);
  // Writing the tree back with our escaping gives a document that parses to
  // the same tree (same member order, same number texts), and writing that
  // again gives the same bytes.
  std::string written;
  serialize(*parsed, written);
  auto reparsed = meter::parse_json(written);
  require(reparsed.ok(), "re-serialized document does not parse");
  require(same(*parsed, *reparsed), "re-serialized document parses differently");
  std::string rewritten;
  serialize(*reparsed, rewritten);
  require(written == rewritten, "serialization is not stable");
}

void check_string_escaping(std::string_view input) {
  std::string quoted;
  meter::append_json_string(quoted, input);
  require(is_valid_utf8(quoted), "append_json_string wrote invalid UTF-8");
  for (char c : quoted) require(static_cast<unsigned char>(c) >= 0x20, "unescaped control byte");
  auto back = meter::parse_json(quoted);
  require(back.ok(), "append_json_string wrote invalid JSON");
  require(back->string() != nullptr, "append_json_string did not write a string");
  if (is_valid_utf8(input)) {
    require(*back->string() == input, "valid UTF-8 string did not round-trip");
  } else {
    require(back->string()->find("\xEF\xBF\xBD") != std::string::npos,
            "invalid UTF-8 was not replaced with U+FFFD");
  }
}

void check_decode(std::string_view input) {
  auto decoded = meter::decode_seed_json(input);
  if (!decoded) {
    check_message(decoded.error().message);
    return;
  }
  require(is_valid_utf8(input), "decoded a payload that is not valid UTF-8");
  if (decoded->ignored_reason) {
    check_message(*decoded->ignored_reason);
    require(decoded->readings.empty(), "ignored payload with readings");
    return;
  }
  require(!decoded->readings.empty(), "neither readings nor an ignored reason");
  require(meter::parse_json(input).ok(), "readings from a payload that is not JSON");
  for (const meter::DecodedReading& reading : decoded->readings) {
    require(!reading.device_id.empty(), "reading with empty device_id");
    require(is_valid_utf8(reading.device_id) && is_valid_utf8(reading.metric_type) &&
                is_valid_utf8(reading.value) && is_valid_utf8(reading.unit) &&
                (!reading.timestamp || is_valid_utf8(*reading.timestamp)),
            "reading field is not valid UTF-8");
  }
}

}  // namespace

// Our parser against nlohmann's (the one it replaced on the hot path): both
// accept and reject the same documents, except where ours is stricter by
// design (nesting over 64, a NUL byte, which nlohmann takes for the end) or
// more lenient (a leading BOM; numbers beyond a double's range, which nlohmann
// refuses and ours keeps as text).
void check_against_nlohmann(std::string_view input) {
  if (input.find('\0') != std::string_view::npos) return;
  if (input.substr(0, 3) == "\xEF\xBB\xBF") return;
  std::size_t brackets = 0;
  for (char c : input) brackets += (c == '[' || c == '{') ? 1 : 0;
  if (brackets > 64) return;
  const bool ours = meter::parse_json(input).ok();
  const bool theirs = nlohmann::json::accept(input.begin(), input.end());
  if (ours == theirs) return;
  if (ours && input.find_first_of("eE") != std::string_view::npos) return;  // 1e400
  std::fprintf(stderr, "parse_json %s what nlohmann %s\n", ours ? "accepts" : "rejects",
               theirs ? "accepts" : "rejects");
  std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_parse(input);
  check_against_nlohmann(input);
  check_string_escaping(input);
  check_decode(input);
  return 0;
}
