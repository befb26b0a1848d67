#include "common/json.hpp"

#include <cstdint>
#include <exception>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/utf8.hpp"

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

// Builds the tree from nlohmann's SAX events. nlohmann validates the whole
// grammar (including UTF-8 inside strings and surrogate pairs in \u escapes),
// so the handler only assembles values and enforces the depth limit.
class TreeBuilder final : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return add(JsonValue{nullptr}); }
  bool boolean(bool val) override { return add(JsonValue{val}); }

  // nlohmann reports a token as number_integer only when it starts with '-'
  // (unsigned otherwise) and only when it fits in 64 bits (bigger ones come
  // as number_float with their text). JSON forbids leading zeros and '+', so
  // the decimal formatting of the value is the token, except that "-0" comes
  // as 0: restore its sign from the token kind.
  bool number_integer(number_integer_t val) override {
    return add(JsonValue{JsonNumber{val == 0 ? std::string("-0") : std::to_string(val)}});
  }
  bool number_unsigned(number_unsigned_t val) override {
    return add(JsonValue{JsonNumber{std::to_string(val)}});
  }
  bool number_float(number_float_t /*val*/, const string_t& text) override {
    return add(JsonValue{JsonNumber{text}});
  }
  bool string(string_t& val) override { return add(JsonValue{std::move(val)}); }
  bool binary(binary_t& /*val*/) override { return false; }  // not produced by the JSON lexer

  bool start_object(std::size_t /*elements*/) override { return open(JsonValue{JsonObject{}}); }
  bool key(string_t& val) override {
    key_ = std::move(val);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t /*elements*/) override { return open(JsonValue{JsonArray{}}); }
  bool end_array() override { return close(); }

  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    error_ = describe_error(position, last_token, ex);
    return false;
  }

  bool too_deep() const { return too_deep_; }
  const std::optional<SyntaxError>& error() const { return error_; }
  JsonValue take_root() { return std::move(root_); }

 private:
  // Appends to the innermost open container. Pointers on `open_` stay valid:
  // only the innermost container grows, and its ancestors hold it in place.
  bool add(JsonValue value) { return place(std::move(value)) != nullptr; }

  JsonValue* place(JsonValue value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    JsonValue* top = open_.back();
    if (auto* array = std::get_if<JsonArray>(&top->data)) {
      return &array->emplace_back(std::move(value));
    }
    auto& members = std::get<JsonObject>(top->data);
    members.push_back({std::move(key_), std::move(value)});
    return &members.back().second;
  }

  bool open(JsonValue container) {
    if (open_.size() >= kMaxDepth) {
      too_deep_ = true;
      return false;
    }
    open_.push_back(place(std::move(container)));
    return true;
  }

  bool close() {
    open_.pop_back();
    return true;
  }

  static SyntaxError describe_error(std::size_t position, const std::string& last_token,
                                    const nlohmann::detail::exception& ex) {
    // nlohmann's position counts bytes read, including the one that failed
    // (or the end of input); we report the 0-based offset of that byte.
    std::size_t offset = position > 0 ? position - 1 : 0;
    std::string what = ex.what();
    if (dynamic_cast<const nlohmann::detail::out_of_range*>(&ex) != nullptr) {
      // Only "number overflow": a number whose magnitude exceeds a double.
      // The token is the whole number; point at its first byte.
      offset = position >= last_token.size() ? position - last_token.size() : 0;
      return {offset, "number too large (exceeds the range of a double)"};
    }
    // "[json.exception.parse_error.101] parse error at line 1, column 8:
    //  syntax error while parsing object key - unexpected '}'; expected ..."
    std::string detail;
    const std::string marker = "syntax error while parsing ";
    if (auto at = what.find(marker); at != std::string::npos) {
      auto dash = what.find(" - ", at + marker.size());
      detail = dash != std::string::npos ? what.substr(dash + 3) : what.substr(at);
    } else if (auto bracket = what.find("] "); bracket != std::string::npos) {
      detail = what.substr(bracket + 2);
    } else {
      detail = what;
    }
    // Drop the echo of the offending input ("; last read: '<token>'"): it
    // can be long, and it is payload bytes, not a description. The token
    // itself may contain "'; ", so cut exactly what nlohmann inserted.
    const std::string echo = "; last read: '" + last_token + "'";
    if (auto from = detail.find(echo); from != std::string::npos) {
      detail.erase(from, echo.size());
    } else if (auto cut = detail.find("; last read: '"); cut != std::string::npos) {
      detail.erase(cut);
    }
    // Messages end up in logs and JSON exports: keep them printable ASCII
    // whatever nlohmann puts in.
    for (char& c : detail) {
      if (c < 0x20 || c > 0x7E) c = '?';
    }
    return {offset, std::move(detail)};
  }

  JsonValue root_;
  std::vector<JsonValue*> open_;
  std::string key_;
  bool too_deep_ = false;
  std::optional<SyntaxError> error_;
};

// Offset of the opening bracket that exceeds kMaxDepth. Only called after
// nlohmann accepted everything before it, so a plain bracket count outside
// strings is exact.
std::size_t too_deep_offset(std::string_view text) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return text.size();
}

}  // namespace

Result<JsonValue> parse_json(std::string_view text) {
  try {
    // nlohmann takes a NUL byte for the end of input (for C strings) and
    // would accept "[1]\0junk". JSON has no place for a raw NUL, so the text
    // ends there for nlohmann and reaching that end is our error.
    const std::size_t nul = text.find('\0');
    const std::string_view lexed = text.substr(0, nul);
    const auto nul_error = [&] {
      return Error{"syntax error at byte " + std::to_string(nul) + ": unexpected NUL byte"};
    };
    TreeBuilder builder;
    const char* begin = lexed.data();
    const char* end = begin + lexed.size();
    if (nlohmann::json::sax_parse(begin, end, &builder)) {
      if (nul != std::string_view::npos) return nul_error();
      return builder.take_root();
    }
    if (builder.too_deep()) {
      return Error{"nesting too deep at byte " + std::to_string(too_deep_offset(lexed)) +
                   ": more than " + std::to_string(kMaxDepth) + " nested arrays/objects"};
    }
    if (const auto& error = builder.error()) {
      if (nul != std::string_view::npos && error->offset >= nul) return nul_error();
      return Error{"syntax error at byte " + std::to_string(error->offset) + ": " + error->detail};
    }
    return Error{"JSON parse failed"};  // not reached: every false return sets a reason
  } catch (const std::bad_alloc&) {
    return Error{"JSON document too large: out of memory"};
  } catch (const std::exception& e) {
    return Error{std::string("JSON parse failed: ") + e.what()};
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
