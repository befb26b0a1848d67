// The disk budget (buffer.max_size_mib): once the buffer uses it, the daemon
// stops acknowledging — the broker keeps the messages — and deletes nothing;
// when there is room again (here: a larger budget, as after the uplink
// confirmed and pruned) it resumes by itself and every message arrives once.
#include <catch2/catch.hpp>
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
  TempDir dir;
  auto parsed = parse_config(
      "gateway_id: budget-gw\n"
      "buffer:\n  path: " +
          dir.file("buffer.db") +
          "\n  durability: normal\n"
          "metrics:\n  energy: {kind: counter, unit: kWh}\n"
          "mappings:\n  - topic: \"meters/#\"\n"
          "mqtt:\n  host: 127.0.0.1\n  port: " +
          std::to_string(broker.port()) +
          "\n  keepalive: 2s\n  reconnect: {min: 100ms, max: 500ms}\n",
      "<test>");
  REQUIRE(parsed);
  std::ostringstream log_text;
  agent::Logger logger(log_text, false);
  agent::Daemon daemon(*parsed, {}, logger);
  int exit_code = -1;
  std::thread runner([&] { exit_code = daemon.run(); });
  const auto& metrics = daemon.metrics();
  REQUIRE(wait_until([&] { return metrics.mqtt_connected.load(); }, 20s));
  auto reading = [](long i) {
    return "{\"device_id\":\"d1\",\"timestamp\":\"" + format_timestamp(1767225600000LL + i * 1000) +
           "\",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) + ",\"unit\":\"kWh\"}";
  };
  {
    TestPublisher publisher(broker.port(), "budget-publisher-1");
    for (long i = 0; i < 20; ++i) publisher.publish("meters/d1", reading(i));
  }
  REQUIRE(wait_until([&] { return metrics.new_measurements.load() == 20; }, 20s));

  // A budget the buffer already uses: the next pass of the normalizer notices.
  daemon.set_disk_budget(1);
  REQUIRE(wait_until([&] { return metrics.over_budget.load(); }, 20s));
  const auto acknowledged_before = metrics.appended.load();
  {
    // From another process: the daemon's blocked callback would hold up an
    // in-process publisher (Paho runs a process's clients on one thread).
    std::string script = "set -e\n";
    for (long i = 20; i < 120; ++i) {
      script += "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                " -q 1 -t meters/d1 -m '" + reading(i) + "'\n";
    }
    write_text_file(dir.file("publish.sh"), script);
    REQUIRE(std::system(("sh " + dir.file("publish.sh")).c_str()) == 0);
  }
  REQUIRE(wait_until([&] { return metrics.append_failures.load() >= 3; }, 30s));
  CHECK(metrics.appended.load() == acknowledged_before);  // nothing acknowledged meanwhile
  CHECK(metrics.new_measurements.load() == 20);           // and nothing deleted
  CHECK(metrics.append_blocked.load());

  daemon.set_disk_budget(0);  // room again
  REQUIRE(wait_until([&] { return metrics.new_measurements.load() == 120; }, 60s, 50ms));
  CHECK_FALSE(metrics.over_budget.load());
  daemon.request_stop();
  runner.join();
  CHECK(exit_code == 0);

  BufferConfig config;
  config.path = dir.file("buffer.db");
  config.durability = Durability::normal;
  auto buffer = Buffer::open(config);
  REQUIRE(buffer);
  std::map<std::string, int> seen;
  REQUIRE((*buffer)->for_each_measurement([&](const Measurement& m) { ++seen[m.value]; }));
  CHECK(seen.size() == 120);
  for (const auto& [value, count] : seen) {
    INFO("value " << value);
    CHECK(count == 1);
  }
  const auto log = log_text.str();
  INFO(log);
  CHECK(log.find("reached its disk budget") != std::string::npos);
  CHECK(log.find("below its disk budget again") != std::string::npos);
}
