#include "common/buffer/inbox.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "common/buffer/inbox_format.hpp"

namespace meter {

using namespace inbox_format;

namespace {

Status sync_directory(const std::string& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error{directory + ": cannot open to sync: " + errno_text(errno)};
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return Error{directory + ": cannot sync: " + errno_text(error)};
  return Ok{};
}

// Writes `size` zero bytes at `offset`; the errno of a failure, 0 on success.
int write_zeros(int fd, std::int64_t offset, std::int64_t size) {
  static const std::string zeros(256 * 1024, '\0');
  while (size > 0) {
    const auto chunk = static_cast<std::size_t>(std::min<std::int64_t>(size, zeros.size()));
    const ssize_t n = ::pwrite(fd, zeros.data(), chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    offset += n;
    size -= n;
  }
  return 0;
}

std::uint64_t new_salt() {
  std::random_device random;
  return (static_cast<std::uint64_t>(random()) << 32) ^ static_cast<std::uint64_t>(random());
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
  auto fail = [&](const std::string& what, int error) -> Status {
    ::close(fd);
    ::unlink(path.c_str());
    return Error{path + ": cannot " + what + " an inbox segment: " + errno_text(error)};
  };
  const std::uint64_t salt = new_salt();
  std::string header(kMagicV2, static_cast<std::size_t>(kMagicBytes));
  put_u64(header, salt);
  // The whole segment is written (zeros) and synced before its first record:
  // a record's fdatasync then flushes data only, never a new file size through
  // the filesystem's journal. Zeros never verify as a record: they read as
  // the end of data.
  std::size_t written = 0;
  while (written < header.size()) {
    const ssize_t n =
        ::pwrite(fd, header.data() + written, header.size() - written, static_cast<off_t>(written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write", n < 0 ? errno : ENOSPC);
    written += static_cast<std::size_t>(n);
  }
  if (const int error =
          write_zeros(fd, kSegmentHeaderBytesV2, kInboxSegmentBytes - kSegmentHeaderBytesV2);
      error != 0) {
    return fail("write", error);
  }
  if (sync_each_) {
    if (::fdatasync(fd) != 0) return fail("sync", errno);
    if (auto synced = sync_directory(directory_); !synced) {
      ::close(fd);
      ::unlink(path.c_str());
      return synced.error();
    }
  }
  if (fd_ >= 0) {
    // Group commit: the old segment's records are acknowledged by the next
    // sync(), which syncs only the new segment; sync them as it closes.
    if (unsynced_from_ >= 0 && sync_each_ && ::fdatasync(fd_) != 0) {
      const int error = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return Error{directory_ + ": cannot sync an inbox segment: " + errno_text(error)};
    }
    ::close(fd_);
    closed_bytes_ += offset_;
  }
  unsynced_from_ = -1;
  fd_ = fd;
  segment_ = number;
  salt_ = salt;
  offset_ = kSegmentHeaderBytesV2;
  rotate_ = false;
  return Ok{};
}

Status InboxWriter::write_record(const std::string& record, bool sync) {
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
  if (error == 0 && sync && sync_each_ && ::fdatasync(fd_) != 0) error = errno;
  if (error != 0) {
    // Nothing of a failed record may stay: a reader would take a complete but
    // unacknowledged record as acknowledged. The bytes written go back to
    // zeros (the end of data); if that fails too, this segment ends here (a closed
    // segment's unreadable tail is kept as damaged, never absorbed).
    if (write_zeros(fd_, offset_, static_cast<std::int64_t>(written)) != 0) rotate_ = true;
    return Error{directory_ + ": cannot append to the inbox: " + errno_text(error)};
  }
  offset_ += static_cast<std::int64_t>(record.size());
  return Ok{};
}

Status InboxWriter::append(const RawMessage& message) {
  if (unsynced_from_ >= 0) {
    // Records of a group waiting for sync() come first; this one's own sync
    // covers them too.
    if (auto appended = append_record(message, true); !appended) return appended;
    unsynced_from_ = -1;
    return Ok{};
  }
  return append_record(message, true);
}

Status InboxWriter::append_unsynced(const RawMessage& message) {
  auto appended = append_record(message, false);
  if (appended && unsynced_from_ < 0) {
    unsynced_from_ = offset_ - static_cast<std::int64_t>(record_.size());
  }
  return appended;
}

Status InboxWriter::sync() {
  if (unsynced_from_ < 0) return Ok{};
  if (sync_each_ && ::fdatasync(fd_) != 0) {
    const int error = errno;
    // Like a failed append: what the failed sync covered is not
    // acknowledged, so it must not read as data (zeros end it), or the
    // segment ends here.
    if (write_zeros(fd_, unsynced_from_, offset_ - unsynced_from_) != 0) rotate_ = true;
    offset_ = unsynced_from_;
    unsynced_from_ = -1;
    return Error{directory_ + ": cannot sync the inbox: " + errno_text(error)};
  }
  unsynced_from_ = -1;
  return Ok{};
}

Status InboxWriter::append_record(const RawMessage& message, bool sync) {
  encode_body(message, record_);
  if (static_cast<std::int64_t>(record_.size()) > kInboxRecordMaxBytes) {
    return Error{"a message of " + std::to_string(message.payload.size()) +
                 " bytes is larger than the inbox takes"};
  }
  // A record that does not fit in the segment's written size starts the next
  // one; one larger than a whole segment goes alone into a fresh one, which
  // grows for it (that sync then commits a size change too).
  const bool fits = offset_ + static_cast<std::int64_t>(record_.size()) <= kInboxSegmentBytes;
  if (rotate_ || (!fits && offset_ > kSegmentHeaderBytesV2)) {
    if (auto started = start_segment(segment_ + 1); !started) return started.error();
  }
  seal_record(salt_, record_);
  return write_record(record_, sync);
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
