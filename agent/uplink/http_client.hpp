// The uplink's transport: one HTTP POST of a request body, over libcurl
// (HTTPS, certificate verification on unless configured off, optional client
// certificate). An interface, because it is the uplink's I/O seam; the one
// implementation is real, and tests put a fault-injecting proxy in front of a
// real central service rather than replacing it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/config/config.hpp"

namespace meter::agent {

struct HttpPost {
  std::string url;
  std::string body;
  bool gzip = false;  // body is gzip: Content-Encoding: gzip
  std::string bearer_token;
  const std::atomic<bool>* abort = nullptr;  // set: the request ends at once (shutdown)
};

struct HttpOutcome {
  // 0: no HTTP response (connection refused or reset, timeout, TLS failure).
  long status = 0;
  std::string body;
  std::string transport_error;                 // when status is 0: what curl said
  std::optional<std::int64_t> retry_after_ms;  // Retry-After, seconds or HTTP date
  std::int64_t bytes_sent = 0;                 // request body bytes put on the wire
  bool tls_failure = false;  // the server's certificate could not be verified (or TLS failed)
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual HttpOutcome post(const HttpPost& request) = 0;
};

// libcurl, one easy handle kept for connection reuse. Settings are taken from
// `config` at construction; a reload builds a new one.
class CurlTransport final : public HttpTransport {
 public:
  explicit CurlTransport(const UplinkConfig& config);
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;
  HttpOutcome post(const HttpPost& request) override;

 private:
  struct Handle;
  UplinkConfig config_;
  std::unique_ptr<Handle> handle_;
};

// curl_global_init, once per process (call before any thread uses curl).
void init_curl_once();

}  // namespace meter::agent
