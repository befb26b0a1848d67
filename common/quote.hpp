// Showing input text inside an error message. Input can be anything a meter
// sends (megabytes, binary): messages show at most 64 bytes of it, with
// unprintable bytes and backslashes escaped as \xNN, so that a log line or a
// JSON error report stays small and valid.
#pragma once

#include <string>
#include <string_view>

namespace meter {

// 'text', or 'first 64 bytes...' (N bytes).
std::string quoted(std::string_view text);

}  // namespace meter
