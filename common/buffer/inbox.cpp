#include "common/buffer/inbox.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace meter {

namespace {

namespace fs = std::filesystem;

constexpr char kMagic[] = "MAINBOX1";
constexpr std::int64_t kMagicBytes = 8;
constexpr std::size_t kHeaderBytes = 8;                 // length + CRC
constexpr std::size_t kBodyFixedBytes = 8 + 1 + 1 + 4;  // received_ms, qos, flags, topic length

std::string errno_text(int error) { return std::strerror(error); }

// The record's checksum: CRC-32 (IEEE 802.3), zlib's.
std::uint32_t record_checksum(const char* data, std::size_t size) {
  return static_cast<std::uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(data), static_cast<z_size_t>(size)));
}

void put_u32(std::string& out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

void put_i64(std::string& out, std::int64_t value) {
  const auto bits = static_cast<std::uint64_t>(value);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
}

std::uint32_t get_u32(const char* data) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(data[i]);
  return value;
}

std::int64_t get_i64(const char* data) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(data[i]);
  return static_cast<std::int64_t>(value);
}

void encode_record(const RawMessage& message, std::string& record) {
  record.clear();
  record.append(kHeaderBytes, '\0');
  put_i64(record, message.received_ms);
  record.push_back(static_cast<char>(message.qos));
  record.push_back(static_cast<char>((message.retained ? 1 : 0) | (message.dup ? 2 : 0)));
  put_u32(record, static_cast<std::uint32_t>(message.topic.size()));
  record += message.topic;
  record += message.payload;
  const std::size_t body = record.size() - kHeaderBytes;
  std::string header;
  put_u32(header, static_cast<std::uint32_t>(body));
  put_u32(header, record_checksum(record.data() + kHeaderBytes, body));
  record.replace(0, kHeaderBytes, header);
}

// Segment numbers present in the directory, ascending.
std::vector<std::int64_t> list_segments(const std::string& directory) {
  std::vector<std::int64_t> numbers;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(directory, error)) {
    const auto name = entry.path().filename().string();
    if (name.size() != 24 || name.compare(20, 4, ".seg") != 0) continue;
    if (!std::all_of(name.begin(), name.begin() + 20, [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    numbers.push_back(std::stoll(name.substr(0, 20)));
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

Status sync_directory(const std::string& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error{directory + ": cannot open to sync: " + errno_text(errno)};
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return Error{directory + ": cannot sync: " + errno_text(error)};
  return Ok{};
}

Result<std::string> read_file_from(const std::string& path, std::int64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{path + ": cannot open: " + errno_text(errno)};
  std::string data;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::pread(fd, chunk, sizeof chunk, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return Error{path + ": cannot read: " + errno_text(error)};
    }
    if (n == 0) break;
    data.append(chunk, static_cast<std::size_t>(n));
    offset += n;
  }
  ::close(fd);
  return data;
}

}  // namespace

std::string inbox_directory(const std::string& buffer_path) { return buffer_path + "-inbox"; }

std::string inbox_segment_path(const std::string& buffer_path, std::int64_t segment) {
  char name[32];
  std::snprintf(name, sizeof name, "%020lld.seg", static_cast<long long>(segment));
  return inbox_directory(buffer_path) + "/" + name;
}

// ---- the lock ----------------------------------------------------------------

Result<std::unique_ptr<InboxLock>> InboxLock::acquire(const std::string& buffer_path) {
  const auto directory = inbox_directory(buffer_path);
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error{directory + ": cannot create the inbox directory: " + errno_text(errno)};
  }
  // The directory's own entry must survive a power cut before any record in
  // it is acknowledged (the segments' syncs cover only entries inside it).
  // Synced at every start: a run cut before syncing left it there, unsynced.
  const auto slash = directory.rfind('/');
  const std::string parent =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : directory.substr(0, slash));
  if (auto synced = sync_directory(parent); !synced) return synced.error();
  const auto path = directory + "/lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Error{path + ": cannot open: " + errno_text(errno)};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return Error{path + ": the buffer is in use by another meter-agent (the lock is held)"};
    }
    return Error{path + ": cannot lock: " + errno_text(error)};
  }
  return std::unique_ptr<InboxLock>(new InboxLock(fd));
}

InboxLock::~InboxLock() { ::close(fd_); }  // closing releases the flock

// ---- the writer --------------------------------------------------------------

InboxWriter::InboxWriter(std::string directory, bool sync_each, std::unique_ptr<InboxLock> lock)
    : directory_(std::move(directory)), sync_each_(sync_each), lock_(std::move(lock)) {}

InboxWriter::~InboxWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<InboxWriter>> InboxWriter::open(const std::string& buffer_path,
                                                       bool sync_each, std::int64_t after_segment) {
  auto lock = InboxLock::acquire(buffer_path);
  if (!lock) return lock.error();
  const auto directory = inbox_directory(buffer_path);
  std::unique_ptr<InboxWriter> writer(new InboxWriter(directory, sync_each, std::move(*lock)));
  const auto existing = list_segments(directory);
  std::int64_t number = after_segment;
  if (!existing.empty()) number = std::max(number, existing.back());
  writer->segment_ = number;  // a base for the file name path below
  if (auto started = writer->start_segment(number + 1); !started) return started.error();
  return writer;
}

Status InboxWriter::start_segment(std::int64_t number) {
  char name[32];
  std::snprintf(name, sizeof name, "%020lld.seg", static_cast<long long>(number));
  const auto path = directory_ + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error{path + ": cannot create an inbox segment: " + errno_text(errno)};
  std::int64_t written = 0;
  while (written < kMagicBytes) {
    const ssize_t n =
        ::write(fd, kMagic + written, static_cast<std::size_t>(kMagicBytes - written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      ::close(fd);
      ::unlink(path.c_str());
      return Error{path + ": cannot write an inbox segment: " + errno_text(error)};
    }
    written += n;
  }
  if (sync_each_) {
    if (::fdatasync(fd) != 0) {
      const int error = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return Error{path + ": cannot sync an inbox segment: " + errno_text(error)};
    }
    if (auto synced = sync_directory(directory_); !synced) {
      ::close(fd);
      ::unlink(path.c_str());
      return synced.error();
    }
  }
  if (fd_ >= 0) {
    ::close(fd_);
    closed_bytes_ += offset_;
  }
  fd_ = fd;
  segment_ = number;
  offset_ = kMagicBytes;
  rotate_ = false;
  return Ok{};
}

Status InboxWriter::write_record(const std::string& record) {
  if (space_limit_ &&
      closed_bytes_ + offset_ + static_cast<std::int64_t>(record.size()) > *space_limit_) {
    return Error{directory_ + ": cannot append to the inbox: " + errno_text(ENOSPC) +
                 " (test space limit)"};
  }
  std::size_t written = 0;
  int error = 0;
  while (written < record.size()) {
    const ssize_t n = ::pwrite(fd_, record.data() + written, record.size() - written,
                               static_cast<off_t>(offset_) + static_cast<off_t>(written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : ENOSPC;
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  if (error == 0 && sync_each_ && ::fdatasync(fd_) != 0) error = errno;
  if (error != 0) {
    // Nothing of a failed record may stay: a reader would take a complete but
    // unacknowledged record as acknowledged. If the file cannot be cut back,
    // this segment ends here (its tail is read as damaged, never absorbed).
    if (::ftruncate(fd_, static_cast<off_t>(offset_)) != 0) rotate_ = true;
    return Error{directory_ + ": cannot append to the inbox: " + errno_text(error)};
  }
  offset_ += static_cast<std::int64_t>(record.size());
  return Ok{};
}

Status InboxWriter::append(const RawMessage& message) {
  if (rotate_ || offset_ >= kInboxSegmentBytes) {
    if (auto started = start_segment(segment_ + 1); !started) return started.error();
  }
  encode_record(message, record_);
  if (static_cast<std::int64_t>(record_.size()) > kInboxRecordMaxBytes) {
    return Error{"a message of " + std::to_string(message.payload.size()) +
                 " bytes is larger than the inbox takes"};
  }
  return write_record(record_);
}

// ---- readers -----------------------------------------------------------------

Result<InboxBatch> read_inbox(const std::string& buffer_path, InboxPosition from,
                              std::size_t max_messages, bool writer_active) {
  InboxBatch batch;
  batch.next = from;
  const auto directory = inbox_directory(buffer_path);
  const auto segments = list_segments(directory);
  for (std::size_t index = 0; index < segments.size(); ++index) {
    const std::int64_t number = segments[index];
    if (number < from.segment) {
      batch.stale.push_back(number);
      continue;
    }
    if (batch.messages.size() >= max_messages) break;
    const bool closed = !writer_active || index + 1 < segments.size();
    const std::int64_t start =
        number == from.segment ? std::max(from.offset, kMagicBytes) : kMagicBytes;
    const auto path = inbox_segment_path(buffer_path, number);
    if (number != from.segment) batch.next = {number, kMagicBytes};
    if (start == kMagicBytes) {
      auto head = read_file_from(path, 0);
      if (!head) return head.error();
      if (head->size() < static_cast<std::size_t>(kMagicBytes)) {
        if (!closed) break;  // just created
        batch.damaged.emplace_back(number, "no segment header");
        batch.next = {number + 1, 0};
        continue;
      }
      if (head->compare(0, kMagicBytes, kMagic) != 0) {
        if (!closed) return Error{path + ": not an inbox segment (bad header)"};
        batch.damaged.emplace_back(number, "not an inbox segment header");
        batch.next = {number + 1, 0};
        continue;
      }
    }
    auto data = read_file_from(path, start);
    if (!data) return data.error();
    std::size_t at = 0;
    std::string problem;
    while (batch.messages.size() < max_messages) {
      const std::size_t left = data->size() - at;
      if (left == 0) break;
      if (left < kHeaderBytes) {
        problem = "an incomplete record header";
        break;
      }
      const std::uint32_t length = get_u32(data->data() + at);
      const std::uint32_t crc = get_u32(data->data() + at + 4);
      if (length < kBodyFixedBytes || length > kInboxRecordMaxBytes) {
        problem = "a record length of " + std::to_string(length);
        break;
      }
      if (left - kHeaderBytes < length) {
        problem = "an incomplete record";
        break;
      }
      const char* body = data->data() + at + kHeaderBytes;
      if (record_checksum(body, length) != crc) {
        problem = "a record whose checksum does not match";
        break;
      }
      const std::uint32_t topic_length = get_u32(body + 10);
      if (topic_length > length - kBodyFixedBytes) {
        problem = "a record whose topic length exceeds it";
        break;
      }
      RawMessage message;
      message.received_ms = get_i64(body);
      message.qos = static_cast<unsigned char>(body[8]);
      message.retained = (body[9] & 1) != 0;
      message.dup = (body[9] & 2) != 0;
      message.topic.assign(body + kBodyFixedBytes, topic_length);
      message.payload.assign(body + kBodyFixedBytes + topic_length,
                             length - kBodyFixedBytes - topic_length);
      batch.messages.push_back(std::move(message));
      at += kHeaderBytes + length;
      batch.bytes += static_cast<std::int64_t>(kHeaderBytes + length);
    }
    batch.next = {number, start + static_cast<std::int64_t>(at)};
    if (batch.messages.size() >= max_messages && at < data->size()) break;
    if (!closed) break;  // the writer's segment: the rest arrives later
    if (!problem.empty()) {
      batch.damaged.emplace_back(
          number, problem + " at byte " + std::to_string(start + static_cast<std::int64_t>(at)) +
                      " (" + std::to_string(data->size() - at) + " bytes not read)");
    } else {
      batch.finished.push_back(number);
    }
    batch.next = {number + 1, 0};
  }
  return batch;
}

std::int64_t inbox_pending_bytes(const std::string& buffer_path, InboxPosition from) {
  std::int64_t total = 0;
  for (const auto number : list_segments(inbox_directory(buffer_path))) {
    if (number < from.segment) continue;
    struct stat info {};
    if (::stat(inbox_segment_path(buffer_path, number).c_str(), &info) != 0) continue;
    const std::int64_t start =
        number == from.segment ? std::max(from.offset, kMagicBytes) : kMagicBytes;
    total += std::max<std::int64_t>(0, static_cast<std::int64_t>(info.st_size) - start);
  }
  return total;
}

std::vector<std::string> retire_inbox_segments(const std::string& buffer_path,
                                               const InboxBatch& batch) {
  std::vector<std::string> problems;
  auto remove = [&](std::int64_t number) {
    const auto path = inbox_segment_path(buffer_path, number);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      problems.push_back(path + ": cannot delete an absorbed inbox segment: " + errno_text(errno));
    }
  };
  for (const auto number : batch.stale) remove(number);
  for (const auto number : batch.finished) remove(number);
  for (const auto& [number, reason] : batch.damaged) {
    const auto path = inbox_segment_path(buffer_path, number);
    if (::rename(path.c_str(), (path + ".damaged").c_str()) != 0) {
      problems.push_back(path + ": cannot rename a damaged inbox segment: " + errno_text(errno));
    }
  }
  return problems;
}

}  // namespace meter
