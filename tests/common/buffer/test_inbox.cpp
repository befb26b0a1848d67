// The inbox (common/buffer/inbox.*) and the buffer's absorption of it
// (common/buffer/absorb_inbox.cpp): records come back byte for byte and in order,
// reach the raw log exactly once, a torn tail is never taken for a record,
// and a failed append leaves nothing behind.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "common/buffer/buffer.hpp"
#include "common/buffer/inbox.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::test;

namespace {

RawMessage message(int i, std::size_t payload_bytes = 0) {
  RawMessage m;
  m.topic = "meters/d" + std::to_string(i % 7);
  m.payload = "{\"value\":" + std::to_string(i) + "}";
  if (payload_bytes > m.payload.size()) m.payload.append(payload_bytes - m.payload.size(), 'x');
  m.payload.push_back('\0');  // payloads are bytes, not text
  m.payload.push_back(static_cast<char>(0xff));
  m.qos = i % 2;
  m.retained = i % 3 == 0;
  m.dup = i % 5 == 0;
  m.received_ms = 1767225600000LL + i;
  return m;
}

void require_same(const RawMessage& a, const RawMessage& b) {
  REQUIRE(a.topic == b.topic);
  REQUIRE(a.payload == b.payload);
  REQUIRE(a.qos == b.qos);
  REQUIRE(a.retained == b.retained);
  REQUIRE(a.dup == b.dup);
  REQUIRE(a.received_ms == b.received_ms);
}

std::unique_ptr<Buffer> open_buffer(const std::string& path) {
  BufferConfig config;
  config.path = path;
  config.durability = Durability::normal;
  auto opened = Buffer::open(config);
  REQUIRE(opened);
  return std::move(*opened);
}

std::vector<std::string> inbox_files(const std::string& buffer_path) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(inbox_directory(buffer_path))) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("inbox: records come back exactly, in order, across segments", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  std::vector<RawMessage> sent;
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    // ~10 MiB: at least three segments.
    for (int i = 0; i < 40; ++i) {
      sent.push_back(message(i, 256 * 1024));
      REQUIRE((*writer)->append(sent.back()));
    }
    REQUIRE((*writer)->position().segment >= 3);
    auto batch = read_inbox(path, {}, 1000, true);
    REQUIRE(batch);
    // The writer's own segment is open: everything written so far is readable.
    REQUIRE(batch->messages.size() == sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) require_same(batch->messages[i], sent[i]);
    REQUIRE(batch->damaged.empty());
    // Only closed segments are finished; the open one stays.
    REQUIRE(batch->finished.size() == static_cast<std::size_t>((*writer)->position().segment - 1));
    REQUIRE(batch->next.segment == (*writer)->position().segment);
  }
  // In small steps, resuming from each batch's position, gives the same.
  std::vector<RawMessage> again;
  InboxPosition at;
  for (int round = 0; round < 100; ++round) {
    auto batch = read_inbox(path, at, 3, false);
    REQUIRE(batch);
    if (batch->messages.empty() && batch->next == at) break;
    for (auto& m : batch->messages) again.push_back(std::move(m));
    at = batch->next;
  }
  REQUIRE(again.size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) require_same(again[i], sent[i]);
}

TEST_CASE("inbox: records appended for a group commit read back in order with the others",
          "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  std::vector<RawMessage> sent;
  {
    auto writer = InboxWriter::open(path, true, 0);
    REQUIRE(writer);
    // Groups of three, a single append between them, ~6 MiB: a segment ends
    // inside a group.
    for (int i = 0; i < 24; ++i) {
      sent.push_back(message(i, 256 * 1024));
      if (i % 4 == 3) {
        REQUIRE((*writer)->append(sent.back()));
      } else {
        REQUIRE((*writer)->append_unsynced(sent.back()));
        if (i % 4 == 2) REQUIRE((*writer)->sync());
      }
    }
    REQUIRE((*writer)->sync());  // nothing pending: nothing to do
    REQUIRE((*writer)->position().segment >= 2);
  }
  auto batch = read_inbox(path, {}, 1000, false);
  REQUIRE(batch);
  REQUIRE(batch->damaged.empty());
  REQUIRE(batch->messages.size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) require_same(batch->messages[i], sent[i]);
}

TEST_CASE("inbox: one writer per buffer", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  auto first = InboxWriter::open(path, false, 0);
  REQUIRE(first);
  auto second = InboxWriter::open(path, false, 0);
  REQUIRE_FALSE(second);
  CHECK(second.error().message.find("in use by another meter-agent") != std::string::npos);
  CHECK(second.error().message.find(inbox_directory(path) + "/lock") != std::string::npos);
  REQUIRE_FALSE(InboxLock::acquire(path));
  first->reset();
  REQUIRE(InboxLock::acquire(path));
}

TEST_CASE("inbox: a new writer starts after every segment and after the absorbed one", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    CHECK((*writer)->position().segment == 1);
  }
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    CHECK((*writer)->position().segment == 2);
  }
  // Every segment deleted (absorbed), but the buffer says it read segment 9:
  // numbers must not go back, or the new records would look absorbed.
  std::filesystem::remove(inbox_segment_path(path, 1));
  std::filesystem::remove(inbox_segment_path(path, 2));
  auto writer = InboxWriter::open(path, false, 9);
  REQUIRE(writer);
  CHECK((*writer)->position().segment == 10);
}

TEST_CASE("inbox: a torn tail is never read as a record", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  std::int64_t torn_segment = 0;
  std::vector<std::int64_t> ends;  // where each record ends
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    for (int i = 0; i < 5; ++i) {
      REQUIRE((*writer)->append(message(i)));
      ends.push_back((*writer)->position().offset);
    }
    torn_segment = (*writer)->position().segment;
  }
  const auto segment = inbox_segment_path(path, torn_segment);
  const auto data_end = ends.back();
  // A crash after the first bytes of a sixth record: its header and half a
  // body, where the writer would have put it (the rest of the segment is the
  // zeros written before use).
  {
    std::fstream out(segment, std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(data_end));
    const std::string partial("\x40\x00\x00\x00\x12\x34\x56\x78partial", 16);
    out << partial;
  }

  SECTION("while the writer may still be writing it, the reader waits") {
    auto writer = InboxWriter::open(path, false, 0);  // a newer segment: the torn one is closed
    REQUIRE(writer);
    auto open_batch = read_inbox(path, {torn_segment, 0}, 100, true);
    REQUIRE(open_batch);
    CHECK(open_batch->messages.size() == 5);
    REQUIRE(open_batch->damaged.size() == 1);
    CHECK(open_batch->damaged[0].first == torn_segment);
    CHECK(open_batch->damaged[0].second.find("incomplete record") != std::string::npos);
  }
  SECTION("the newest segment with a writer active: the tail is not yet complete") {
    // No newer segment: as far as the reader knows the writer is mid-write.
    auto batch = read_inbox(path, {torn_segment, 0}, 100, true);
    REQUIRE(batch);
    CHECK(batch->messages.size() == 5);
    CHECK(batch->damaged.empty());
    CHECK(batch->finished.empty());
    CHECK(batch->next == InboxPosition{torn_segment, data_end});
  }
  SECTION("absorbed: five rows, the damaged segment kept aside, never deleted") {
    auto buffer = open_buffer(path);
    auto absorbed = buffer->absorb_inbox(100, false);
    REQUIRE(absorbed);
    CHECK(absorbed->messages == 5);
    REQUIRE(absorbed->damaged.size() == 1);
    CHECK(absorbed->damaged[0].find(".damaged") != std::string::npos);
    CHECK(std::filesystem::exists(segment + ".damaged"));
    CHECK_FALSE(std::filesystem::exists(segment));
    auto status = buffer->status();
    REQUIRE(status);
    CHECK(status->raw_messages == 5);
    CHECK(status->inbox_bytes == 0);
  }
  SECTION("a checksum mismatch in a closed segment stops the read there") {
    // Flip a byte inside the third record's payload.
    auto batch = read_inbox(path, {torn_segment, 0}, 100, false);
    REQUIRE(batch);
    REQUIRE(batch->messages.size() == 5);
    std::fstream file(segment, std::ios::binary | std::ios::in | std::ios::out);
    file.seekp(static_cast<std::streamoff>(ends[2] - 3));
    file.put('#');
    file.close();
    auto damaged = read_inbox(path, {torn_segment, 0}, 100, false);
    REQUIRE(damaged);
    CHECK(damaged->messages.size() == 2);
    REQUIRE(damaged->damaged.size() == 1);
    // Damage, not the end of data: valid records follow the bad one.
    CHECK(damaged->damaged[0].second.find("checksum") != std::string::npos);
    CHECK(damaged->damaged[0].second.find("followed by a valid record at byte " +
                                          std::to_string(ends[2])) != std::string::npos);
  }
}

TEST_CASE("inbox: absorbing moves each record into the raw log exactly once", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  auto writer = InboxWriter::open(path, false, 0);
  REQUIRE(writer);
  for (int i = 0; i < 30; ++i) REQUIRE((*writer)->append(message(i)));
  {
    auto buffer = open_buffer(path);
    auto first = buffer->absorb_inbox(20, true);
    REQUIRE(first);
    CHECK(first->messages == 20);
    CHECK(first->last_seq == 20);
    auto status = buffer->status();
    REQUIRE(status);
    CHECK(status->inbox_bytes > 0);
  }
  // A second connection (as after a restart) continues where the first stopped.
  for (int i = 30; i < 40; ++i) REQUIRE((*writer)->append(message(i)));
  auto buffer = open_buffer(path);
  auto second = buffer->absorb_inbox(1000, true);
  REQUIRE(second);
  CHECK(second->messages == 20);
  CHECK(second->last_seq == 40);
  auto nothing = buffer->absorb_inbox(1000, true);
  REQUIRE(nothing);
  CHECK(nothing->messages == 0);
  auto status = buffer->status();
  REQUIRE(status);
  CHECK(status->raw_messages == 40);
  CHECK(status->inbox_bytes == 0);
  auto position = buffer->inbox_position();
  REQUIRE(position);
  CHECK(*position == (*writer)->position());
}

TEST_CASE("inbox: finished segments are deleted only once absorbed", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    for (int i = 0; i < 20; ++i) REQUIRE((*writer)->append(message(i, 512 * 1024)));
  }
  const auto before = inbox_files(path);
  REQUIRE(before.size() >= 4);  // lock + segments
  auto buffer = open_buffer(path);
  auto some = buffer->absorb_inbox(3, false);  // within the first segment
  REQUIRE(some);
  CHECK(inbox_files(path) == before);
  for (;;) {
    auto more = buffer->absorb_inbox(5, false);
    REQUIRE(more);
    if (more->messages == 0) break;
  }
  CHECK(inbox_files(path) == std::vector<std::string>{"lock"});
  auto status = buffer->status();
  REQUIRE(status);
  CHECK(status->raw_messages == 20);
}

TEST_CASE("inbox: a failed append leaves nothing a reader would take", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  auto writer = InboxWriter::open(path, false, 0);
  REQUIRE(writer);
  REQUIRE((*writer)->append(message(1)));

  SECTION("the space limit (the daemon's full-disk seam)") {
    (*writer)->set_space_limit(0);
    auto refused = (*writer)->append(message(2));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message.find("No space left on device") != std::string::npos);
    (*writer)->set_space_limit(std::nullopt);
  }
  SECTION("a real write failure: the file size limit (RLIMIT_FSIZE) cuts a record short") {
    const auto position = (*writer)->position();
    struct rlimit old_limit {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = old_limit;
    limit.rlim_cur = static_cast<rlim_t>(position.offset + 20);  // mid-record
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
    auto refused = (*writer)->append(message(2, 100));
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    std::signal(SIGXFSZ, old_handler);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message.find("File too large") != std::string::npos);
    // What was written of it is zeros again (the end of data).
    std::ifstream in(inbox_segment_path(path, position.segment), std::ios::binary);
    in.seekg(static_cast<std::streamoff>(position.offset));
    std::string after(100, '\1');
    in.read(after.data(), static_cast<std::streamsize>(after.size()));
    CHECK(after == std::string(100, '\0'));
    CHECK((*writer)->position() == position);
  }
  REQUIRE((*writer)->append(message(3)));
  auto batch = read_inbox(path, {}, 100, true);
  REQUIRE(batch);
  REQUIRE(batch->messages.size() == 2);
  require_same(batch->messages[0], message(1));
  require_same(batch->messages[1], message(3));
}

TEST_CASE("inbox: power_loss durability syncs and still reads back", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  auto writer = InboxWriter::open(path, true, 0);
  REQUIRE(writer);
  CHECK((*writer)->sync_each());
  for (int i = 0; i < 3; ++i) REQUIRE((*writer)->append(message(i)));
  auto batch = read_inbox(path, {}, 100, true);
  REQUIRE(batch);
  CHECK(batch->messages.size() == 3);
}

TEST_CASE("inbox: a segment is written full size before its first record", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  auto writer = InboxWriter::open(path, true, 0);
  REQUIRE(writer);
  const auto first = (*writer)->position();
  const auto segment = inbox_segment_path(path, first.segment);
  // A record's sync then never commits a size change.
  CHECK(std::filesystem::file_size(segment) == static_cast<std::uintmax_t>(kInboxSegmentBytes));
  for (int i = 0; i < 10; ++i) REQUIRE((*writer)->append(message(i)));
  CHECK(std::filesystem::file_size(segment) == static_cast<std::uintmax_t>(kInboxSegmentBytes));
  // The zeros after the data are its end: pending bytes are the records' bytes.
  CHECK(inbox_pending_bytes(path, first) == (*writer)->position().offset - first.offset);
  CHECK(inbox_pending_bytes(path, (*writer)->position()) == 0);

  SECTION("a closed segment ending in zeros is finished, not damaged") {
    writer->reset();
    auto batch = read_inbox(path, {}, 100, false);
    REQUIRE(batch);
    CHECK(batch->messages.size() == 10);
    CHECK(batch->damaged.empty());
    CHECK(batch->finished == std::vector<std::int64_t>{first.segment});
  }
  SECTION("records that do not fit start the next segment, none split") {
    std::vector<RawMessage> sent;
    for (int i = 0; i < 9; ++i) {
      sent.push_back(message(100 + i, 1024 * 1024));
      REQUIRE((*writer)->append(sent.back()));
    }
    CHECK((*writer)->position().segment == first.segment + 2);  // 3 records of 1 MiB each
    writer->reset();
    auto batch = read_inbox(path, {}, 100, false);
    REQUIRE(batch);
    REQUIRE(batch->messages.size() == 19);
    for (std::size_t i = 0; i < sent.size(); ++i) require_same(batch->messages[10 + i], sent[i]);
    CHECK(batch->damaged.empty());
    CHECK(batch->finished.size() == 3);
  }
}

TEST_CASE("inbox: a record copied from another segment (stale bytes) is never read", "[inbox]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  InboxPosition start_a, end_a, start_b, end_b;
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    start_a = (*writer)->position();
    REQUIRE((*writer)->append(message(1)));
    end_a = (*writer)->position();
  }
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    start_b = (*writer)->position();
    REQUIRE((*writer)->append(message(2)));
    end_b = (*writer)->position();
  }
  // Segment A's record, byte for byte, after B's data: the salt of B's header
  // does not verify it, so it cannot be replayed as B's.
  std::string record(static_cast<std::size_t>(end_a.offset - start_a.offset), '\0');
  {
    std::ifstream in(inbox_segment_path(path, start_a.segment), std::ios::binary);
    in.seekg(static_cast<std::streamoff>(start_a.offset));
    in.read(record.data(), static_cast<std::streamsize>(record.size()));
    std::fstream out(inbox_segment_path(path, start_b.segment),
                     std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(end_b.offset));
    out.write(record.data(), static_cast<std::streamsize>(record.size()));
  }
  auto batch = read_inbox(path, start_b, 100, true);  // B is the newest: as if still written
  REQUIRE(batch);
  REQUIRE(batch->messages.size() == 1);
  require_same(batch->messages[0], message(2));
  CHECK(batch->next == end_b);
}

TEST_CASE("inbox: a segment of the version 1 format (before preallocation) still reads",
          "[inbox]") {
  // tests/data/inbox-v1/00000000000000000001.seg was written by the inbox
  // writer of commit 23187da (version 1: "MAINBOX1", the file as long as its
  // data) with these three messages.
  std::vector<RawMessage> expected;
  for (int i = 0; i < 3; ++i) {
    RawMessage m;
    m.topic = "meters/d" + std::to_string(i);
    m.payload = "{\"value\":" + std::to_string(i) + "}";
    m.payload.push_back('\0');
    m.qos = 1;
    m.retained = i == 1;
    m.dup = i == 2;
    m.received_ms = 1767225600000LL + i;
    expected.push_back(m);
  }
  TempDir dir;
  const auto path = dir.file("buffer.db");
  std::filesystem::create_directories(inbox_directory(path));
  const auto fixture =
      std::string(METER_SOURCE_DIR) + "/tests/data/inbox-v1/00000000000000000001.seg";
  std::filesystem::copy_file(fixture, inbox_segment_path(path, 1));
  CHECK(inbox_pending_bytes(path, {}) == 137 - 8);

  SECTION("read, and followed by a new writer's segment") {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    CHECK((*writer)->position().segment == 2);
    REQUIRE((*writer)->append(message(7)));
    auto batch = read_inbox(path, {}, 100, true);
    REQUIRE(batch);
    REQUIRE(batch->messages.size() == 4);
    for (std::size_t i = 0; i < 3; ++i) require_same(batch->messages[i], expected[i]);
    require_same(batch->messages[3], message(7));
    CHECK(batch->damaged.empty());
    CHECK(batch->finished == std::vector<std::int64_t>{1});
  }
  SECTION("absorbed into the raw log, once") {
    auto buffer = open_buffer(path);
    auto absorbed = buffer->absorb_inbox(100, false);
    REQUIRE(absorbed);
    CHECK(absorbed->messages == 3);
    CHECK(absorbed->damaged.empty());
    auto again = buffer->absorb_inbox(100, false);
    REQUIRE(again);
    CHECK(again->messages == 0);
    auto status = buffer->status();
    REQUIRE(status);
    CHECK(status->raw_messages == 3);
  }
  SECTION("a version 1 torn tail is still reported as before") {
    {
      std::ofstream out(inbox_segment_path(path, 1), std::ios::binary | std::ios::app);
      out << std::string("\x40\x00\x00\x00\x12\x34", 6);
    }
    auto batch = read_inbox(path, {}, 100, false);
    REQUIRE(batch);
    CHECK(batch->messages.size() == 3);
    REQUIRE(batch->damaged.size() == 1);
    CHECK(batch->damaged[0].second == "an incomplete record header at byte 137 (6 bytes not read)");
  }
}
