// The inbox's readers (common/buffer/inbox.hpp): records in order up to the
// end of data, and what a closed segment's tail is.
#include <algorithm>

#include "common/buffer/inbox.hpp"
#include "common/buffer/inbox_format.hpp"

namespace meter {

using namespace inbox_format;

namespace {

// Where in `rest` (a version 2 segment's bytes after a record that does not
// read) the first complete, verified record starts, if any: a bad record
// followed by a good one is damage; nothing good after it is the end of data.
std::optional<std::size_t> next_valid_record(const std::string& rest, std::uint64_t salt) {
  for (std::size_t at = 1; at + kRecordHeaderBytesV2 <= rest.size(); ++at) {
    if (rest[at] == '\0' && rest[at + 1] == '\0' && rest[at + 2] == '\0' && rest[at + 3] == '\0')
      continue;  // a zero length: the common case in a preallocated tail
    const auto length = verified_length(rest.data() + at, salt);
    if (!length || rest.size() - at - kRecordHeaderBytesV2 < *length) continue;
    const char* body = rest.data() + at + kRecordHeaderBytesV2;
    if (record_checksum(body, *length) == get_u32(rest.data() + at + 4)) return at;
  }
  return std::nullopt;
}

bool all_zero(const std::string& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

// Where reading a segment's records stopped, and why.
struct Stop {
  std::int64_t at = 0;  // the first byte not read
  std::string problem;  // what the bytes at `at` are, when not a record
  bool limit = false;   // max_messages reached: more may follow
};

// Version 1: the file ends where the data ends; a record that does not read is
// a torn tail (or damage), whatever follows.
Result<Stop> read_records_v1(const SegmentFile& file, std::int64_t start, std::size_t max_messages,
                             InboxBatch& batch) {
  auto data = file.read_rest(start);
  if (!data) return data.error();
  std::size_t at = 0;
  Stop stop;
  while (batch.messages.size() < max_messages) {
    const std::size_t left = data->size() - at;
    if (left == 0) break;
    if (left < kRecordHeaderBytesV1) {
      stop.problem = "an incomplete record header";
      break;
    }
    const std::uint32_t length = get_u32(data->data() + at);
    const std::uint32_t crc = get_u32(data->data() + at + 4);
    if (length < kBodyFixedBytes || length > kInboxRecordMaxBytes) {
      stop.problem = "a record length of " + std::to_string(length);
      break;
    }
    if (left - kRecordHeaderBytesV1 < length) {
      stop.problem = "an incomplete record";
      break;
    }
    const char* body = data->data() + at + kRecordHeaderBytesV1;
    if (record_checksum(body, length) != crc) {
      stop.problem = "a record whose checksum does not match";
      break;
    }
    const std::uint32_t topic_length = get_u32(body + 10);
    if (topic_length > length - kBodyFixedBytes) {
      stop.problem = "a record whose topic length exceeds it";
      break;
    }
    batch.messages.push_back(decode_body(body, length, topic_length));
    at += kRecordHeaderBytesV1 + length;
    batch.bytes += static_cast<std::int64_t>(kRecordHeaderBytesV1 + length);
  }
  stop.at = start + static_cast<std::int64_t>(at);
  stop.limit = batch.messages.size() >= max_messages && at < data->size();
  return stop;
}

// Version 2: reads in chunks up to the first bytes that are not a record of
// this segment (zeros ahead of the data, a torn record, damage).
Result<Stop> read_records_v2(const SegmentFile& file, std::int64_t start, std::size_t max_messages,
                             InboxBatch& batch) {
  std::string window;  // the file's bytes from window_at
  std::int64_t window_at = start;
  std::int64_t at = start;
  auto available = [&] { return window_at + static_cast<std::int64_t>(window.size()) - at; };
  auto fill = [&](std::size_t need) -> Status {
    if (available() >= static_cast<std::int64_t>(need)) return Ok{};
    auto data = file.read(at, std::max(need, kReadChunkBytes));
    if (!data) return data.error();
    window = std::move(*data);
    window_at = at;
    return Ok{};
  };
  Stop stop;
  for (;;) {
    if (batch.messages.size() >= max_messages) {
      stop.limit = true;
      break;
    }
    if (auto filled = fill(kRecordHeaderBytesV2); !filled) return filled.error();
    if (available() < static_cast<std::int64_t>(kRecordHeaderBytesV2)) {
      stop.problem = "an incomplete record header";
      break;
    }
    const auto length = verified_length(window.data() + (at - window_at), file.salt());
    if (!length) {
      stop.problem = "a record header that does not verify";
      break;
    }
    if (auto filled = fill(kRecordHeaderBytesV2 + *length); !filled) return filled.error();
    if (available() < static_cast<std::int64_t>(kRecordHeaderBytesV2 + *length)) {
      stop.problem = "an incomplete record";
      break;
    }
    const char* header = window.data() + (at - window_at);
    const char* body = header + kRecordHeaderBytesV2;
    if (record_checksum(body, *length) != get_u32(header + 4)) {
      stop.problem = "a record whose checksum does not match";
      break;
    }
    const std::uint32_t topic_length = get_u32(body + 10);
    if (topic_length > *length - kBodyFixedBytes) {
      stop.problem = "a record whose topic length exceeds it";
      break;
    }
    batch.messages.push_back(decode_body(body, *length, topic_length));
    at += static_cast<std::int64_t>(kRecordHeaderBytesV2 + *length);
    batch.bytes += static_cast<std::int64_t>(kRecordHeaderBytesV2 + *length);
  }
  stop.at = at;
  return stop;
}

// A closed version 2 segment stopped at `stop`: the end of data (nothing but
// zeros after it: "" returned), damage (a valid record further on), or a
// record cut short by a crash or power loss (nothing valid after it).
Result<std::string> classify_v2_tail(const SegmentFile& file, const Stop& stop) {
  auto rest = file.read_rest(stop.at);
  if (!rest) return rest.error();
  if (all_zero(*rest)) return std::string();
  const auto not_read = " (" + std::to_string(rest->size()) + " bytes not read)";
  if (const auto valid = next_valid_record(*rest, file.salt())) {
    return stop.problem + " at byte " + std::to_string(stop.at) +
           ", followed by a valid record at byte " +
           std::to_string(stop.at + static_cast<std::int64_t>(*valid)) + not_read;
  }
  return "an incomplete record at byte " + std::to_string(stop.at) + not_read +
         ": nothing valid follows it, a write cut short by a crash or power loss";
}

// Where a version 2 segment's data ends (from `start`), hopping over record
// headers without reading the bodies: for status and the disk budget.
std::int64_t data_end_v2(const SegmentFile& file, std::int64_t start) {
  std::string window;
  std::int64_t window_at = start;
  std::int64_t at = start;
  for (;;) {
    if (at + static_cast<std::int64_t>(kRecordHeaderBytesV2) >
        window_at + static_cast<std::int64_t>(window.size())) {
      auto data = file.read(at, kReadChunkBytes);
      if (!data || data->size() < kRecordHeaderBytesV2) return at;
      window = std::move(*data);
      window_at = at;
    }
    const auto length = verified_length(window.data() + (at - window_at), file.salt());
    if (!length) return at;
    at += static_cast<std::int64_t>(kRecordHeaderBytesV2 + *length);
  }
}

}  // namespace

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
    const auto path = inbox_segment_path(buffer_path, number);
    auto file = SegmentFile::open(path);
    if (!file) return file.error();
    const auto& segment = **file;
    if (segment.version() == 0) {
      const auto& head = segment.head();
      const bool short_header = head.size() < static_cast<std::size_t>(kMagicBytes) ||
                                (head.compare(0, kMagicBytes, kMagicV2) == 0 &&
                                 head.size() < static_cast<std::size_t>(kSegmentHeaderBytesV2));
      if (short_header) {
        if (!closed) break;  // just created
        batch.damaged.emplace_back(number, "no segment header");
      } else {
        if (!closed) return Error{path + ": not an inbox segment (bad header)"};
        batch.damaged.emplace_back(number, "not an inbox segment header");
      }
      batch.next = {number + 1, 0};
      continue;
    }
    const std::int64_t header_bytes = segment.header_bytes();
    const std::int64_t start =
        number == from.segment ? std::max(from.offset, header_bytes) : header_bytes;
    auto stop = segment.version() == 2 ? read_records_v2(segment, start, max_messages, batch)
                                       : read_records_v1(segment, start, max_messages, batch);
    if (!stop) return stop.error();
    batch.next = {number, stop->at};
    if (stop->limit) break;
    if (!closed) break;  // the writer's segment: the rest arrives later
    std::string damage;
    if (segment.version() == 2) {
      auto tail = classify_v2_tail(segment, *stop);
      if (!tail) return tail.error();
      damage = std::move(*tail);
    } else if (!stop->problem.empty()) {
      auto size = segment.size();
      if (!size) return size.error();
      damage = stop->problem + " at byte " + std::to_string(stop->at) + " (" +
               std::to_string(*size - stop->at) + " bytes not read)";
    }
    if (!damage.empty()) {
      batch.damaged.emplace_back(number, damage);
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
    auto file = SegmentFile::open(inbox_segment_path(buffer_path, number));
    if (!file || (*file)->version() == 0) continue;
    const auto& segment = **file;
    const std::int64_t start = number == from.segment
                                   ? std::max(from.offset, segment.header_bytes())
                                   : segment.header_bytes();
    if (segment.version() == 2) {
      total += std::max<std::int64_t>(0, data_end_v2(segment, start) - start);
    } else if (auto size = segment.size()) {
      total += std::max<std::int64_t>(0, *size - start);
    }
  }
  return total;
}

}  // namespace meter
