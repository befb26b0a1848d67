// libFuzzer target: the inbox reader (common/buffer/inbox.cpp) on arbitrary segment
// bytes. It reads what a crash, a power loss or a bad disk could leave: it
// must never crash, never return more than the bytes hold, and, when the
// segment is closed, either read it to its end or report it damaged, in both
// formats (version 1, and version 2 with its salted record headers). Every
// message it returns must come back identical after a round trip through
// the writer.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/buffer/inbox.hpp"
#include "fuzz_check.hpp"

namespace {

const std::string& work_dir() {
  static const std::string dir = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "fuzz-inbox-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    return pattern;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace meter;
  const std::string buffer = work_dir() + "/buffer.db";
  std::filesystem::remove_all(inbox_directory(buffer));
  std::filesystem::create_directories(inbox_directory(buffer));
  {
    // The first byte picks the format: version 1, or version 2 with a fixed
    // salt (its records need the salt's header check to read at all).
    std::ofstream out(inbox_segment_path(buffer, 1), std::ios::binary);
    if (size > 0 && (data[0] & 1) != 0) {
      out << "MAINBOX2";
      out.write("\x01\x23\x45\x67\x89\xab\xcd\xef", 8);
    } else {
      out << "MAINBOX1";
    }
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  for (const bool writer_active : {false, true}) {
    auto batch = read_inbox(buffer, {}, 1000, writer_active);
    FUZZ_CHECK(static_cast<bool>(batch));
    FUZZ_CHECK(batch->bytes <= static_cast<std::int64_t>(size));
    if (!writer_active) {
      FUZZ_CHECK(batch->finished.size() + batch->damaged.size() <= 1);
      if (batch->messages.size() < 1000)
        FUZZ_CHECK(batch->finished.size() + batch->damaged.size() == 1);
    } else {
      FUZZ_CHECK(batch->damaged.empty());  // the only segment may still be written
    }
  }
  auto batch = read_inbox(buffer, {}, 1000, false);
  FUZZ_CHECK(static_cast<bool>(batch));
  if (batch->messages.empty()) return 0;  // the writer's segments are 4 MiB: only when needed
  // Round trip through the writer into a fresh inbox.
  const std::string copy = work_dir() + "/copy.db";
  std::filesystem::remove_all(inbox_directory(copy));
  {
    auto writer = InboxWriter::open(copy, false, 0);
    FUZZ_CHECK(static_cast<bool>(writer));
    for (const auto& message : batch->messages)
      FUZZ_CHECK(static_cast<bool>((*writer)->append(message)));
  }
  auto again = read_inbox(copy, {}, 1000, false);
  FUZZ_CHECK(static_cast<bool>(again));
  FUZZ_CHECK(again->messages.size() == batch->messages.size());
  FUZZ_CHECK(again->damaged.empty());
  for (std::size_t i = 0; i < batch->messages.size(); ++i) {
    const auto& a = batch->messages[i];
    const auto& b = again->messages[i];
    FUZZ_CHECK(a.topic == b.topic && a.payload == b.payload && a.received_ms == b.received_ms &&
               a.qos == b.qos && a.retained == b.retained && a.dup == b.dup);
  }
  return 0;
}
