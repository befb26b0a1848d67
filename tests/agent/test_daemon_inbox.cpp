// The acknowledge path commits to the inbox (common/buffer/inbox.hpp); the normalizer
// takes it into the buffer. When the normalizer falls behind by more than the
// inbox may hold, acknowledgements wait for it (flow control) instead of
// failing: every message still arrives once, no commit is counted as failed.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "support/daemon_rig.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

TEST_CASE("daemon: a full inbox holds acknowledgements back until the normalizer catches up",
          "[daemon][inbox]") {
  Mosquitto broker;
  agent::DaemonOptions options;
  options.inbox_max_bytes = 2048;  // about ten messages; the normalizer gathers for 100 ms
  DaemonRig rig("inbox-gw", broker.port(), "", options);
  const auto& metrics = rig.metrics();
  REQUIRE(wait_until([&] { return metrics.mqtt_connected.load(); }, 20s));

  constexpr long kMessages = 400;
  {
    TestPublisher publisher(broker.port(), "inbox-publisher");
    for (long i = 0; i < kMessages; ++i) publisher.publish("meters/d1", d1_reading(i));
  }
  REQUIRE(wait_until([&] { return metrics.new_measurements.load() == kMessages; }, 60s, 20ms));
  CHECK(metrics.inbox_full_waits.load() > 0);
  CHECK(metrics.append_failures.load() == 0);
  CHECK(metrics.appended.load() == kMessages);
  CHECK(rig.stop() == 0);

  // After a clean stop everything is in the raw log; the inbox holds only
  // the last (empty) segment the writer had open.
  auto status = rig.open_buffer()->status();
  REQUIRE(status);
  CHECK(status->raw_messages == kMessages);
  CHECK(status->inbox_bytes == 0);
  const auto seen = rig.values_stored();
  CHECK(seen.size() == static_cast<std::size_t>(kMessages));
  for (const auto& [value, count] : seen) {
    INFO("value " << value);
    CHECK(count == 1);
  }
  INFO(rig.log());
  CHECK(rig.log().find("NOT acknowledging") == std::string::npos);
}
