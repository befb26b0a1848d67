// The inbox's on-disk format (described in common/buffer/inbox.hpp): the
// record codec and a segment opened for reading, shared by the writer
// (inbox.cpp) and the reader (inbox_reader.cpp). Internal to common/buffer.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/model/raw_message.hpp"
#include "common/util/result.hpp"

namespace meter::inbox_format {

// Version 1 (written until the preallocated segments): "MAINBOX1", then
// records [u32 length][u32 CRC of body][body], appended as the file grows.
inline constexpr char kMagicV1[] = "MAINBOX1";
inline constexpr std::int64_t kSegmentHeaderBytesV1 = 8;
inline constexpr std::size_t kRecordHeaderBytesV1 = 8;  // length + CRC
// Version 2: "MAINBOX2" + u64 salt, the file written full size (zeros) before
// use, records [u32 length][u32 CRC of body][u32 CRC of salt, length and body
// CRC][body]. See inbox.hpp.
inline constexpr char kMagicV2[] = "MAINBOX2";
inline constexpr std::int64_t kMagicBytes = 8;
inline constexpr std::int64_t kSegmentHeaderBytesV2 = 16;
inline constexpr std::size_t kRecordHeaderBytesV2 = 12;
// A body's fixed part: received_ms, qos, flags, topic length.
inline constexpr std::size_t kBodyFixedBytes = 8 + 1 + 1 + 4;
// How much of a version 2 segment a reader takes per read: the writer's own
// segment is mostly zeros ahead of the data, read again at every poll.
inline constexpr std::size_t kReadChunkBytes = 64 * 1024;

std::string errno_text(int error);

// The record's checksum: CRC-32 (IEEE 802.3), zlib's.
std::uint32_t record_checksum(const char* data, std::size_t size);

// Little-endian integers.
void put_u32(std::string& out, std::uint32_t value);
void put_i64(std::string& out, std::int64_t value);
void put_u64(std::string& out, std::uint64_t value);
std::uint32_t get_u32(const char* data);
std::int64_t get_i64(const char* data);
std::uint64_t get_u64(const char* data);

// A version 2 record header's own check: binds the length and the body's CRC
// to the segment's salt, so zeros, a torn header or a record of another
// segment (stale bytes) never verify.
std::uint32_t header_check(std::uint64_t salt, std::uint32_t length, std::uint32_t body_crc);

// The body after a version 2 header's room (filled by seal_record once the
// segment, and so the salt, is known).
void encode_body(const RawMessage& message, std::string& record);
void seal_record(std::uint64_t salt, std::string& record);

// Whether a version 2 record header of the segment with `salt` starts at
// `data` (at least kRecordHeaderBytesV2 bytes); its body length if so.
std::optional<std::uint32_t> verified_length(const char* data, std::uint64_t salt);

// A record's message from its body (both versions' bodies are the same).
RawMessage decode_body(const char* body, std::uint32_t length, std::uint32_t topic_length);

// Segment numbers present in the directory, ascending.
std::vector<std::int64_t> list_segments(const std::string& directory);

// A segment opened for reading: its version, its salt, and reads at offsets.
class SegmentFile {
 public:
  ~SegmentFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  static Result<std::unique_ptr<SegmentFile>> open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error{path + ": cannot open: " + errno_text(errno)};
    std::unique_ptr<SegmentFile> file(new SegmentFile(path, fd));
    auto head = file->read(0, static_cast<std::size_t>(kSegmentHeaderBytesV2));
    if (!head) return head.error();
    file->head_ = std::move(*head);
    if (file->head_.size() >= static_cast<std::size_t>(kSegmentHeaderBytesV2) &&
        file->head_.compare(0, kMagicBytes, kMagicV2) == 0) {
      file->version_ = 2;
      file->salt_ = get_u64(file->head_.data() + kMagicBytes);
    } else if (file->head_.size() >= static_cast<std::size_t>(kSegmentHeaderBytesV1) &&
               file->head_.compare(0, kMagicBytes, kMagicV1) == 0) {
      file->version_ = 1;
    }
    return file;
  }

  // 0: no segment header (too short, or not an inbox segment: see head()).
  int version() const { return version_; }
  const std::string& head() const { return head_; }
  std::uint64_t salt() const { return salt_; }
  std::int64_t header_bytes() const {
    return version_ == 2 ? kSegmentHeaderBytesV2 : kSegmentHeaderBytesV1;
  }

  // Up to `size` bytes from `offset` (fewer at the end of the file).
  Result<std::string> read(std::int64_t offset, std::size_t size) const {
    std::string data(size, '\0');
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = ::pread(fd_, data.data() + got, size - got,
                                static_cast<off_t>(offset) + static_cast<off_t>(got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error{path_ + ": cannot read: " + errno_text(errno)};
      }
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    return data;
  }

  Result<std::int64_t> size() const {
    struct stat info {};
    if (::fstat(fd_, &info) != 0) return Error{path_ + ": cannot stat: " + errno_text(errno)};
    return static_cast<std::int64_t>(info.st_size);
  }

  // Everything from `offset` to the end of the file.
  Result<std::string> read_rest(std::int64_t offset) const {
    auto bytes = size();
    if (!bytes) return bytes.error();
    return read(offset, static_cast<std::size_t>(std::max<std::int64_t>(0, *bytes - offset)));
  }

 private:
  SegmentFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
  std::string head_;
  int version_ = 0;
  std::uint64_t salt_ = 0;
};

}  // namespace meter::inbox_format
