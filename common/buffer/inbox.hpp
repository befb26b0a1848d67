// The inbox: where the acknowledge path commits a message before it returns
// (which is what sends the MQTT PUBACK).
//
// Why not SQLite directly: a commit per message costs ~12 us of SQLite work and
// waits whenever the normalizer holds the database's write lock, and the
// acknowledge path is serial (Paho calls the handler once at a time). Here a
// commit is one write() of a checksummed record to an append-only file
// (followed by fdatasync() under durability power_loss), and the normalizer
// moves records into the raw log (raw_messages) in batches, storing how far
// it got in the same transaction (Buffer::absorb_inbox). So the inbox is the
// raw log's write-ahead part: a record reaches raw_messages exactly once, in
// the order it was acknowledged, however often the agent is killed.
//
// On disk, next to the database: `<buffer>-inbox/` holding `lock` (flock: one
// writer per buffer) and segments `<number>.seg`. A segment is written full
// size (kInboxSegmentBytes of zeros, synced with its directory entry under
// power_loss) before its first record, so the fdatasync after each record
// flushes data only, never a new file size through the filesystem's journal.
// Format (version 2): "MAINBOX2", a random u64 salt, then records
// [u32 body length][u32 CRC-32 of body][u32 CRC-32 of salt, length and body
// CRC][body], little-endian, body = [i64 received_ms][u8 qos][u8 flags:
// 1 retained, 2 dup][u32 topic length][topic][payload]. The header's check
// binds each record to its segment: zeros ahead of the data, a torn header and
// stale bytes of any other segment never verify, so the data ends at the first
// header that does not. Version 1 segments ("MAINBOX1", records [u32 length]
// [u32 CRC][body], the file as long as its data), written before, are still
// read. A writer appends to its own new segment and starts another when a
// record no longer fits; a segment is closed once a newer one exists. In a
// closed segment, bytes after the data that are not all zeros are kept (the
// segment renamed `.damaged`, never deleted), with the reason: a bad record
// followed by a valid one is damage; one with nothing valid after it is a
// record cut short by a crash or power loss mid-write (never acknowledged).
//
// No threads here: the writer is used by one thread, readers by another, and
// they share nothing but the files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/model/raw_message.hpp"
#include "common/util/result.hpp"

namespace meter {

inline constexpr std::int64_t kInboxSegmentBytes = 4 * 1024 * 1024;
inline constexpr std::int64_t kInboxRecordMaxBytes = 512 * 1024 * 1024;

// How far the raw log has absorbed the inbox.
struct InboxPosition {
  std::int64_t segment = 0;  // 0: before the first segment
  std::int64_t offset = 0;   // bytes into that segment

  friend bool operator==(const InboxPosition&, const InboxPosition&) = default;
};

std::string inbox_directory(const std::string& buffer_path);

// Exclusive use of a buffer's inbox (flock on `<inbox>/lock`), held for the
// life of the object. Held by the daemon's writer, or briefly by an offline
// command that moves what a stopped daemon left behind.
class InboxLock {
 public:
  // Fails with a message naming the lock file when another process holds it.
  static Result<std::unique_ptr<InboxLock>> acquire(const std::string& buffer_path);
  ~InboxLock();
  InboxLock(const InboxLock&) = delete;
  InboxLock& operator=(const InboxLock&) = delete;

 private:
  explicit InboxLock(int fd) : fd_(fd) {}
  int fd_;
};

class InboxWriter {
 public:
  // Takes the lock and starts a new segment numbered after every existing one
  // and after `after_segment` (what the buffer has absorbed). `sync_each`:
  // fdatasync() every record before append() returns (durability power_loss).
  static Result<std::unique_ptr<InboxWriter>> open(const std::string& buffer_path, bool sync_each,
                                                   std::int64_t after_segment);
  ~InboxWriter();
  InboxWriter(const InboxWriter&) = delete;
  InboxWriter& operator=(const InboxWriter&) = delete;

  // Returns once the record is written (and synced when asked). On failure
  // nothing of it stays in the segment, so it must not be acknowledged.
  Status append(const RawMessage& message);

  // Group commit (agent/source/ingest_workers.hpp): appends without syncing,
  // then one sync() makes every record appended since durable — a segment
  // closed in between was synced as it closed. Nothing appended this way may
  // be acknowledged before sync() succeeded. A failed sync() turns the
  // records since the last sync back into zeros where it can and ends the
  // segment there (the next append starts another).
  Status append_unsynced(const RawMessage& message);
  Status sync();

  // Where the next record goes.
  InboxPosition position() const { return {segment_, offset_}; }
  bool sync_each() const { return sync_each_; }

  // Test seam: appends fail as on a full disk while the inbox directory's
  // segments would exceed `bytes` in total; nullopt lifts the limit.
  void set_space_limit(std::optional<std::int64_t> bytes) { space_limit_ = bytes; }

 private:
  InboxWriter(std::string directory, bool sync_each, std::unique_ptr<InboxLock> lock);
  Status start_segment(std::int64_t number);
  Status write_record(const std::string& record, bool sync);
  Status append_record(const RawMessage& message, bool sync);

  std::string directory_;
  bool sync_each_;
  std::unique_ptr<InboxLock> lock_;
  int fd_ = -1;
  std::int64_t segment_ = 0;
  std::uint64_t salt_ = 0;  // the segment's: sealed into each record's header
  std::int64_t offset_ = 0;
  bool rotate_ = false;  // the segment is full or broken: the next append starts a new one
  // Records appended since the last sync start here (append_unsynced); -1: none.
  std::int64_t unsynced_from_ = -1;
  std::int64_t closed_bytes_ = 0;  // bytes in this writer's earlier segments (space limit)
  std::optional<std::int64_t> space_limit_;
  std::string record_;  // reused
};

// What a read found: complete records in order, and what to do with the
// segments it finished once they are safely absorbed.
struct InboxBatch {
  std::vector<RawMessage> messages;
  InboxPosition next;                  // where the next read starts
  std::int64_t bytes = 0;              // record bytes read
  std::vector<std::int64_t> finished;  // closed segments read to their end
  std::vector<std::int64_t> stale;     // segments before the start: absorbed earlier
  std::vector<std::pair<std::int64_t, std::string>> damaged;  // closed, tail unreadable: why
};

// Reads up to `max_messages` records from `from`. With `writer_active`, the
// newest segment may still grow: an incomplete record at its end is left for
// the next read. Without, every segment is closed.
Result<InboxBatch> read_inbox(const std::string& buffer_path, InboxPosition from,
                              std::size_t max_messages, bool writer_active);

// Bytes in segments at or after `from` not yet read (an estimate for status).
std::int64_t inbox_pending_bytes(const std::string& buffer_path, InboxPosition from);

// The disk budget (buffer.max_size_mib) counts an acknowledged message that is
// not in the database yet at what it will take there: on the buffer's 1 KiB
// pages its raw row and its measurement with the indexes take up to about
// twice its bytes and a few hundred more (a ~560-byte payload gets a page of
// its own). Counted at its own size, an inbox the normalizer had not caught up
// with let a 16 MiB budget reach 33 MB.
inline constexpr std::int64_t kBudgetBytesPerByte = 2;
inline constexpr std::int64_t kBudgetBytesPerMessage = 256;
inline std::int64_t budget_bytes_of_message(std::int64_t topic_and_payload_bytes) {
  return kBudgetBytesPerByte * topic_and_payload_bytes + kBudgetBytesPerMessage;
}
// The same for the inbox's pending bytes (records with their headers).
inline std::int64_t budget_bytes_of_inbox(std::int64_t pending_bytes) {
  return kBudgetBytesPerByte * pending_bytes;
}
// The budget counts as used up once less than this is left: the acknowledge
// path then refuses whatever the estimates say, and status says so.
inline constexpr std::int64_t kBudgetSlack = 64 * 1024;
inline bool budget_used_up(std::int64_t used, std::int64_t budget) {
  return budget != 0 && used > budget - kBudgetSlack;
}

// After the batch is committed: deletes finished and stale segments, renames
// damaged ones to `<number>.seg.damaged`. Returns messages about failures.
std::vector<std::string> retire_inbox_segments(const std::string& buffer_path,
                                               const InboxBatch& batch);

std::string inbox_segment_path(const std::string& buffer_path, std::int64_t segment);

}  // namespace meter
