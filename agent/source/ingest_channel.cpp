#include "agent/source/ingest_channel.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/buffer/inbox_format.hpp"

namespace meter::agent {
namespace {

using inbox_format::get_i64;
using inbox_format::get_u32;
using inbox_format::put_i64;
using inbox_format::put_u32;

constexpr std::size_t kFrameHeaderBytes = 5;

bool known_type(char type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::settings:
    case FrameType::message:
    case FrameType::committed:
    case FrameType::refused:
    case FrameType::connected:
    case FrameType::connection_lost:
      return true;
  }
  return false;
}

// Settings: a sequence of [u32 length][bytes] fields in a fixed order.
void put_field(std::string& out, std::string_view value) {
  put_u32(out, static_cast<std::uint32_t>(value.size()));
  out.append(value);
}

class FieldReader {
 public:
  explicit FieldReader(std::string_view body) : body_(body) {}
  bool text(std::string& out) {
    if (body_.size() < 4) return false;
    const std::uint32_t length = get_u32(body_.data());
    if (body_.size() - 4 < length) return false;
    out.assign(body_.substr(4, length));
    body_.remove_prefix(4 + length);
    return true;
  }
  template <typename Integer>
  bool number(Integer& out) {
    std::string value;
    if (!text(value) || value.empty() || value.size() > 20) return false;
    long long parsed = 0;
    std::size_t used = 0;
    try {
      parsed = std::stoll(value, &used);
    } catch (const std::exception&) {
      return false;
    }
    if (used != value.size()) return false;
    out = static_cast<Integer>(parsed);
    return true;
  }
  bool flag(bool& out) {
    std::string value;
    if (!text(value) || (value != "0" && value != "1")) return false;
    out = value == "1";
    return true;
  }
  bool list(std::vector<std::string>& out) {
    std::size_t count = 0;
    if (!number(count) || count > 100000) return false;
    out.resize(count);
    for (auto& item : out) {
      if (!text(item)) return false;
    }
    return true;
  }
  bool done() const { return body_.empty(); }

 private:
  std::string_view body_;
};

}  // namespace

std::string encode_frame(FrameType type, std::string_view body) {
  std::string frame;
  frame.reserve(kFrameHeaderBytes + body.size());
  put_u32(frame, static_cast<std::uint32_t>(body.size()));
  frame.push_back(static_cast<char>(type));
  frame.append(body);
  return frame;
}

std::string encode_settings(const WorkerSettings& settings) {
  std::string out;
  const auto& m = settings.mqtt;
  auto number = [&](long long value) { put_field(out, std::to_string(value)); };
  auto flag = [&](bool value) { put_field(out, value ? "1" : "0"); };
  auto list = [&](const std::vector<std::string>& items) {
    number(static_cast<long long>(items.size()));
    for (const auto& item : items) put_field(out, item);
  };
  put_field(out, m.host);
  number(m.port);
  put_field(out, m.client_id);
  number(m.protocol_version);
  number(m.keepalive_ms);
  number(m.session_expiry_ms);
  put_field(out, m.username);
  put_field(out, m.password_file);
  put_field(out, m.password_env);
  flag(m.tls.enabled);
  put_field(out, m.tls.ca_file);
  put_field(out, m.tls.cert_file);
  put_field(out, m.tls.key_file);
  flag(m.tls.verify);
  number(m.reconnect_min_ms);
  number(m.reconnect_max_ms);
  put_field(out, m.status_topic_prefix);
  number(m.ingest_workers);
  put_field(out, settings.gateway_id);
  put_field(out, settings.client_id);
  list(settings.filters);
  list(settings.stale_filters);
  flag(settings.drain);
  number(static_cast<int>(settings.log_level));
  return out;
}

Result<WorkerSettings> decode_settings(std::string_view body) {
  WorkerSettings settings;
  auto& m = settings.mqtt;
  FieldReader in(body);
  int log_level = 0;
  const bool ok = in.text(m.host) && in.number(m.port) && in.text(m.client_id) &&
                  in.number(m.protocol_version) && in.number(m.keepalive_ms) &&
                  in.number(m.session_expiry_ms) && in.text(m.username) &&
                  in.text(m.password_file) && in.text(m.password_env) && in.flag(m.tls.enabled) &&
                  in.text(m.tls.ca_file) && in.text(m.tls.cert_file) && in.text(m.tls.key_file) &&
                  in.flag(m.tls.verify) && in.number(m.reconnect_min_ms) &&
                  in.number(m.reconnect_max_ms) && in.text(m.status_topic_prefix) &&
                  in.number(m.ingest_workers) && in.text(settings.gateway_id) &&
                  in.text(settings.client_id) && in.list(settings.filters) &&
                  in.list(settings.stale_filters) && in.flag(settings.drain) &&
                  in.number(log_level) && in.done();
  if (!ok || log_level < 0 || log_level > static_cast<int>(LogLevel::debug)) {
    return Error{"ingest worker: unreadable settings from the daemon"};
  }
  settings.log_level = static_cast<LogLevel>(log_level);
  return settings;
}

// [i64 received_ms][u8 qos][u8 flags: 1 retained, 2 dup][u32 topic length][topic][payload]
std::string encode_message(const RawMessage& message) {
  std::string out;
  out.reserve(14 + message.topic.size() + message.payload.size());
  put_i64(out, message.received_ms);
  out.push_back(static_cast<char>(message.qos));
  out.push_back(static_cast<char>((message.retained ? 1 : 0) | (message.dup ? 2 : 0)));
  put_u32(out, static_cast<std::uint32_t>(message.topic.size()));
  out.append(message.topic);
  out.append(message.payload);
  return out;
}

Result<RawMessage> decode_message(std::string_view body) {
  constexpr std::size_t kFixed = 14;
  if (body.size() < kFixed) return Error{"ingest worker: a message frame is too short"};
  const std::uint32_t topic_length = get_u32(body.data() + 10);
  if (body.size() - kFixed < topic_length) {
    return Error{"ingest worker: a message frame's topic runs past its end"};
  }
  const auto qos = static_cast<unsigned char>(body[8]);
  const auto flags = static_cast<unsigned char>(body[9]);
  if (qos > 2 || (flags & ~3U) != 0) return Error{"ingest worker: a message frame's flags"};
  RawMessage message;
  message.received_ms = get_i64(body.data());
  message.qos = qos;
  message.retained = (flags & 1U) != 0;
  message.dup = (flags & 2U) != 0;
  message.topic.assign(body.substr(kFixed, topic_length));
  message.payload.assign(body.substr(kFixed + topic_length));
  return message;
}

Result<std::optional<Frame>> FrameSplitter::next() {
  const std::size_t available = pending_.size() - start_;
  if (available < kFrameHeaderBytes) {
    if (start_ > 0 && available == 0) {
      pending_.clear();
      start_ = 0;
    }
    return std::optional<Frame>();
  }
  const char* header = pending_.data() + start_;
  const std::uint32_t length = get_u32(header);
  if (length > kMaxFrameBytes) return Error{"a frame of " + std::to_string(length) + " bytes"};
  if (!known_type(header[4])) return Error{"a frame of unknown type"};
  if (available - kFrameHeaderBytes < length) return std::optional<Frame>();
  Frame frame;
  frame.type = static_cast<FrameType>(header[4]);
  frame.body.assign(header + kFrameHeaderBytes, length);
  start_ += kFrameHeaderBytes + length;
  if (start_ == pending_.size()) {
    pending_.clear();
    start_ = 0;
  } else if (start_ > 64 * 1024 && start_ > pending_.size() / 2) {
    pending_.erase(0, start_);
    start_ = 0;
  }
  return std::optional<Frame>(std::move(frame));
}

Status write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{std::string("write: ") + std::strerror(n < 0 ? errno : EPIPE)};
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return Ok{};
}

Result<std::optional<Frame>> read_frame(int fd, FrameSplitter& splitter) {
  char chunk[64 * 1024];
  for (;;) {
    auto frame = splitter.next();
    if (!frame || *frame) return frame;
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{std::string("read: ") + std::strerror(errno)};
    if (n == 0) return std::optional<Frame>();
    splitter.feed(std::string_view(chunk, static_cast<std::size_t>(n)));
  }
}

}  // namespace meter::agent
