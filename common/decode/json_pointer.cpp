#include "common/decode/json_pointer.hpp"

#include <charconv>
#include <cstddef>
#include <system_error>

namespace meter {

Result<JsonPointer> JsonPointer::parse(std::string_view text) {
  JsonPointer pointer;
  pointer.text = std::string(text);
  if (text.empty()) return pointer;  // the whole document
  if (text.front() != '/') {
    return Error{"a JSON pointer must start with '/' (RFC 6901), e.g. /ENERGY/Total"};
  }
  std::string token;
  for (std::size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '/') {
      pointer.tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (text[i] != '~') {
      token += text[i];
      continue;
    }
    // RFC 6901 section 3: '~' only as "~0" or "~1".
    if (i + 1 < text.size() && (text[i + 1] == '0' || text[i + 1] == '1')) {
      token += text[i + 1] == '0' ? '~' : '/';
      ++i;
      continue;
    }
    return Error{"'~' in a JSON pointer must be followed by 0 (for '~') or 1 (for '/')"};
  }
  return pointer;
}

namespace {

// RFC 6901 section 4: an array index is "0" or digits without a leading zero.
bool array_index(const std::string& token, std::size_t& index) {
  if (token.empty() || (token.size() > 1 && token.front() == '0')) return false;
  for (const char c : token) {
    if (c < '0' || c > '9') return false;
  }
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
  return ec == std::errc() && end == token.data() + token.size();
}

}  // namespace

const JsonValue* JsonPointer::resolve(const JsonValue& document) const {
  const JsonValue* current = &document;
  for (const std::string& token : tokens) {
    if (current->object() != nullptr) {
      current = current->find(token);
    } else if (const JsonArray* elements = current->array()) {
      std::size_t index = 0;
      if (!array_index(token, index) || index >= elements->size()) return nullptr;
      current = &(*elements)[index];
    } else {
      return nullptr;
    }
    if (current == nullptr) return nullptr;
  }
  return current;
}

}  // namespace meter
