// Showing input text inside an error message. Input can be anything a meter
// sends (megabytes, binary): messages show a short prefix of it with
// unprintable bytes escaped as \xNN, so that a log line or a JSON error report
// stays small and valid.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace meter {

// 'text', or 'first 64 bytes...' (N bytes); bytes outside printable ASCII and
// backslashes escaped. For values in decimal, timestamp and unit messages.
std::string quoted(std::string_view text);

// Bytes above 0x7f in quoted_short: escaped, or kept (config text, read as
// UTF-8, shows its names as written).
enum class NonAscii { escape, keep };

// 'text' for names and values in config and mapping messages: at most
// `max_bytes` of it followed by ... where it is longer, control bytes and DEL
// escaped as \xNN (bytes above 0x7f too unless `non_ascii` keeps them).
std::string quoted_short(std::string_view text, std::size_t max_bytes, NonAscii non_ascii);

}  // namespace meter
