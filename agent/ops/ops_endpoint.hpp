// The local operations endpoint: /healthz and /metrics over HTTP on a
// loopback address (http.listen), restarted when a reload changes it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "agent/ops/http_server.hpp"
#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "common/util/clock.hpp"

namespace meter::agent {

// Prometheus text from another part of the agent (the uplink's metrics), at `now_ms`.
using MoreMetrics = std::function<std::string(std::int64_t now_ms)>;

// The answer to a GET of `path`: no I/O, the endpoint's whole routing.
HttpResponse route_ops_request(const std::string& path, const Metrics& metrics,
                               const MoreMetrics& more_metrics, std::int64_t now_ms);

class OpsEndpoint {
 public:
  OpsEndpoint(const Metrics& metrics, MoreMetrics more_metrics, const Clock& clock, Logger& logger)
      : metrics_(metrics), more_metrics_(std::move(more_metrics)), clock_(clock), logger_(logger) {}

  // Serves on `listen` (empty: off), replacing a server on another address.
  // A failure to listen is logged; the agent runs on without the endpoint.
  void listen(const std::string& listen);
  void stop() { server_.reset(); }
  int port() const { return server_ ? server_->port() : 0; }

 private:
  const Metrics& metrics_;
  MoreMetrics more_metrics_;
  const Clock& clock_;
  Logger& logger_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace meter::agent
