#include "common/buffer/inbox_format.hpp"

#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "common/buffer/inbox.hpp"

namespace meter::inbox_format {

std::string errno_text(int error) { return std::strerror(error); }

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

void put_u64(std::string& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
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

std::uint64_t get_u64(const char* data) { return static_cast<std::uint64_t>(get_i64(data)); }

std::uint32_t header_check(std::uint64_t salt, std::uint32_t length, std::uint32_t body_crc) {
  // On the stack: a reader checks it at every record, and a damaged tail's
  // scan at every byte.
  char bytes[16];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((salt >> (8 * i)) & 0xFF);
  for (int i = 0; i < 4; ++i) {
    bytes[8 + i] = static_cast<char>((length >> (8 * i)) & 0xFF);
    bytes[12 + i] = static_cast<char>((body_crc >> (8 * i)) & 0xFF);
  }
  return record_checksum(bytes, sizeof bytes);
}

void encode_body(const RawMessage& message, std::string& record) {
  record.clear();
  record.append(kRecordHeaderBytesV2, '\0');
  put_i64(record, message.received_ms);
  record.push_back(static_cast<char>(message.qos));
  record.push_back(static_cast<char>((message.retained ? 1 : 0) | (message.dup ? 2 : 0)));
  put_u32(record, static_cast<std::uint32_t>(message.topic.size()));
  record += message.topic;
  record += message.payload;
}

void seal_record(std::uint64_t salt, std::string& record) {
  const std::size_t body = record.size() - kRecordHeaderBytesV2;
  const auto length = static_cast<std::uint32_t>(body);
  const std::uint32_t body_crc = record_checksum(record.data() + kRecordHeaderBytesV2, body);
  std::string header;
  put_u32(header, length);
  put_u32(header, body_crc);
  put_u32(header, header_check(salt, length, body_crc));
  record.replace(0, kRecordHeaderBytesV2, header);
}

std::optional<std::uint32_t> verified_length(const char* data, std::uint64_t salt) {
  const std::uint32_t length = get_u32(data);
  if (length < kBodyFixedBytes || length > kInboxRecordMaxBytes) return std::nullopt;
  if (header_check(salt, length, get_u32(data + 4)) != get_u32(data + 8)) return std::nullopt;
  return length;
}

RawMessage decode_body(const char* body, std::uint32_t length, std::uint32_t topic_length) {
  RawMessage message;
  message.received_ms = get_i64(body);
  message.qos = static_cast<unsigned char>(body[8]);
  message.retained = (body[9] & 1) != 0;
  message.dup = (body[9] & 2) != 0;
  message.topic.assign(body + kBodyFixedBytes, topic_length);
  message.payload.assign(body + kBodyFixedBytes + topic_length,
                         length - kBodyFixedBytes - topic_length);
  return message;
}

std::vector<std::int64_t> list_segments(const std::string& directory) {
  std::vector<std::int64_t> numbers;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const auto name = entry.path().filename().string();
    if (name.size() != 24 || name.compare(20, 4, ".seg") != 0) continue;
    if (!std::all_of(name.begin(), name.begin() + 20, [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    numbers.push_back(std::stoll(name.substr(0, 20)));
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

}  // namespace meter::inbox_format
