// The disk budget (buffer.max_size_mib): once the buffer uses it, the daemon
// stops acknowledging — the broker keeps the messages — and deletes nothing;
// when there is room again (here: a larger budget, as after the uplink
// confirmed and pruned) it resumes by itself and every message arrives once.
#include <catch2/catch.hpp>
#include <map>
#include <sstream>
#include <thread>

#include "support/daemon_rig.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

TEST_CASE("config: buffer.max_size_mib is the disk budget", "[config]") {
  auto parsed = parse_config(
      "gateway_id: g\nbuffer:\n  max_size_mib: 512\nmetrics:\n  energy: {kind: counter, unit: "
      "kWh}\nmappings:\n  - topic: \"m/#\"\n",
      "<test>");
  REQUIRE(parsed);
  CHECK(parsed->buffer.max_size_bytes == 512LL * 1024 * 1024);
  auto too_small = parse_config(
      "gateway_id: g\nbuffer:\n  max_size_mib: 8\nmetrics:\n  energy: {kind: counter, unit: "
      "kWh}\nmappings:\n  - topic: \"m/#\"\n",
      "agent.yaml");
  REQUIRE_FALSE(too_small);
  CHECK(too_small.error().message.find("agent.yaml:3:17") != std::string::npos);
  CHECK(too_small.error().message.find("at least 16 MiB") != std::string::npos);
}

TEST_CASE("daemon: at its disk budget it stops acknowledging, deletes nothing, and resumes",
          "[daemon][budget]") {
  Mosquitto broker;
  DaemonRig rig("budget-gw", broker.port(),
                "  keepalive: 2s\n  reconnect: {min: 100ms, max: 500ms}\n");
  const auto& metrics = rig.metrics();
  REQUIRE(wait_until([&] { return metrics.mqtt_connected.load(); }, 20s));
  {
    TestPublisher publisher(broker.port(), "budget-publisher-1");
    for (long i = 0; i < 20; ++i) publisher.publish("meters/d1", d1_reading(i));
  }
  REQUIRE(wait_until([&] { return metrics.new_measurements.load() == 20; }, 20s));

  // A budget the buffer already uses: the next pass of the normalizer notices.
  rig.daemon().set_disk_budget(1);
  REQUIRE(wait_until([&] { return metrics.over_budget.load(); }, 20s));
  const auto acknowledged_before = metrics.appended.load();
  std::vector<std::string> more;
  for (long i = 20; i < 120; ++i) more.push_back(d1_reading(i));
  rig.publish_from_other_processes("meters/d1", more);
  REQUIRE(wait_until([&] { return metrics.append_failures.load() >= 3; }, 30s));
  CHECK(metrics.appended.load() == acknowledged_before);  // nothing acknowledged meanwhile
  CHECK(metrics.new_measurements.load() == 20);           // and nothing deleted
  CHECK(metrics.append_blocked.load());

  rig.daemon().set_disk_budget(0);  // room again
  REQUIRE(wait_until([&] { return metrics.new_measurements.load() == 120; }, 60s, 50ms));
  CHECK_FALSE(metrics.over_budget.load());
  CHECK(rig.stop() == 0);

  const auto seen = rig.values_stored();
  CHECK(seen.size() == 120);
  for (const auto& [value, count] : seen) {
    INFO("value " << value);
    CHECK(count == 1);
  }
  const auto log = rig.log();
  INFO(log);
  CHECK(log.find("reached its disk budget") != std::string::npos);
  CHECK(log.find("below its disk budget again") != std::string::npos);
}
