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

#include "agent/daemon.hpp"
#include "common/timestamp.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

TEST_CASE("daemon: a full disk acknowledges nothing it did not store, and recovers",
          "[daemon][full_disk]") {
  Mosquitto broker;
  TempDir dir;
  auto parsed = parse_config(
      "gateway_id: disk-gw\n"
      "buffer:\n  path: " +
          dir.file("buffer.db") +
          "\n  durability: normal\n"
          "metrics:\n  energy: {kind: counter, unit: kWh}\n"
          "mappings:\n  - topic: \"meters/#\"\n"
          "mqtt:\n  host: 127.0.0.1\n  port: " +
          std::to_string(broker.port()) +
          "\n  keepalive: 1s\n  reconnect: {min: 100ms, max: 500ms}\n",
      "<test>");
  REQUIRE(parsed);
  std::ostringstream log_text;
  agent::Logger logger(log_text, false);
  agent::Daemon daemon(*parsed, {}, logger);
  int exit_code = -1;
  std::thread runner([&] { exit_code = daemon.run(); });
  const auto& metrics = daemon.metrics();

  auto reading = [](long i) {
    return "{\"device_id\":\"d1\"" +
           (i % 4 == 0
                ? std::string()
                : ",\"timestamp\":\"" + format_timestamp(1767225600000LL + i * 1000) + "\"") +
           ",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) + ",\"unit\":\"kWh\"}";
  };
  auto open_buffer = [&] {
    BufferConfig config;
    config.path = dir.file("buffer.db");
    config.durability = Durability::normal;
    auto opened = Buffer::open(config);
    REQUIRE(opened);
    return std::move(*opened);
  };

  REQUIRE(wait_until([&] { return metrics.mqtt_connected.load(); }, 20s));
  {
    TestPublisher publisher(broker.port(), "disk-publisher-1");
    for (long i = 0; i < 20; ++i) publisher.publish("meters/d1", reading(i));
  }
  REQUIRE(wait_until([&] { return metrics.normalized.load() == 20; }, 20s));

  // The disk is full: a few pages of room left.
  const auto pages = open_buffer()->page_count();
  REQUIRE(pages);
  daemon.set_max_page_count(*pages + 4);
  {
    // From other processes: Paho runs every client of a process on one
    // receive thread, so an in-process publisher would wait behind the
    // daemon's blocked callback. mosquitto_pub -q 1 exits 0 after its PUBACK.
    std::string script = "set -e\n";
    for (long i = 20; i < 320; ++i) {
      script += "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                " -q 1 -t meters/d1 -m '" + reading(i) + "'\n";
    }
    write_text_file(dir.file("publish.sh"), script);
    REQUIRE(std::system(("sh " + dir.file("publish.sh")).c_str()) == 0);
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
  daemon.request_stop();
  runner.join();
  CHECK(exit_code == 0);

  std::map<std::string, int> seen;
  auto buffer = open_buffer();
  REQUIRE(buffer->for_each_measurement([&](const Measurement& m) { ++seen[m.value]; }));
  for (long i = 0; i < 320; ++i) {
    INFO("reading " << i);
    REQUIRE(seen[std::to_string(i)] == 1);
  }
  CHECK(seen.size() == 320);
  const auto log = log_text.str();
  CHECK(log.find("NOT acknowledging") != std::string::npos);
  CHECK(log.find("accepts writes again") != std::string::npos);
  INFO(log);
  CHECK(metrics.append_failures.load() >= 7);
}
