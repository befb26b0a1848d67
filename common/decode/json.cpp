#include "common/decode/json.hpp"

#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "common/util/utf8.hpp"

namespace meter {

const JsonValue* JsonValue::find(std::string_view key) const {
  const JsonObject* members = object();
  if (members == nullptr) return nullptr;
  // Backwards so that a repeated key resolves to its last occurrence, as in
  // most JSON libraries (and JavaScript): senders that repeat a key mean the
  // later one.
  for (auto it = members->rbegin(); it != members->rend(); ++it) {
    if (it->first == key) return &it->second;
  }
  return nullptr;
}

namespace {

constexpr std::size_t kMaxDepth = 64;

struct SyntaxError {
  std::size_t offset;  // of the offending byte, from 0
  std::string detail;
};

// A strict RFC 8259 parser that keeps every number's text. Written for the
// normalizer's hot path (nlohmann's SAX parser cost ~16,000 instructions per
// meter message, a third of normalization; this one a small fraction); its
// fuzz target checks it against nlohmann's accept() on every input.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<JsonValue> parse() {
    // A leading UTF-8 byte order mark is tolerated (some firmwares send one).
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
    JsonValue root;
    skip_whitespace();
    if (!value(root, 0)) return make_error();
    skip_whitespace();
    if (pos_ < text_.size()) {
      fail_unexpected("end of input");
      return make_error();
    }
    return root;
  }

 private:
  Error make_error() const {
    if (too_deep_) {
      return Error{"nesting too deep at byte " + std::to_string(error_->offset) + ": more than " +
                   std::to_string(kMaxDepth) + " nested arrays/objects"};
    }
    return Error{"syntax error at byte " + std::to_string(error_->offset) + ": " + error_->detail};
  }

  bool fail(std::string detail) { return fail_at(pos_, std::move(detail)); }
  bool fail_at(std::size_t offset, std::string detail) {
    if (!error_) error_ = SyntaxError{offset, std::move(detail)};
    return false;
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }

  void skip_whitespace() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
      ++pos_;
    }
  }

  bool fail_unexpected(std::string_view expected) {
    if (at_end()) return fail("unexpected end of input; expected " + std::string(expected));
    if (peek() == '\0') return fail("unexpected NUL byte");
    const auto c = static_cast<unsigned char>(peek());
    std::string shown = c >= 0x21 && c < 0x7F ? "'" + std::string(1, peek()) + "'" : "byte 0x";
    if (shown.back() == 'x') {
      static constexpr char kHex[] = "0123456789ABCDEF";
      shown += kHex[c >> 4];
      shown += kHex[c & 0x0F];
    }
    return fail("unexpected " + shown + "; expected " + std::string(expected));
  }

  bool value(JsonValue& out, std::size_t depth) {
    if (at_end()) {
      return fail(
          "unexpected end of input; expected a value ('{', '[', a string, a number, "
          "true, false or null)");
    }
    switch (peek()) {
      case '{':
        return object(out, depth + 1);
      case '[':
        return array(out, depth + 1);
      case '"': {
        std::string text;
        if (!string(text)) return false;
        out.data = std::move(text);
        return true;
      }
      case 't':
        return literal("true", out, JsonValue{true});
      case 'f':
        return literal("false", out, JsonValue{false});
      case 'n':
        return literal("null", out, JsonValue{nullptr});
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return number(out);
        return fail_unexpected("a value ('{', '[', a string, a number, true, false or null)");
    }
  }

  bool literal(std::string_view word, JsonValue& out, JsonValue value) {
    for (std::size_t i = 0; i < word.size(); ++i) {
      if (pos_ + i >= text_.size() || text_[pos_ + i] != word[i]) {
        return fail_at(pos_ + i, "invalid literal; expected " + std::string(word));
      }
    }
    pos_ += word.size();
    out = std::move(value);
    return true;
  }

  bool digits() {
    const std::size_t start = pos_;
    while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
    return pos_ > start;
  }

  bool number(JsonValue& out) {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (at_end()) return fail("invalid number: a digit must follow '-'");
    if (peek() == '0') {
      ++pos_;
      if (!at_end() && peek() >= '0' && peek() <= '9') {
        return fail("invalid number: leading zeros are not allowed");
      }
    } else if (!digits()) {
      return fail("invalid number: expected a digit");
    }
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (!digits()) return fail("invalid number: a digit must follow '.'");
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (!digits()) return fail("invalid number: the exponent needs a digit");
    }
    out.data = JsonNumber{std::string(text_.substr(start, pos_ - start))};
    return true;
  }

  bool hex4(std::uint32_t& out) {
    if (text_.size() - pos_ < 4)
      return fail("invalid string: '\\u' must be followed by 4 hex digits");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + static_cast<std::size_t>(i)];
      std::uint32_t digit = 0;
      if (c >= '0' && c <= '9') {
        digit = static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        return fail("invalid string: '\\u' must be followed by 4 hex digits");
      }
      out = out * 16 + digit;
    }
    pos_ += 4;
    return true;
  }

  static void append_utf8(std::string& out, std::uint32_t code) {
    if (code < 0x80) {
      out.push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (code >> 6)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else if (code < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (code >> 12)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (code >> 18)));
      out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    }
  }

  bool string(std::string& out) {
    ++pos_;  // the opening quote
    for (;;) {
      // Copy the run of plain characters in one go.
      const std::size_t run = pos_;
      while (!at_end()) {
        const auto c = static_cast<unsigned char>(peek());
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++pos_;
      }
      out.append(text_.substr(run, pos_ - run));
      if (at_end()) return fail("invalid string: missing closing quote");
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c >= 0x80) {
        const std::size_t length = utf8_sequence_length(text_, pos_);
        if (length == 0) return fail_at(bad_utf8_offset(), "invalid string: ill-formed UTF-8 byte");
        out.append(text_.substr(pos_, length));
        pos_ += length;
        continue;
      }
      if (c < 0x20) {
        if (c == 0) return fail("unexpected NUL byte");
        static constexpr char kHex[] = "0123456789ABCDEF";
        return fail(std::string("invalid string: control character U+00") + kHex[c >> 4] +
                    kHex[c & 0x0F] + " must be escaped");
      }
      // A backslash escape.
      ++pos_;
      if (at_end()) return fail("invalid string: missing closing quote");
      const char escape = peek();
      ++pos_;
      switch (escape) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          std::uint32_t code = 0;
          if (!hex4(code)) return false;
          if (code >= 0xDC00 && code <= 0xDFFF) {
            return fail_at(pos_ - 1,
                           "invalid string: surrogate without a high surrogate before it");
          }
          if (code >= 0xD800 && code <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") {
              return fail("invalid string: surrogate without a low surrogate after it");
            }
            pos_ += 2;
            std::uint32_t low = 0;
            if (!hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) {
              return fail_at(pos_ - 1,
                             "invalid string: surrogate without a low surrogate after it");
            }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, code);
          break;
        }
        default:
          pos_ -= 1;
          return fail("invalid string: forbidden character after backslash");
      }
    }
  }

  // The first byte of the ill-formed sequence at pos_ that makes it so.
  std::size_t bad_utf8_offset() const {
    const auto byte = [&](std::size_t at) { return static_cast<unsigned char>(text_[at]); };
    const unsigned char lead = byte(pos_);
    if (lead < 0xC2 || lead > 0xF4) return pos_;
    const std::size_t length = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    const unsigned char lo = lead == 0xE0 ? 0xA0 : lead == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = lead == 0xED ? 0x9F : lead == 0xF4 ? 0x8F : 0xBF;
    for (std::size_t k = 1; k < length; ++k) {
      if (pos_ + k >= text_.size()) return pos_ + k;
      const unsigned char next = byte(pos_ + k);
      if (k == 1 ? (next < lo || next > hi) : (next < 0x80 || next > 0xBF)) return pos_ + k;
    }
    return pos_;
  }

  bool enter(std::size_t depth) {
    if (depth > kMaxDepth) {
      too_deep_ = true;
      return fail("nesting too deep");
    }
    ++pos_;  // the opening bracket
    skip_whitespace();
    return true;
  }

  bool array(JsonValue& out, std::size_t depth) {
    if (!enter(depth)) return false;
    JsonArray items;
    if (!at_end() && peek() == ']') {
      ++pos_;
      out.data = std::move(items);
      return true;
    }
    for (;;) {
      items.emplace_back();
      if (!value(items.back(), depth)) return false;
      skip_whitespace();
      if (!at_end() && peek() == ',') {
        ++pos_;
        skip_whitespace();
        continue;
      }
      if (!at_end() && peek() == ']') {
        ++pos_;
        out.data = std::move(items);
        return true;
      }
      return fail_unexpected("',' or ']'");
    }
  }

  bool object(JsonValue& out, std::size_t depth) {
    if (!enter(depth)) return false;
    JsonObject members;
    if (!at_end() && peek() == '}') {
      ++pos_;
      out.data = std::move(members);
      return true;
    }
    for (;;) {
      if (at_end() || peek() != '"') return fail_unexpected("a string (the member's name)");
      JsonMember member;
      if (!string(member.first)) return false;
      skip_whitespace();
      if (at_end() || peek() != ':') return fail_unexpected("':'");
      ++pos_;
      skip_whitespace();
      if (!value(member.second, depth)) return false;
      members.push_back(std::move(member));
      skip_whitespace();
      if (!at_end() && peek() == ',') {
        ++pos_;
        skip_whitespace();
        continue;
      }
      if (!at_end() && peek() == '}') {
        ++pos_;
        out.data = std::move(members);
        return true;
      }
      return fail_unexpected("',' or '}'");
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  bool too_deep_ = false;
  std::optional<SyntaxError> error_;
};

}  // namespace

Result<JsonValue> parse_json(std::string_view text) {
  try {
    return Parser(text).parse();
  } catch (const std::bad_alloc&) {
    return Error{"JSON document too large: out of memory"};
  }
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (const std::size_t length = utf8_sequence_length(s, i); length > 0) {
        out.append(s.substr(i, length));
        i += length;
      } else {
        out.append("\xEF\xBF\xBD");  // U+FFFD, one per invalid byte (see json.hpp)
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (c < 0x20) {
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0x0F]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
}

}  // namespace meter
