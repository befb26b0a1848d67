#include "common/quote.hpp"

#include <algorithm>

namespace meter {

std::string quoted(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  constexpr std::size_t kMaxQuotedBytes = 64;
  std::string out = "'";
  const std::size_t shown = std::min(text.size(), kMaxQuotedBytes);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x20 || byte >= 0x7f || byte == '\\') {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += static_cast<char>(byte);
    }
  }
  if (shown < text.size()) {
    out += "...' (" + std::to_string(text.size()) + " bytes)";
  } else {
    out += "'";
  }
  return out;
}

}  // namespace meter
