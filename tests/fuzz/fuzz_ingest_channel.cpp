// libFuzzer target: the daemon <-> ingest worker frames
// (agent/source/ingest_channel.cpp) on arbitrary bytes, fed in pieces of
// arbitrary sizes as a socket delivers them. The splitter must never crash,
// never return more bytes than it was given, and stop at a broken frame;
// every message or settings body that decodes must come back identical
// after encoding it again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agent/source/ingest_channel.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace meter;
using namespace meter::agent;

void check_body(const Frame& frame) {
  if (frame.type == FrameType::message) {
    auto message = decode_message(frame.body);
    if (!message) return;
    FUZZ_CHECK(encode_message(*message) == frame.body);
  } else if (frame.type == FrameType::settings) {
    auto settings = decode_settings(frame.body);
    if (!settings) return;
    auto again = decode_settings(encode_settings(*settings));
    FUZZ_CHECK(again);
    FUZZ_CHECK(*again == *settings);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte sets the piece size; the rest is the stream.
  const std::size_t piece = 1 + data[0] % 64;
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  FrameSplitter splitter;
  std::size_t fed = 0;
  std::size_t taken = 0;
  while (fed < stream.size()) {
    const auto part = stream.substr(fed, piece);
    splitter.feed(part);
    fed += part.size();
    for (;;) {
      auto frame = splitter.next();
      if (!frame) return 0;  // broken: the daemon closes such a socket
      if (!*frame) break;
      taken += 5 + (*frame)->body.size();
      FUZZ_CHECK(taken <= fed);
      check_body(**frame);
    }
  }
  return 0;
}
