// The operations endpoint's routing (agent/ops/ops_endpoint.hpp).
#include <catch2/catch.hpp>

#include "agent/ops/ops_endpoint.hpp"

using namespace meter;
using namespace meter::agent;

TEST_CASE("ops endpoint: /healthz says whether MQTT is up and the buffer takes writes", "[ops]") {
  Metrics metrics;
  auto down = route_ops_request("/healthz", metrics, {}, 0);
  CHECK(down.status == 503);
  CHECK(down.body == "mqtt disconnected, buffer ok\n");
  metrics.mqtt_connected = true;
  auto up = route_ops_request("/healthz", metrics, {}, 0);
  CHECK(up.status == 200);
  CHECK(up.body == "mqtt connected, buffer ok\n");
  metrics.append_blocked = true;
  auto blocked = route_ops_request("/healthz", metrics, {}, 0);
  CHECK(blocked.status == 503);
  CHECK(blocked.body == "mqtt connected, buffer NOT accepting writes\n");
}

TEST_CASE("ops endpoint: with the batched connection, /healthz needs it up too", "[ops]") {
  Metrics metrics;
  metrics.mqtt_connected = true;
  metrics.batched_enabled = true;
  auto down = route_ops_request("/healthz", metrics, {}, 0);
  CHECK(down.status == 503);
  CHECK(down.body == "mqtt connected, batched connection disconnected, buffer ok\n");
  metrics.batched_connected = true;
  auto up = route_ops_request("/healthz", metrics, {}, 0);
  CHECK(up.status == 200);
  CHECK(up.body == "mqtt connected, batched connection connected, buffer ok\n");
}

TEST_CASE("ops endpoint: /metrics renders the agent's metrics and the others' at one time",
          "[ops]") {
  Metrics metrics;
  metrics.received = 42;
  std::int64_t asked_at = 0;
  auto response = route_ops_request(
      "/metrics", metrics,
      [&](std::int64_t now_ms) {
        asked_at = now_ms;
        return std::string("uplink_metric 1\n");
      },
      1767225600000);
  CHECK(response.status == 200);
  CHECK(response.content_type.find("version=0.0.4") != std::string::npos);
  CHECK(response.body.find(metrics.render_prometheus(1767225600000)) == 0);
  CHECK(response.body.find("42") != std::string::npos);
  CHECK(response.body.size() > 16);
  CHECK(response.body.substr(response.body.size() - 16) == "uplink_metric 1\n");
  CHECK(asked_at == 1767225600000);
}

TEST_CASE("ops endpoint: other paths are not found", "[ops]") {
  Metrics metrics;
  CHECK(route_ops_request("/", metrics, {}, 0).status == 404);
  CHECK(route_ops_request("/metrics/x", metrics, {}, 0).status == 404);
}
