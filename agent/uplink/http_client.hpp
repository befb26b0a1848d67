// The uplink's transport: one HTTP POST of a request body, over libcurl
// (HTTPS, certificate verification on unless configured off, optional client
// certificate). An interface, because it is the uplink's I/O seam: the one
// implementation is real; the uplink's unit tests (tests/agent/uplink/) script
// the answers of a fake one, and the end-to-end tests put a fault-injecting
// proxy in front of a real central service. The answer it returns
// (HttpAnswer, common/uplink/outcome.hpp) is classified there.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/config/config.hpp"
#include "common/uplink/outcome.hpp"

namespace meter::agent {

struct HttpPost {
  std::string url;
  std::string body;
  bool gzip = false;  // body is gzip: Content-Encoding: gzip
  std::string bearer_token;
  const std::atomic<bool>* abort = nullptr;  // set: the request ends at once (shutdown)
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual HttpAnswer post(const HttpPost& request) = 0;
};

// libcurl, one easy handle kept for connection reuse. Settings are taken from
// `config` at construction; a reload builds a new one.
class CurlTransport final : public HttpTransport {
 public:
  explicit CurlTransport(UplinkConfig config);
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;
  HttpAnswer post(const HttpPost& request) override;

 private:
  struct Handle;
  UplinkConfig config_;
  std::unique_ptr<Handle> handle_;
};

// curl_global_init, once per process (call before any thread uses curl).
void init_curl_once();

}  // namespace meter::agent
