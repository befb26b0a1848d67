// The daemon (`meter-agent run`) end to end against a real mosquitto started
// by each test on a free loopback port: acknowledge-after-commit, reconnects,
// sessions, TLS, reload, the last will, /metrics and `status` while it runs.
#include <sys/stat.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <thread>

#include "common/normalize/timestamp.hpp"
#include "support/agent_process.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"
#include "support/test_pki.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

// A seed-format reading; every fifth has no timestamp (the receive time is used).
std::string reading(const std::string& device, long i) {
  std::string json = "{\"device_id\":\"" + device + "\"";
  if (i % 5 != 0) json += ",\"timestamp\":\"" + format_timestamp(1767225600000LL + i * 1000) + "\"";
  return json + ",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) + ",\"unit\":\"kWh\"}";
}

void publish_readings(int port, const std::string& topic_prefix, const std::string& device,
                      long from, long to) {
  TestPublisher publisher(port, "test-publisher-" + device);
  for (long i = from; i < to; ++i) publisher.publish(topic_prefix + device, reading(device, i));
  publisher.flush();
}

// device|value -> how many measurements carry it.
std::map<std::string, int> stored_readings(const AgentProcess& agent) {
  std::map<std::string, int> seen;
  auto listed = agent.open_buffer()->for_each_measurement(
      [&](const Measurement& m) { ++seen[m.device_id + "|" + m.value]; });
  REQUIRE(listed);
  return seen;
}

void require_exactly_once(const AgentProcess& agent, const std::string& device, long from, long to,
                          std::size_t total) {
  const auto seen = stored_readings(agent);
  for (long i = from; i < to; ++i) {
    const auto found = seen.find(device + "|" + std::to_string(i));
    INFO("reading " << device << " " << i);
    REQUIRE(found != seen.end());
    REQUIRE(found->second == 1);
  }
  REQUIRE(seen.size() == total);
}

std::string quote(const std::string& text) { return "'" + text + "'"; }

int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("daemon: readings published over MQTT are stored once, /metrics and status agree",
          "[daemon]") {
  const int protocol = GENERATE(4, 5);
  INFO("MQTT protocol level " << protocol);
  Mosquitto broker;
  AgentProcess agent(broker.port(), protocol == 5 ? "  protocol: \"5\"\n" : "");
  TestSubscriber status(broker.port(), "status-watcher", "meter-agent/test-gw/status");
  agent.start();
  REQUIRE(agent.wait_connected());
  REQUIRE(status.wait_for_payload("\"status\":\"online\"", 10s));

  // `meter-agent status` reads the same file while the agent stores a stream.
  std::thread publisher([&] { publish_readings(broker.port(), "meters/", "m1", 0, 2000); });
  int status_runs = 0;
  while (agent.metric("meter_agent_messages_appended_total") < 2000 && status_runs < 20) {
    const int code = shell(quote(METER_AGENT_BINARY) + " status --config " +
                           quote(agent.config_path()) + " >/dev/null 2>&1");
    REQUIRE(code == 0);
    ++status_runs;
  }
  publisher.join();
  CHECK(status_runs > 0);
  REQUIRE(agent.wait_measurements(2000));
  require_exactly_once(agent, "m1", 0, 2000, 2000);

  REQUIRE(wait_until([&] { return agent.metric("meter_agent_buffer_pending_normalization") == 0; },
                     10s));
  const auto metrics = agent.metrics();
  CHECK(metric_value(metrics, "meter_agent_messages_received_total") == 2000);
  CHECK(metric_value(metrics, "meter_agent_messages_appended_total") == 2000);
  CHECK(metric_value(metrics, "meter_agent_messages_normalized_total") == 2000);
  CHECK(metric_value(metrics, "meter_agent_measurements_new_total") == 2000);
  CHECK(metric_value(metrics, "meter_agent_duplicates_total") == 0);
  CHECK(metric_value(metrics, "meter_agent_decode_errors_total") == 0);
  CHECK(metric_value(metrics, "meter_agent_append_failures_total") == 0);
  CHECK(metric_value(metrics, "meter_agent_buffer_measurements") == 2000);
  CHECK(metric_value(metrics, "meter_agent_buffer_unsynced") == 2000);
  CHECK(metric_value(metrics, "meter_agent_mqtt_connected") == 1);
  CHECK(metrics.find("meter_agent_buffer_flagged_measurements{flag=\"gateway_timestamp\"} 400") !=
        std::string::npos);
  CHECK(http_get(agent.http_port(), "/healthz").find("200 OK") != std::string::npos);

  // A repeat and an undecodable message are counted as such.
  {
    TestPublisher repeater(broker.port(), "test-publisher-repeat");
    repeater.publish("meters/m1", reading("m1", 1));
    repeater.publish("meters/m1", "not json");
  }
  REQUIRE(wait_until([&] { return agent.metric("meter_agent_messages_normalized_total") == 2002; },
                     10s));
  CHECK(agent.metric("meter_agent_duplicates_total") == 1);
  CHECK(agent.metric("meter_agent_decode_errors_total") == 1);

  REQUIRE(agent.stop() == 0);
  CHECK(status.wait_for_payload("\"status\":\"offline\"", 10s));
}

TEST_CASE("daemon: after a broker restart and while the agent is down, messages arrive once",
          "[daemon]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  agent.start();
  REQUIRE(agent.wait_connected());
  publish_readings(broker.port(), "meters/", "r1", 0, 100);
  REQUIRE(agent.wait_measurements(100));

  broker.restart();  // the session (with its subscription) survives in mosquitto's persistence
  REQUIRE(wait_until([&] { return agent.metric("meter_agent_mqtt_reconnects_total") >= 1; }, 20s));
  REQUIRE(agent.wait_connected());
  publish_readings(broker.port(), "meters/", "r1", 100, 200);
  REQUIRE(agent.wait_measurements(200));

  REQUIRE(agent.stop() == 0);
  publish_readings(broker.port(), "meters/", "r1", 200, 300);  // queued in the session
  agent.start();
  REQUIRE(agent.wait_measurements(300));
  CHECK(agent.log().find("session resumed") != std::string::npos);
  REQUIRE(agent.stop() == 0);
  require_exactly_once(agent, "r1", 0, 300, 300);
}

TEST_CASE("daemon: the last will marks the gateway offline after SIGKILL", "[daemon]") {
  Mosquitto broker;
  AgentProcess agent(broker.port(), "  keepalive: 2s\n");
  TestSubscriber status(broker.port(), "status-watcher", "meter-agent/test-gw/status");
  agent.start();
  REQUIRE(agent.wait_connected());
  REQUIRE(status.wait_for_payload("\"status\":\"online\"", 10s));
  agent.kill();
  REQUIRE(status.wait_for_payload("\"status\":\"offline\"", 10s));
  // Retained: a late subscriber sees it too.
  TestSubscriber late(broker.port(), "late-watcher", "meter-agent/test-gw/status");
  CHECK(late.wait_for_payload("offline", 5s));
}

TEST_CASE("daemon: SIGHUP applies a valid config and refuses an invalid one", "[daemon]") {
  Mosquitto broker;
  AgentProcess agent(broker.port());
  agent.start();
  REQUIRE(agent.wait_connected());

  // A new topic filter: the agent subscribes to it without a restart.
  agent.write_config("",
                     "metrics:\n  energy: {kind: counter, unit: kWh}\n"
                     "mappings:\n  - topic: \"site/+/energy\"\n");
  agent.signal(SIGHUP);
  REQUIRE(agent.wait_log("subscribed to 'site/+/energy'"));
  CHECK(agent.log().find("changed mappings") != std::string::npos);
  // Subscribed first, so that no message finds neither filter; the old one is
  // left after that, its line written when the broker answers.
  CHECK(agent.wait_log("unsubscribed from 'meters/#'"));
  {
    TestPublisher publisher(broker.port(), "reload-publisher");
    for (long i = 1; i < 11; ++i) publisher.publish("site/h1/energy", reading("h1", i));
  }
  REQUIRE(agent.wait_measurements(10));

  // An invalid file is refused with its position, and the running config stays.
  write_text_file(agent.config_path(), agent.config_text() + "bogus_key: 1\n");
  agent.signal(SIGHUP);
  REQUIRE(agent.wait_log("reload refused"));
  CHECK(agent.log().find("agent.yaml:") != std::string::npos);
  {
    TestPublisher publisher(broker.port(), "reload-publisher-2");
    publisher.publish("site/h1/energy", reading("h1", 11));
  }
  REQUIRE(agent.wait_measurements(11));
  REQUIRE(agent.stop() == 0);
}

TEST_CASE("daemon: TLS with server verification and a client certificate", "[daemon][tls]") {
  // A test CA, a server certificate for localhost/127.0.0.1, a client
  // certificate, and a second CA that signed nothing the broker uses.
  TestPki pki;

  // TLS on the main listener (client certificates required); a plain one for the publisher.
  const int plain_port = free_port();
  Mosquitto broker(pki.mosquitto_listener(true),
                   "listener " + std::to_string(plain_port) + " 127.0.0.1\n");

  SECTION("the server certificate verifies and the client certificate is accepted") {
    AgentProcess agent(broker.port(),
                       "  tls:\n    enabled: true\n    ca_file: " + pki.file("ca.pem") +
                           "\n    cert_file: " + pki.file("client.pem") +
                           "\n    key_file: " + pki.file("client.key") + "\n");
    // The host name check runs against the certificate's subjectAltName (IP:127.0.0.1).
    agent.start();
    REQUIRE(agent.wait_connected());
    CHECK(agent.log().find("ssl://127.0.0.1:") != std::string::npos);
    publish_readings(plain_port, "meters/", "t1", 1, 21);
    if (!agent.wait_measurements(20))
      FAIL("not all 20 readings stored; the agent's log:\n" << agent.log());
    REQUIRE(agent.stop() == 0);
  }
  SECTION("a server certificate from another CA is refused") {
    AgentProcess agent(broker.port(),
                       "  tls:\n    enabled: true\n    ca_file: " + pki.file("other.pem") +
                           "\n    cert_file: " + pki.file("client.pem") +
                           "\n    key_file: " + pki.file("client.key") + "\n");
    agent.start();
    const bool refused = agent.wait_log("cannot connect to ssl://");
    INFO("agent log:\n" << agent.log());
    REQUIRE(refused);
    REQUIRE(wait_until([&] { return agent.metric("meter_agent_mqtt_connect_failures_total") >= 2; },
                       20s));
    CHECK(agent.metric("meter_agent_mqtt_connected") == 0);
    CHECK(agent.metric("meter_agent_messages_received_total") == 0);
    REQUIRE(agent.stop() == 0);
  }
}
