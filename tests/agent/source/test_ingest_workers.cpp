// Ingest workers (agent/source/ingest_workers.hpp): the real `meter-agent run`
// with mqtt.ingest_workers, a real mosquitto, durability power_loss. Every
// message reaches the raw log once and is acknowledged only after the sync it
// shares with others; a killed worker comes back on its own session; a killed
// daemon takes its workers along; lowering the number drains the retired
// sessions (mosquitto keeps an offline member's share of a shared
// subscription), and 0 hands the filters back to the daemon's own connection.
#include <signal.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/normalize/timestamp.hpp"
#include "support/agent_process.hpp"
#include "support/ingest_checks.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

std::string workers_line(int count) {
  return "  ingest_workers: " + std::to_string(count) + "\n  keepalive: 5s\n";
}

// The agent with `workers` ingest workers and durability power_loss.
void configure(AgentProcess& agent, int workers) {
  configure_power_loss(agent, workers_line(workers));
}

std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> children;
  pid_t child = 0;
  while (file >> child) children.push_back(child);
  return children;
}

// Gone or a zombie nobody reaped yet: either way it runs no more.
bool process_gone(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(file, line)) return true;
  const auto close = line.rfind(')');
  return close == std::string::npos || line.substr(close + 2, 1) == "Z";
}

std::string recorded_sessions(const AgentProcess& agent) {
  std::ifstream file(agent.buffer_path() + "-inbox/ingest-workers");
  std::string text;
  std::getline(file, text);
  return text;
}

bool wait_workers_connected(const AgentProcess& agent, int count) {
  return wait_until([&] { return agent.metric("meter_agent_ingest_workers_connected") == count; },
                    30s, 20ms);
}

}  // namespace

TEST_CASE("ingest workers: each message committed once, acknowledgements sharing syncs",
          "[daemon][ingest_workers]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, 3);
  agent.start();
  REQUIRE(agent.wait_connected());
  REQUIRE(wait_workers_connected(agent, 3));
  CHECK(recorded_sessions(agent) == "3");

  constexpr long kMessages = 3000;
  publish_range(broker.port(), 0, kMessages);
  REQUIRE(agent.wait_measurements(kMessages, 60s));
  const auto appended = agent.metric("meter_agent_messages_appended_total");
  const auto syncs = agent.metric("meter_agent_group_commits_total");
  INFO(agent.log());
  CHECK(appended >= kMessages);
  // Three workers with a backlog: the commit thread found messages of
  // several of them waiting at once, so there were fewer syncs than messages.
  CHECK(syncs > 0);
  CHECK(syncs < appended);
  CHECK(agent.metric("meter_agent_append_failures_total") == 0);
  REQUIRE(agent.stop() == 0);
  // A clean stop ends every worker.
  const auto result = stored(agent);
  check_each_once(result.raw, kMessages, "raw log, first deliveries");
  check_each_once(result.measurements, kMessages, "measurements");
}

TEST_CASE("ingest workers: a killed worker comes back, a killed daemon takes its workers along",
          "[daemon][ingest_workers]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, 2);
  agent.start();
  REQUIRE(agent.wait_connected());
  REQUIRE(wait_workers_connected(agent, 2));
  auto workers = children_of(agent.pid());
  REQUIRE(workers.size() == 2);

  constexpr long kMessages = 1500;
  publish_range(broker.port(), 0, kMessages / 2);
  ::kill(workers[0], SIGKILL);  // whatever it had in hand is redelivered, never lost
  publish_range(broker.port(), kMessages / 2, kMessages);
  REQUIRE(agent.wait_measurements(kMessages, 60s));
  REQUIRE(wait_workers_connected(agent, 2));
  CHECK(agent.metric("meter_agent_ingest_worker_restarts_total") == 1);
  INFO(agent.log());
  CHECK(agent.log().find("ingest worker meter-agent-test-gw-ingest-") != std::string::npos);
  CHECK(agent.log().find("session resumed") != std::string::npos);

  workers = children_of(agent.pid());
  REQUIRE(workers.size() == 2);
  agent.kill();  // SIGKILL: no shutdown, the workers get theirs from the kernel
  CHECK(
      wait_until([&] { return process_gone(workers[0]) && process_gone(workers[1]); }, 10s, 10ms));
  const auto result = stored(agent);
  check_each_once(result.measurements, kMessages, "measurements");
}

TEST_CASE(
    "ingest workers: fewer workers drain the retired sessions, none gives the "
    "filters back to the daemon's own connection",
    "[daemon][ingest_workers]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, 3);
  agent.start();
  REQUIRE(agent.wait_connected());
  REQUIRE(wait_workers_connected(agent, 3));
  REQUIRE(agent.stop() == 0);

  // Queued by the broker while the agent is away: a share for each of the
  // three worker sessions.
  publish_range(broker.port(), 0, 600);
  configure(agent, 1);
  agent.start();
  REQUIRE(agent.wait_measurements(600, 60s));
  INFO(agent.log());
  CHECK(agent.wait_log("retired session meter-agent-test-gw-ingest-1 drained and ended"));
  CHECK(agent.wait_log("retired session meter-agent-test-gw-ingest-2 drained and ended"));
  CHECK(wait_until([&] { return recorded_sessions(agent) == "1"; }, 10s, 20ms));
  REQUIRE(agent.stop() == 0);

  publish_range(broker.port(), 600, 900);
  configure(agent, 0);
  agent.start();
  REQUIRE(agent.wait_measurements(900, 60s));
  CHECK(agent.wait_log("retired session meter-agent-test-gw-ingest-0 drained and ended"));
  CHECK(wait_until([&] { return recorded_sessions(agent) == "0"; }, 10s, 20ms));
  // The daemon's own connection subscribes again and takes new messages.
  publish_range(broker.port(), 900, 1000);
  REQUIRE(agent.wait_measurements(1000, 60s));
  REQUIRE(agent.stop() == 0);
  const auto result = stored(agent);
  check_each_once(result.raw, 1000, "raw log, first deliveries");
  check_each_once(result.measurements, 1000, "measurements");
}

TEST_CASE("ingest workers: a reload that changes the filters restarts the workers on them",
          "[daemon][ingest_workers]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, 2);
  agent.start();
  REQUIRE(wait_workers_connected(agent, 2));
  // Only meters/a/# from now on.
  std::string config = read_text_file(agent.config_path());
  const std::string all = "\"meters/#\"";
  config.replace(config.find(all), all.size(), "\"meters/a/#\"");
  write_text_file(agent.config_path(), config);
  agent.signal(SIGHUP);
  REQUIRE(agent.wait_log("unsubscribed from '$share/meter-agent-test-gw/meters/#'"));
  REQUIRE(wait_workers_connected(agent, 2));
  REQUIRE(agent.wait_log("subscribed to '$share/meter-agent-test-gw/meters/a/#'"));
  {
    TestPublisher publisher(broker.port(), "reload-publisher");
    publisher.publish("meters/b/x", reading(1));  // no longer subscribed
    publisher.publish("meters/a/x", reading(2));
  }
  REQUIRE(agent.wait_measurements(1, 30s));
  REQUIRE(agent.stop() == 0);
  const auto result = stored(agent);
  CHECK(result.measurements == std::map<std::int64_t, int>{{2, 1}});
}

TEST_CASE("ingest workers: at a site's pace no reading is out of order",
          "[daemon][ingest_workers]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, 3);
  agent.start();
  REQUIRE(wait_workers_connected(agent, 3));
  // A site's pace: a meter's next reading comes long after its last one was
  // stored (seconds, against milliseconds) — here, after it was committed.
  constexpr long kMeters = 20;
  constexpr long kRounds = 10;
  TestPublisher publisher(broker.port(), "pace-publisher", 100);
  for (long round = 0; round < kRounds; ++round) {
    for (long meter = 0; meter < kMeters; ++meter) {
      const long i = round * kMeters + meter;  // ascending timestamps
      publisher.publish("meters/p" + std::to_string(meter),
                        "{\"device_id\":\"p" + std::to_string(meter) + "\",\"timestamp\":\"" +
                            format_timestamp(1767225600000LL + i * 1000) +
                            "\",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) +
                            ",\"unit\":\"kWh\"}");
    }
    publisher.flush();
    REQUIRE(wait_until(
        [&] {
          return agent.metric("meter_agent_messages_appended_total") >= (round + 1) * kMeters;
        },
        30s, 5ms));
  }
  REQUIRE(agent.wait_measurements(kMeters * kRounds, 30s));
  REQUIRE(agent.stop() == 0);
  auto status = agent.open_buffer()->status();
  REQUIRE(status);
  CHECK(status->measurements == kMeters * kRounds);
  const auto out_of_order = status->flag_counts.find("out_of_order");
  CHECK((out_of_order == status->flag_counts.end() || out_of_order->second == 0));
}
