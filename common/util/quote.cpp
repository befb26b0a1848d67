#include "common/util/quote.hpp"

#include <algorithm>

namespace meter {
namespace {

// Appends the first `shown` bytes of `text`, each byte for which `escaped`
// holds as \xNN.
template <class Escaped>
void append_escaped(std::string& out, std::string_view text, std::size_t shown, Escaped escaped) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < shown; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (escaped(byte)) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += static_cast<char>(byte);
    }
  }
}

}  // namespace

std::string quoted(std::string_view text) {
  constexpr std::size_t kMaxQuotedBytes = 64;
  std::string out = "'";
  const std::size_t shown = std::min(text.size(), kMaxQuotedBytes);
  append_escaped(out, text, shown,
                 [](unsigned char byte) { return byte < 0x20 || byte >= 0x7f || byte == '\\'; });
  if (shown < text.size()) {
    out += "...' (" + std::to_string(text.size()) + " bytes)";
  } else {
    out += "'";
  }
  return out;
}

std::string quoted_short(std::string_view text, std::size_t max_bytes, NonAscii non_ascii) {
  std::string out = "'";
  append_escaped(out, text, std::min(text.size(), max_bytes), [non_ascii](unsigned char byte) {
    return byte < 0x20 || byte == 0x7f || (byte > 0x7f && non_ascii == NonAscii::escape);
  });
  if (text.size() > max_bytes) out += "...";
  out += "'";
  return out;
}

}  // namespace meter
