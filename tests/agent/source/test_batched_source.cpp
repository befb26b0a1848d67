// The batched connection (agent/source/batched_source.hpp): the real
// `meter-agent run` with mqtt.acknowledge: batched, a real mosquitto,
// durability power_loss. Every message reaches the raw log and the
// measurements once, and many share one sync; the session persists across
// restarts (what the broker queued meanwhile arrives); a reload changes its
// filters in place; going back to `each` drains and ends its session and the
// daemon's own connection takes the filters back.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>

#include "support/agent_process.hpp"
#include "support/ingest_checks.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

// The agent with `acknowledge` (each or batched), MQTT `protocol`, power_loss.
void configure(AgentProcess& agent, const std::string& acknowledge,
               const std::string& protocol = "\"3.1.1\"") {
  configure_power_loss(
      agent, "  acknowledge: " + acknowledge + "\n  protocol: " + protocol + "\n  keepalive: 5s\n");
}

bool wait_batched_connected(const AgentProcess& agent) {
  return wait_until([&] { return agent.metric("meter_agent_batched_connected") == 1; }, 30s, 20ms);
}

// Stops the agent; on failure the assertion shows its log as it is then.
void stop_cleanly(AgentProcess& agent) {
  const auto code = agent.stop();
  INFO(agent.log());
  REQUIRE(code == 0);
}

// Started, connected, and its session subscribed to the mappings' filter.
void start_subscribed(AgentProcess& agent) {
  agent.start();
  REQUIRE(wait_batched_connected(agent));
  REQUIRE(agent.wait_log_this_run("batched connection: subscribed to 'meters/#'"));
}

bool session_recorded(const AgentProcess& agent) {
  return std::ifstream(agent.buffer_path() + "-inbox/batched-session").good();
}

}  // namespace

TEST_CASE("batched connection: each message committed once, many sharing one sync",
          "[daemon][batched_source]") {
  const std::string protocol = GENERATE(std::string("\"3.1.1\""), std::string("\"5\""));
  INFO("protocol " << protocol);
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, "batched", protocol);
  agent.start();
  REQUIRE(agent.wait_connected());
  REQUIRE(wait_batched_connected(agent));
  REQUIRE(agent.wait_log_this_run("batched connection: subscribed to 'meters/#'"));
  CHECK(session_recorded(agent));

  // Messages that arrive together share one sync. How many arrive together
  // while the agent keeps up depends on the machine (under emulation it can be
  // one at a time), so the first are sent while the agent is stopped: the
  // broker has written at least its in-flight window (mosquitto's
  // max_inflight_messages, 20) to the socket when it is continued, and its
  // first read takes them all into one group. The rest arrive live.
  constexpr long kStopped = 200;
  constexpr long kWindow = 20;
  constexpr long kMessages = 3000;
  agent.signal(SIGSTOP);
  publish_range(broker.port(), 0, kStopped);
  agent.signal(SIGCONT);
  publish_range(broker.port(), kStopped, kMessages);
  REQUIRE(agent.wait_measurements(kMessages, 60s));
  const auto appended = agent.metric("meter_agent_messages_appended_total");
  const auto syncs = agent.metric("meter_agent_group_commits_total");
  INFO(agent.log());
  CHECK(appended == kMessages);
  CHECK(syncs > 0);
  CHECK(syncs <= kMessages - (kWindow - 1));
  stop_cleanly(agent);
  const auto result = stored(agent);
  check_each_once(result.raw, kMessages, "raw log, first deliveries");
  check_each_once(result.measurements, kMessages, "measurements");
}

TEST_CASE("batched connection: what the broker queued while the agent was away arrives",
          "[daemon][batched_source]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, "batched");
  start_subscribed(agent);
  publish_range(broker.port(), 0, 500);
  REQUIRE(agent.wait_measurements(500, 60s));
  stop_cleanly(agent);

  publish_range(broker.port(), 500, 1500);  // queued in the batched session
  agent.start();
  REQUIRE(agent.wait_measurements(1500, 60s));
  INFO(agent.log());
  CHECK(agent.log().find("session resumed") != std::string::npos);
  stop_cleanly(agent);
  const auto result = stored(agent);
  check_each_once(result.raw, 1500, "raw log, first deliveries");
  check_each_once(result.measurements, 1500, "measurements");
}

TEST_CASE("batched connection: a killed agent loses nothing and doubles no measurement",
          "[daemon][batched_source]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, "batched");
  start_subscribed(agent);
  publish_range(broker.port(), 0, 2000);
  // Killed while it works through them: what it had not acknowledged is
  // redelivered to the resumed session.
  REQUIRE(wait_until([&] { return agent.metric("meter_agent_messages_appended_total") > 200; }, 30s,
                     1ms));
  agent.kill();
  agent.start();
  REQUIRE(wait_batched_connected(agent));
  REQUIRE(agent.wait_measurements(2000, 60s));
  stop_cleanly(agent);
  const auto result = stored(agent);
  check_each_once(result.measurements, 2000, "measurements");
  CHECK(result.raw.size() == 2000);  // first deliveries: every message, redeliveries aside
}

TEST_CASE("batched connection: a reload changes its filters in place", "[daemon][batched_source]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, "batched");
  start_subscribed(agent);
  std::string config = read_text_file(agent.config_path());
  const std::string all = "\"meters/#\"";
  config.replace(config.find(all), all.size(), "\"meters/a/#\"");
  write_text_file(agent.config_path(), config);
  agent.signal(SIGHUP);
  REQUIRE(agent.wait_log("batched connection: unsubscribed from 'meters/#'"));
  REQUIRE(agent.wait_log("batched connection: subscribed to 'meters/a/#'"));
  {
    TestPublisher publisher(broker.port(), "reload-publisher");
    publisher.publish("meters/b/x", reading(1));  // no longer subscribed
    publisher.publish("meters/a/x", reading(2));
  }
  REQUIRE(agent.wait_measurements(1, 30s));
  stop_cleanly(agent);
  const auto result = stored(agent);
  CHECK(result.measurements == std::map<std::int64_t, int>{{2, 1}});
}

TEST_CASE(
    "batched connection: back to `each`, its session is drained and ended and the daemon's "
    "connection takes the filters back",
    "[daemon][batched_source]") {
  const std::string protocol = GENERATE(std::string("\"3.1.1\""), std::string("\"5\""));
  INFO("protocol " << protocol);
  Mosquitto broker;
  AgentProcess agent(broker.port());
  configure(agent, "batched", protocol);
  start_subscribed(agent);
  stop_cleanly(agent);

  publish_range(broker.port(), 0, 600);  // queued in the batched session
  configure(agent, "each", protocol);
  agent.start();
  REQUIRE(agent.wait_measurements(600, 60s));
  REQUIRE(agent.wait_log("batched connection: its session is drained and ended"));
  INFO(agent.log());
  CHECK_FALSE(session_recorded(agent));
  // The daemon's own connection has the filters: new messages arrive.
  publish_range(broker.port(), 600, 700);
  REQUIRE(agent.wait_measurements(700, 60s));
  stop_cleanly(agent);

  // Nothing is queued for the ended session any more: a batched agent
  // started again begins a new one.
  // (This run's connected line, not the metric, which is set just before it.)
  configure(agent, "batched", protocol);
  agent.start();
  const std::string connected_as = "as meter-agent-test-gw-batched (";
  REQUIRE(agent.wait_log_this_run(connected_as, 30s));
  const auto log = agent.log_this_run();
  INFO(log);
  const auto at = log.find(connected_as);
  CHECK(log.find("session new", at) < log.find('\n', at));
  stop_cleanly(agent);
  const auto result = stored(agent);
  check_each_once(result.measurements, 700, "measurements");
}

TEST_CASE("batched connection: a broker that is not there is retried and counted",
          "[daemon][batched_source]") {
  AgentProcess agent(free_port());  // nothing listens there
  configure(agent, "batched");
  agent.start();
  REQUIRE(agent.wait_log("batched connection: cannot connect to tcp://"));
  // Retried with backoff (reconnect.min 1s): a second failure follows.
  REQUIRE(wait_until(
      [&] { return agent.metric("meter_agent_batched_connection_failures_total") >= 2; }, 20s));
  CHECK(agent.metric("meter_agent_batched_connected") == 0);
  stop_cleanly(agent);
}
