// gzip (RFC 1952) for request bodies: libcurl compresses responses only, so
// the uplink compresses what it sends itself (one gzip member, as
// docs/PROTOCOL.md asks). Pure functions over zlib.
#pragma once

#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace meter {

// One gzip member holding `data`. `level` is zlib's 1 (fastest) .. 9 (smallest).
Result<std::string> gzip_compress(std::string_view data, int level);

// The content of one gzip member (tests and diagnostics). Refuses output over
// `max_output` bytes.
Result<std::string> gzip_decompress(std::string_view data, std::size_t max_output);

}  // namespace meter
