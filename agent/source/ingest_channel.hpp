// The socket between the daemon and one ingest worker process
// (agent/source/ingest_workers.hpp): a SOCK_STREAM socketpair carrying
// frames [u32 length][u8 type][body], little-endian.
//
//   daemon -> worker  'S' settings (once, first): the connection to make
//   worker -> daemon  'M' a message as received (the worker's callback then
//                         waits: returning from it is the PUBACK)
//   daemon -> worker  'A' committed: the message is in the inbox and synced
//                     'R' refused (disk budget, full inbox, a failing disk):
//                         not acknowledged; the worker retries after a backoff
//   worker -> daemon  'C' connected / 'L' connection lost (for status)
//
// Pure encoding here; the worker and the pool do the I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.hpp"
#include "common/model/raw_message.hpp"
#include "common/util/result.hpp"

namespace meter::agent {

enum class FrameType : char {
  settings = 'S',
  message = 'M',
  committed = 'A',
  refused = 'R',
  connected = 'C',
  connection_lost = 'L',
};

// The largest frame either side accepts: a message as large as the inbox takes.
inline constexpr std::uint32_t kMaxFrameBytes = 512U * 1024U * 1024U + 64U * 1024U;

// What a worker connects with. A retired worker (`drain`) resumes its old
// session only to empty it (agent/source/ingest_worker.cpp).
struct WorkerSettings {
  MqttConfig mqtt;
  std::string gateway_id;
  std::string client_id;                   // the worker's own, stable across restarts
  std::vector<std::string> filters;        // $share/<group>/<filter>, subscribed at QoS 1
  std::vector<std::string> stale_filters;  // unsubscribed on connect (a reload removed them)
  bool drain = false;
  LogLevel log_level = LogLevel::info;

  friend bool operator==(const WorkerSettings&, const WorkerSettings&) = default;
};

struct Frame {
  FrameType type = FrameType::message;
  std::string body;
};

std::string encode_frame(FrameType type, std::string_view body);
std::string encode_settings(const WorkerSettings& settings);
Result<WorkerSettings> decode_settings(std::string_view body);
std::string encode_message(const RawMessage& message);
Result<RawMessage> decode_message(std::string_view body);

// Splits a byte stream into frames (a non-blocking reader feeds what it got).
class FrameSplitter {
 public:
  void feed(std::string_view bytes) { pending_.append(bytes); }
  // The next whole frame; nullopt until one is complete. An error (a length
  // beyond kMaxFrameBytes, an unknown type) means the stream is broken.
  Result<std::optional<Frame>> next();

 private:
  std::string pending_;
  std::size_t start_ = 0;
};

// Blocking helpers for the worker's side (EINTR retried).
Status write_all(int fd, std::string_view bytes);
// The next frame; nullopt when the other side closed the socket.
Result<std::optional<Frame>> read_frame(int fd, FrameSplitter& splitter);

}  // namespace meter::agent
