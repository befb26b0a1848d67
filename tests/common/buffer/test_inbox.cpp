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
  {
    auto writer = InboxWriter::open(path, false, 0);
    REQUIRE(writer);
    for (int i = 0; i < 5; ++i) REQUIRE((*writer)->append(message(i)));
    torn_segment = (*writer)->position().segment;
  }
  const auto segment = inbox_segment_path(path, torn_segment);
  const auto full_size = std::filesystem::file_size(segment);
  // A crash after the first bytes of a sixth record: its header and half a body.
  {
    std::ofstream out(segment, std::ios::binary | std::ios::app);
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
    CHECK(batch->next == InboxPosition{torn_segment, static_cast<std::int64_t>(full_size)});
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
    const auto record = (full_size - 8) / 5;
    file.seekp(static_cast<std::streamoff>(8 + 2 * record + record - 3));
    file.put('#');
    file.close();
    auto damaged = read_inbox(path, {torn_segment, 0}, 100, false);
    REQUIRE(damaged);
    CHECK(damaged->messages.size() == 2);
    REQUIRE(damaged->damaged.size() == 1);
    CHECK(damaged->damaged[0].second.find("checksum") != std::string::npos);
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
    // Cut back to where it was.
    CHECK(std::filesystem::file_size(inbox_segment_path(path, position.segment)) ==
          static_cast<std::uintmax_t>(position.offset));
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
