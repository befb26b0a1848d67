#include "agent/ops/ops_endpoint.hpp"

namespace meter::agent {

HttpResponse route_ops_request(const std::string& path, const Metrics& metrics,
                               const MoreMetrics& more_metrics, std::int64_t now_ms) {
  if (path == "/healthz") {
    // With mqtt.acknowledge: batched the readings come on the batched
    // connection: it must be up too.
    const bool batched_down = metrics.batched_enabled && !metrics.batched_connected;
    const bool healthy = metrics.mqtt_connected && !batched_down && !metrics.append_blocked;
    return HttpResponse{
        healthy ? 200 : 503, "text/plain; charset=utf-8",
        std::string(metrics.mqtt_connected ? "mqtt connected" : "mqtt disconnected") +
            (!metrics.batched_enabled ? ""
             : batched_down           ? ", batched connection disconnected"
                                      : ", batched connection connected") +
            (metrics.append_blocked ? ", buffer NOT accepting writes\n" : ", buffer ok\n")};
  }
  if (path == "/metrics") {
    return HttpResponse{
        200, "text/plain; version=0.0.4; charset=utf-8",
        metrics.render_prometheus(now_ms) + (more_metrics ? more_metrics(now_ms) : std::string())};
  }
  return HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
}

void OpsEndpoint::listen(const std::string& listen) {
  server_.reset();
  if (listen.empty()) return;
  auto server = HttpServer::start(listen, [this](const std::string& path) {
    return route_ops_request(path, metrics_, more_metrics_, clock_.now_ms());
  });
  if (!server) {
    logger_.error("http", server.error().message);
    return;
  }
  server_ = std::move(*server);
  logger_.info("http", "serving /healthz and /metrics on " + listen + " (port " +
                           std::to_string(server_->port()) + ")");
}

}  // namespace meter::agent
