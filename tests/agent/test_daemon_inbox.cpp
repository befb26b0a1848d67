// The acknowledge path commits to the inbox (common/inbox.hpp); the normalizer
// takes it into the buffer. When the normalizer falls behind by more than the
// inbox may hold, acknowledgements wait for it (flow control) instead of
// failing: every message still arrives once, no commit is counted as failed.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "agent/daemon.hpp"
#include "common/timestamp.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

TEST_CASE("daemon: a full inbox holds acknowledgements back until the normalizer catches up",
          "[daemon][inbox]") {
  Mosquitto broker;
  TempDir dir;
  auto parsed = parse_config(
      "gateway_id: inbox-gw\n"
      "buffer:\n  path: " +
          dir.file("buffer.db") +
          "\n  durability: normal\n"
          "metrics:\n  energy: {kind: counter, unit: kWh}\n"
          "mappings:\n  - topic: \"meters/#\"\n"
          "mqtt:\n  host: 127.0.0.1\n  port: " +
          std::to_string(broker.port()) + "\n",
      "<test>");
  REQUIRE(parsed);
  std::ostringstream log_text;
  agent::Logger logger(log_text, false);
  agent::DaemonOptions options;
  options.inbox_max_bytes = 2048;  // about ten messages; the normalizer gathers for 100 ms
  agent::Daemon daemon(*parsed, options, logger);
  int exit_code = -1;
  std::thread runner([&] { exit_code = daemon.run(); });
  const auto& metrics = daemon.metrics();
  REQUIRE(wait_until([&] { return metrics.mqtt_connected.load(); }, 20s));

  constexpr long kMessages = 400;
  {
    TestPublisher publisher(broker.port(), "inbox-publisher");
    for (long i = 0; i < kMessages; ++i) {
      publisher.publish("meters/d1", "{\"device_id\":\"d1\",\"timestamp\":\"" +
                                         format_timestamp(1767225600000LL + i * 1000) +
                                         "\",\"metric_type\":\"energy\",\"value\":" +
                                         std::to_string(i) + ",\"unit\":\"kWh\"}");
    }
  }
  REQUIRE(wait_until([&] { return metrics.new_measurements.load() == kMessages; }, 60s, 20ms));
  CHECK(metrics.inbox_full_waits.load() > 0);
  CHECK(metrics.append_failures.load() == 0);
  CHECK(metrics.appended.load() == kMessages);
  daemon.request_stop();
  runner.join();
  CHECK(exit_code == 0);

  // After a clean stop everything is in the raw log; the inbox holds only
  // the last (empty) segment the writer had open.
  BufferConfig config;
  config.path = dir.file("buffer.db");
  config.durability = Durability::normal;
  auto buffer = Buffer::open(config);
  REQUIRE(buffer);
  auto status = (*buffer)->status();
  REQUIRE(status);
  CHECK(status->raw_messages == kMessages);
  CHECK(status->inbox_bytes == 0);
  std::map<std::string, int> seen;
  REQUIRE((*buffer)->for_each_measurement([&](const Measurement& m) { ++seen[m.value]; }));
  CHECK(seen.size() == static_cast<std::size_t>(kMessages));
  for (const auto& [value, count] : seen) {
    INFO("value " << value);
    CHECK(count == 1);
  }
  INFO(log_text.str());
  CHECK(log_text.str().find("NOT acknowledging") == std::string::npos);
}
