// The batched ingest connection's byte stream to the broker
// (agent/source/batched_source.hpp): TCP, or TLS over it (OpenSSL) as
// mqtt.tls says. With TLS the server's certificate is verified against
// tls.ca_file (or the system's CAs) and its name or address checked against
// mqtt.host, unless tls.verify is false; tls.cert_file/key_file present a
// client certificate. Blocking calls with time limits (poll(2)); used by one
// thread at a time. No MQTT here (agent/source/mqtt_wire.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/config/config.hpp"
#include "common/util/result.hpp"

namespace meter::agent {

class MqttTransport {
 public:
  // Connects to mqtt.host:effective_port() within `timeout` (name lookup, TCP,
  // the TLS handshake). The error names the address and the cause (refused,
  // timed out, certificate verify failed: ..., no such host).
  static Result<std::unique_ptr<MqttTransport>> connect(const MqttConfig& mqtt,
                                                        std::chrono::milliseconds timeout);
  virtual ~MqttTransport() = default;

  // Waits up to `timeout` (0: no wait) for bytes and appends what is there, at
  // most `max_bytes`, to `into`. Returns how many: 0 when none came in time. An
  // error when the peer closed the connection or it failed.
  virtual Result<std::size_t> read(std::string& into, std::size_t max_bytes,
                                   std::chrono::milliseconds timeout) = 0;
  // Sends all of `bytes`; an error when the connection fails or no byte could
  // be sent for `timeout`.
  virtual Status write(std::string_view bytes, std::chrono::milliseconds timeout) = 0;
  // Closes the connection (TLS: close_notify, best effort). Idempotent.
  virtual void close() = 0;
  // "tcp://host:port" or "ssl://host:port", for the log.
  virtual std::string describe() const = 0;
};

}  // namespace meter::agent
