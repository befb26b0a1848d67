// The content of one gzip member, for tests that check what the uplink sends
// (common/uplink/gzip.hpp compresses; the product never decompresses).
#pragma once

#include <zlib.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace meter::testing {

// Refuses output over `max_output` bytes, a truncated member and trailing bytes.
inline Result<std::string> gunzip(std::string_view data, std::size_t max_output) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) return Error{"gunzip: inflateInit2 failed"};
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char chunk[16384];
  int result = Z_OK;
  while (result != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof chunk;
    result = inflate(&stream, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) {
      inflateEnd(&stream);
      return Error{"gunzip: not one complete gzip member"};
    }
    out.append(chunk, sizeof chunk - stream.avail_out);
    if (out.size() > max_output) {
      inflateEnd(&stream);
      return Error{"gunzip: output over " + std::to_string(max_output) + " bytes"};
    }
    if (result == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      return Error{"gunzip: truncated gzip member"};
    }
  }
  const bool trailing = stream.avail_in != 0;
  inflateEnd(&stream);
  if (trailing) return Error{"gunzip: bytes after the gzip member"};
  return out;
}

}  // namespace meter::testing
