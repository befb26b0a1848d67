// gzip (RFC 1952) for request bodies: libcurl compresses responses only, so
// the uplink compresses what it sends itself (one gzip member, as
// docs/PROTOCOL.md asks). A pure function over zlib; the tests unpack with
// tests/support/gunzip.hpp.
#pragma once

#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace meter {

// One gzip member holding `data`. `level` is zlib's 1 (fastest) .. 9 (smallest).
Result<std::string> gzip_compress(std::string_view data, int level);

}  // namespace meter
