// A full disk (SQLite's max_page_count on the daemon's connections, set
// through Daemon::set_max_page_count) while QoS 1 messages arrive: the
// acknowledge path does not return (so nothing is acknowledged that is not
// stored), blocks longer than 1.5 x keepalive (the broker drops the
// connection and keeps the messages), and the agent recovers by itself once
// there is room: every message is then stored, each reading once.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <sstream>
#include <thread>

#include "support/daemon_rig.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

TEST_CASE("daemon: a full disk acknowledges nothing it did not store, and recovers",
          "[daemon][full_disk]") {
  Mosquitto broker;
  DaemonRig rig("disk-gw", broker.port(),
                "  keepalive: 1s\n  reconnect: {min: 100ms, max: 500ms}\n");
  auto& daemon = rig.daemon();
  const auto& metrics = rig.metrics();
  auto reading = [](long i) { return d1_reading(i, i % 4 != 0); };
  auto open_buffer = [&] { return rig.open_buffer(); };

  REQUIRE(wait_until([&] { return metrics.mqtt_connected.load(); }, 20s));
  {
    TestPublisher publisher(broker.port(), "disk-publisher-1");
    for (long i = 0; i < 20; ++i) publisher.publish("meters/d1", reading(i));
  }
  REQUIRE(wait_until([&] { return metrics.normalized.load() == 20; }, 20s));

  // The disk is full: a few pages of room left.
  daemon.set_max_page_count(rig.page_count() + 4);
  {
    std::vector<std::string> more;
    for (long i = 20; i < 320; ++i) more.push_back(reading(i));
    rig.publish_from_other_processes("meters/d1", more);
  }
  // Blocked for longer than 1.5 x keepalive (retry delays 20 ms doubling: 7 failures > 2.5 s).
  REQUIRE(wait_until([&] { return metrics.append_failures.load() >= 7; }, 30s));
  const auto stored_while_full = metrics.appended.load();
  CHECK(stored_while_full < 320);
  {
    auto status = open_buffer()->status();
    REQUIRE(status);
    // Everything acknowledged is stored (appended counts exactly the commits).
    CHECK(status->raw_messages == stored_while_full);
  }

  daemon.set_max_page_count(0);  // room again
  REQUIRE(wait_until(
      [&] { return metrics.normalized.load() >= 320 && metrics.new_measurements.load() == 320; },
      60s, 50ms));
  CHECK(rig.stop() == 0);

  auto seen = rig.values_stored();
  for (long i = 0; i < 320; ++i) {
    INFO("reading " << i);
    REQUIRE(seen[std::to_string(i)] == 1);
  }
  CHECK(seen.size() == 320);
  const auto log = rig.log();
  CHECK(log.find("NOT acknowledging") != std::string::npos);
  CHECK(log.find("accepts writes again") != std::string::npos);
  INFO(log);
  CHECK(metrics.append_failures.load() >= 7);
}
