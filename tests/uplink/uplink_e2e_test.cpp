// The uplink end to end, every component real: mosquitto, `meter-agent run`,
// the central service under uvicorn, PostgreSQL (central/tests/with_postgres.sh
// starts it and exports DATABASE_URL), with our fault-injecting proxy
// (tests/support/fault_proxy.hpp) between the agent and the central.
//
// Every case ends with the same check: PostgreSQL holds every published
// reading exactly once, with the same values, deltas, flags and revisions as
// the agent's export, and every raw message once.
//
// ctest runs shortened outages and a few kills; the full run (docs/BENCHMARKS.md):
//   METER_UPLINK_FULL=1 central/tests/with_postgres.sh build/tests/uplink/uplink_e2e_test
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/buffer/inbox.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/agent_process.hpp"
#include "support/central.hpp"
#include "support/fault_proxy.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

bool full_run() { return std::getenv("METER_UPLINK_FULL") != nullptr; }

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoi(value) : fallback;
}

std::string reading(const std::string& device, std::int64_t ts_ms, std::int64_t value) {
  return "{\"device_id\":\"" + device + "\",\"timestamp\":\"" + format_timestamp(ts_ms) +
         "\",\"metric_type\":\"energy\",\"value\":" + std::to_string(value) + ",\"unit\":\"Wh\"}";
}

struct RigOptions {
  std::string uplink_extra;  // more lines under `uplink:`
  std::string buffer_extra;  // more lines under `buffer:`
  std::string broker_extra;  // more lines of mosquitto's configuration
  bool through_proxy = true;
  int batch_max_records = 200;
};

// Everything of one test: broker, central, proxy, agent.
struct Rig {
  RigOptions options;
  Mosquitto broker;
  CentralService central;
  FaultProxy proxy{central.port()};
  AgentProcess agent{broker.port()};

  explicit Rig(std::string uplink_extra = "", bool through_proxy = true)
      : Rig(RigOptions{std::move(uplink_extra), "", "", through_proxy, 200}) {}
  explicit Rig(RigOptions rig_options)
      : options(std::move(rig_options)), broker("", options.broker_extra) {
    central.start();
    write_token(central.token());
    write_config(options.through_proxy ? "http://127.0.0.1:" + std::to_string(proxy.port())
                                       : "http://127.0.0.1:" + std::to_string(central.port()));
  }
  std::string token_path() const { return agent.dir().file("token"); }
  void write_token(const std::string& token) const {
    write_text_file(token_path(), token + "\n");
    ::chmod(token_path().c_str(), 0600);
  }
  void write_config(const std::string& url, const std::string& more = "") const {
    std::string agent_text = agent.config_text();
    const std::string buffer_section_end = "  durability: normal\n";
    const auto at = agent_text.find(buffer_section_end);
    if (at == std::string::npos) throw std::logic_error("AgentProcess's buffer section changed");
    agent_text.insert(at + buffer_section_end.size(), options.buffer_extra);
    write_text_file(agent.config_path(),
                    agent_text + "uplink:\n  url: " + url + "\n  token_file: " + token_path() +
                        "\n  timeout: 2s\n  connect_timeout: 1s\n  retry: {min: 50ms, max: 500ms}\n"
                        "  interval: 50ms\n  batch_max_records: " +
                        std::to_string(options.batch_max_records) + "\n" + options.uplink_extra +
                        more);
  }
  void start_agent() {
    agent.start();
    REQUIRE(agent.wait_connected());
  }

  // The agent's measurements and the central's, each as one comparable line.
  std::set<std::string> agent_rows() const {
    std::set<std::string> exported;
    auto buffer = agent.open_buffer();
    REQUIRE(buffer->for_each_measurement([&](const Measurement& m) {
      exported.insert(m.event_id + "|" + m.device_id + "|" + m.metric_type + "|" +
                      format_timestamp(m.timestamp_ms) + "|" + m.value + "|" + m.unit + "|" +
                      (m.delta ? *m.delta : "null") + "|" + join_flags(m.flags, ';') + "|" +
                      std::to_string(m.revision));
    }));
    return exported;
  }
  std::vector<std::string> central_rows() {
    return central.query(
        "SELECT event_id, device_id, metric_type, "
        "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), value::text, "
        "unit, coalesce(delta::text, 'null'), array_to_string(flags, ';'), revision "
        "FROM normalized_measurements");
  }
  std::string status_text() const {
    auto [code, output] =
        run_command({METER_AGENT_BINARY, "status", "--config", agent.config_path()},
                    agent.dir().file("status.out"));
    CHECK(code == 0);
    return output;
  }

  // Waits until the agent has nothing left to upload and the central holds
  // `readings` measurements; then compares the two sides row by row.
  void check_exactly_once(std::int64_t readings, std::chrono::seconds timeout = 120s) {
    const bool drained = wait_until(
        [&] {
          auto buffer = agent.open_buffer();
          auto status = buffer->status();
          auto sync = buffer->sync_status();
          if (!status || !sync) return false;
          return status->last_seq == status->normalized_through_seq && sync->waiting() == 0 &&
                 status->measurements >= readings;
        },
        timeout, 100ms);
    INFO("agent log:\n"
         << agent.log().substr(agent.log().size() > 6000 ? agent.log().size() - 6000 : 0));
    REQUIRE(drained);
    const auto exported = agent_rows();
    const std::int64_t raw_messages = agent.open_buffer()->status()->raw_messages;
    const auto rows = central_rows();
    const std::set<std::string> stored(rows.begin(), rows.end());
    CHECK(rows.size() == stored.size());
    CHECK(static_cast<std::int64_t>(stored.size()) == readings);
    CHECK(exported == stored);
    if (exported != stored) {
      int shown = 0;
      for (const auto& row : exported) {
        if (!stored.count(row) && shown++ < 5) UNSCOPED_INFO("agent only: " << row);
      }
      for (const auto& row : stored) {
        if (!exported.count(row) && shown++ < 10) UNSCOPED_INFO("central only: " << row);
      }
    }
    CHECK(central.count("SELECT count(*) FROM raw_events") == raw_messages);
  }
};

// Publishes `count` readings of `devices` meters, counters rising, one minute apart.
void publish_readings(int broker_port, int count, int devices, std::int64_t start_ms,
                      const std::string& client_id, int offset = 0) {
  TestPublisher publisher(broker_port, client_id);
  for (int i = offset; i < offset + count; ++i) {
    const auto device = "m" + std::to_string(i % devices);
    const auto step = i / devices;
    publisher.publish("meters/" + device,
                      reading(device, start_ms + step * 60000, 1000 + step * 250));
  }
  publisher.flush();
}

constexpr std::int64_t kStart = 1735689600000;  // 2025-01-01T00:00:00Z

FaultRule fault(Fault kind, int status = 503, std::chrono::milliseconds delay = 0ms,
                std::string retry_after = "") {
  FaultRule rule;
  rule.fault = kind;
  rule.status = status;
  rule.delay = delay;
  rule.retry_after = std::move(retry_after);
  return rule;
}

}  // namespace

TEST_CASE(
    "an outage, 500/503 bursts, lost and late responses and a killed central lose and "
    "double nothing",
    "[uplink_e2e]") {
  Rig rig;
  rig.start_agent();
  const int per_phase = full_run() ? 5000 : 600;
  int published = 0;
  auto publish = [&](int count) {
    publish_readings(rig.broker.port(), count, 10, kStart, "pub-" + std::to_string(published),
                     published);
    published += count;
  };

  {
    // 1. Outage: every request fails; the buffer holds everything.
    rig.proxy.set_default(fault(Fault::refuse));
    publish(per_phase);
    const auto outage = full_run() ? std::chrono::milliseconds(180000) : 3000ms;
    const auto outage_end = std::chrono::steady_clock::now() + outage;
    REQUIRE(wait_until(
        [&] { return rig.agent.metric("meter_agent_uplink_request_failures_total") >= 3; }, 30s));
    CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements") == 0);
    while (std::chrono::steady_clock::now() < outage_end) {
      // Still nothing confirmed and nothing lost while the central is away.
      CHECK(rig.agent.metric("meter_agent_uplink_measurements_confirmed_total") == 0);
      std::this_thread::sleep_for(500ms);
    }
    rig.proxy.set_default(fault(Fault::pass));
    rig.check_exactly_once(published);
  }
  {
    // 2. Bursts of 500 and 503 (with Retry-After), 3. responses dropped after
    // the central committed, 4. responses held past the agent's timeout.
    rig.proxy.push(fault(Fault::status, 500), 4);
    rig.proxy.push(fault(Fault::status, 503, 0ms, "1"), 3);
    rig.proxy.push(fault(Fault::drop_response), 4);
    rig.proxy.push(fault(Fault::delay_response, 200, 3000ms), 2);
    publish(per_phase);
    rig.check_exactly_once(published);
    CHECK(rig.proxy.queued() == 0);
    // The dropped responses were committed centrally and answered `duplicate` on resend.
    CHECK(rig.agent.metric("meter_agent_uplink_request_failures_total") >= 13);
  }
  {
    // 5. The central SIGKILLed in the middle of uploads, then restarted.
    std::thread publisher([&] { publish(per_phase); });
    std::mt19937 random(42);
    for (int kill = 0; kill < (full_run() ? 10 : 2); ++kill) {
      const auto before = rig.proxy.forwarded();
      wait_until([&] { return rig.proxy.forwarded() > before; }, 10s, 1ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(random() % 30));
      rig.central.kill();
      std::this_thread::sleep_for(300ms);
      rig.central.start();
    }
    publisher.join();
    rig.check_exactly_once(published);
  }
  {
    // 6. Out-of-order arrivals update measurements the central already has:
    // a reading between two synced ones changes the later one's delta.
    TestPublisher publisher(rig.broker.port(), "late");
    // m0's steps 0 and 1 are at kStart and kStart+60s with values 1000, 1250 Wh.
    publisher.publish("meters/m0", reading("m0", kStart + 30000, 1100));
    publisher.flush();
    ++published;
    rig.check_exactly_once(published);
    const auto rows = rig.central.query(
        "SELECT delta::text, revision, array_to_string(flags, ';') FROM normalized_measurements "
        "WHERE device_id = 'm0' AND timestamp = '2025-01-01T00:01:00Z'");
    REQUIRE(rows.size() == 1);
    CHECK(rows[0] == "0.15|2|");
  }
}

TEST_CASE("SIGKILL of the agent at random moments during uploads, while meters keep publishing",
          "[uplink_e2e]") {
  Rig rig;
  rig.start_agent();
  const int kills = env_int("METER_UPLINK_KILLS", full_run() ? 25 : 5);
  const int readings = full_run() ? 20000 : 3000;
  std::atomic<bool> done{false};
  std::thread publisher([&] {
    publish_readings(rig.broker.port(), readings, 20, kStart, "kill-pub");
    done = true;
  });
  std::mt19937 random(std::random_device{}());
  int made = 0;
  for (; made < kills; ++made) {
    // Wait for an upload to be under way, then kill at a random moment.
    const auto before = rig.proxy.requests();
    wait_until([&] { return rig.proxy.requests() > before; }, 10s, 1ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(random() % 200));
    rig.agent.kill();
    rig.start_agent();
  }
  publisher.join();
  REQUIRE(done);
  rig.check_exactly_once(readings, 180s);
  CHECK(made == kills);
}

TEST_CASE("TLS to the central: a verified server is used, an unverifiable one refused",
          "[uplink_e2e]") {
  TempDir certs;
  const auto ca_key = certs.file("ca.key");
  const auto ca_cert = certs.file("ca.pem");
  const auto key = certs.file("server.key");
  const auto csr = certs.file("server.csr");
  const auto cert = certs.file("server.pem");
  const auto ext = certs.file("ext.cnf");
  write_text_file(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  auto run = [&](std::vector<std::string> argv) {
    auto [code, output] = run_command(argv, certs.file("openssl.out"));
    INFO(output);
    REQUIRE(code == 0);
  };
  run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
       "-out", ca_cert, "-days", "2", "-subj", "/CN=meter-agent test CA"});
  run({"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
       "-subj", "/CN=localhost"});
  run({"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
       "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext});

  Rig rig;
  rig.central.kill();
  rig.central.start({}, CentralService::Tls{cert, key});
  const auto url = "https://localhost:" + std::to_string(rig.central.port());
  // Without the test CA the server cannot be verified: refused, nothing confirmed.
  rig.write_config(url);
  rig.start_agent();
  publish_readings(rig.broker.port(), 50, 5, kStart, "tls-pub");
  REQUIRE(rig.agent.wait_log("could not be verified", 30s));
  CHECK(rig.agent.metric("meter_agent_uplink_measurements_confirmed_total") == 0);
  CHECK(rig.central.count("SELECT count(*) FROM raw_events") == 0);
  // With it (a reload), the upload goes through.
  rig.write_config(url, "  ca_file: " + ca_cert + "\n");
  rig.agent.signal(SIGHUP);
  rig.check_exactly_once(50);
}

TEST_CASE(
    "a revoked token stops uploads without losing anything, a reload with the new one "
    "resumes at once",
    "[uplink_e2e]") {
  Rig rig("  auth_retry: 10m\n");
  rig.start_agent();
  publish_readings(rig.broker.port(), 100, 5, kStart, "tok-pub-1");
  rig.check_exactly_once(100);
  const auto fresh = rig.central.rotate_token();  // the agent's token is revoked
  publish_readings(rig.broker.port(), 100, 5, kStart, "tok-pub-2", 100);
  REQUIRE(wait_until([&] { return rig.agent.metric("meter_agent_uplink_auth_failed") == 1; }, 30s));
  REQUIRE(rig.agent.wait_log("uploads STOPPED"));
  {
    auto [code, output] =
        run_command({METER_AGENT_BINARY, "status", "--config", rig.agent.config_path()},
                    rig.agent.dir().file("status.out"));
    CHECK(code == 0);
    CHECK(output.find("UPLOADS STOPPED") != std::string::npos);
    CHECK(output.find(rig.central.token()) == std::string::npos);
  }
  CHECK(rig.agent.log().find(fresh) == std::string::npos);
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements") == 100);
  rig.write_token(fresh);
  const auto reloaded_at = std::chrono::steady_clock::now();
  rig.agent.signal(SIGHUP);
  rig.check_exactly_once(200);
  CHECK(std::chrono::steady_clock::now() - reloaded_at < 60s);  // not the 10-minute auth retry
  CHECK(rig.agent.metric("meter_agent_uplink_auth_failed") == 0);
}

TEST_CASE("a record the central rejects is quarantined with its reason and resent by requeue",
          "[uplink_e2e]") {
  Rig rig;
  rig.start_agent();
  TestPublisher publisher(rig.broker.port(), "rej-pub");
  const std::string long_topic = "meters/" + std::string(1100, 'x');
  publisher.publish("meters/m1", reading("m1", kStart, 1000));
  publisher.publish(long_topic, reading("m1", kStart + 60000, 2000));
  publisher.publish("meters/m1", reading("m1", kStart + 120000, 3000));
  publisher.flush();
  REQUIRE(wait_until(
      [&] { return rig.agent.metric("meter_agent_uplink_quarantined_records") == 1; }, 30s));
  REQUIRE(rig.agent.wait_log("too_long"));
  // The rest went through.
  REQUIRE(
      wait_until([&] { return rig.central.count("SELECT count(*) FROM raw_events") == 2; }, 30s));
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements") == 3);
  auto [code, status] =
      run_command({METER_AGENT_BINARY, "status", "--config", rig.agent.config_path()},
                  rig.agent.dir().file("status.out"));
  CHECK(code == 0);
  CHECK(status.find("quarantined     1 too_long=1") != std::string::npos);
  // The fix: a central that accepts longer topics. Then requeue.
  rig.central.kill();
  rig.central.start({{"CENTRAL_MAX_TOPIC_CHARS", "4096"}});
  auto [requeue_code, requeued] =
      run_command({METER_AGENT_BINARY, "requeue", "--config", rig.agent.config_path()},
                  rig.agent.dir().file("requeue.out"));
  CHECK(requeue_code == 0);
  CHECK(requeued.find("requeued 1 ") != std::string::npos);
  rig.check_exactly_once(3);
  CHECK(wait_until([&] { return rig.agent.metric("meter_agent_uplink_quarantined_records") == 0; },
                   10s));
}

TEST_CASE("a record the central answers 500 to is quarantined alone, the rest uploaded",
          "[uplink_e2e]") {
  // The proxy plays a central that fails (HTTP 500) on every request carrying
  // one raw event, as an uncaught exception on its content would.
  Rig rig("  gzip_level: 0\n");
  FaultRule poison = fault(Fault::status, 500);
  poison.only_if_contains = "poison-pill";
  rig.proxy.set_default(poison);
  rig.start_agent();
  TestPublisher publisher(rig.broker.port(), "poison-pub");
  publisher.publish("meters/m1", reading("m1", kStart, 1000));
  publisher.publish("meters/poison-pill", "{\"nested\":[[[\"\\ud800\"]]]}");
  publisher.publish("meters/m1", reading("m1", kStart + 60000, 2000));
  publisher.publish("meters/m1", reading("m1", kStart + 120000, 3000));
  publisher.flush();
  REQUIRE(wait_until(
      [&] { return rig.agent.metric("meter_agent_uplink_quarantined_records") == 1; }, 60s));
  REQUIRE(
      wait_until([&] { return rig.central.count("SELECT count(*) FROM raw_events") == 3; }, 30s));
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements") == 3);
  CHECK(rig.agent.wait_log("raw event seq 2 alone makes the central fail"));
  auto [code, status] =
      run_command({METER_AGENT_BINARY, "status", "--config", rig.agent.config_path()},
                  rig.agent.dir().file("status.out"));
  CHECK(code == 0);
  CHECK(status.find("server_error=1") != std::string::npos);
}

TEST_CASE("pruning by age deletes only confirmed records and keeps what deltas need",
          "[uplink_e2e]") {
  Rig rig("  retention: 1d\n  prune_interval: 100ms\n");
  rig.start_agent();
  // Readings from 2025: far older than a day, so pruned as soon as confirmed.
  publish_readings(rig.broker.port(), 300, 3, kStart, "prune-pub");
  // The central ends up with every reading, exact, although the agent prunes
  // while it uploads: nothing was pruned before it was confirmed.
  REQUIRE(wait_until(
      [&] { return rig.central.count("SELECT count(*) FROM normalized_measurements") == 300; }, 60s,
      100ms));
  CHECK(rig.central.count("SELECT count(*) FROM raw_events") == 300);
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements WHERE "
                          "(delta = 0.25 AND flags = '{}') OR "
                          "(delta IS NULL AND flags = '{first_reading}' AND value = 1)") == 300);
  // Every series keeps only its newest glitch_window + 1 measurements (the
  // default window is 3): the series rules may still revise them.
  REQUIRE(wait_until([&] { return rig.agent.measurements() == 3 * 4; }, 30s));
  CHECK(wait_until(
      [&] { return rig.agent.metric("meter_agent_uplink_pruned_measurements_total") == 288; },
      10s));
  // A newer reading still gets its exact delta from the kept one.
  TestPublisher publisher(rig.broker.port(), "prune-late");
  publisher.publish("meters/m0", reading("m0", kStart + 100 * 60000, 1000 + 100 * 250 + 500));
  publisher.flush();
  REQUIRE(wait_until(
      [&] { return rig.central.count("SELECT count(*) FROM normalized_measurements") == 301; },
      30s));
  const auto rows = rig.central.query(
      "SELECT delta::text FROM normalized_measurements WHERE device_id = 'm0' "
      "ORDER BY timestamp DESC LIMIT 1");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0] == "0.75");  // 26.5 kWh - 25.75 kWh
  // And an old reading arriving after its neighbours were pruned is flagged, not mis-computed.
  publisher.publish("meters/m1", reading("m1", kStart + 30000, 1100));
  publisher.flush();
  REQUIRE(wait_until(
      [&] { return rig.central.count("SELECT count(*) FROM normalized_measurements") == 302; },
      30s));
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements WHERE device_id = 'm1' "
                          "AND 'beyond_retention' = ANY(flags) AND delta IS NULL") == 1);
}

TEST_CASE(
    "the disk budget reached during an outage: MQTT is no longer acknowledged, nothing "
    "unconfirmed is deleted, and the agent resumes by itself when the central is back",
    "[uplink_e2e][budget]") {
  // The smallest budget buffer.max_size_mib accepts. The readings are padded
  // to ~560 bytes as real meters' are (METERS.md): a raw message takes a 1 KiB
  // page of its own, so 16 MiB hold some 12,000, and the redelivery window
  // (50,000 messages) would not fit if it were not bounded in bytes.
  constexpr std::int64_t kBudget = 16LL * 1024 * 1024;
  constexpr int kMeters = 20;
  const std::string padding = ",\"diagnostics\":\"" + std::string(440, 'd') + "\"}";
  auto publish = [&](TestPublisher& publisher, int i) {
    const auto device = "m" + std::to_string(i % kMeters);
    const std::int64_t step = i / kMeters;
    auto payload = reading(device, kStart + step * 60000, 1000 + step * 250);
    payload.replace(payload.size() - 1, 1, padding);
    publisher.publish("meters/" + device, payload);
  };
  RigOptions options;
  // A retention of 30 days (and the default hourly prune): confirmed data is
  // pruned for the budget, whatever its age, or the agent would stay deaf.
  options.uplink_extra = "  retention: 30d\n";
  options.buffer_extra = "  max_size_mib: 16\n";
  options.broker_extra = "sys_interval 1\n";  // $SYS/broker/store/messages/count every second
  options.batch_max_records = 1000;           // the default: a backlog of ~100,000 to upload
  Rig rig(options);
  rig.proxy.set_default(fault(Fault::refuse));  // the central is unreachable
  rig.start_agent();
  const pid_t agent_pid = rig.agent.pid();
  // Published after the budget is reached, and how long the outage lasts then.
  const int more = full_run() ? 3000 : 1000;
  const auto outage = full_run() ? std::chrono::milliseconds(90000) : 0ms;

  // 1. The meters publish at QoS 1 until the agent reports its budget reached.
  // The broker acknowledges them to the meters whatever the agent does.
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread meters([&] {
    TestPublisher publisher(rig.broker.port(), "budget-meters");
    for (int i = 0; !stop; ++i) {
      publish(publisher, i);
      published = i + 1;
    }
  });
  struct Stopper {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Stopper() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } stopper{stop, meters};
  const bool reported =
      wait_until([&] { return rig.agent.metric("meter_agent_buffer_over_budget") == 1; }, 120s);
  stop = true;
  meters.join();  // every PUBACK received (the publisher's destructor waits for them)
  INFO("agent log:\n" << rig.agent.log().substr(0, 6000));
  REQUIRE(reported);
  int total = published;
  {
    TestPublisher publisher(rig.broker.port(), "budget-meters");
    for (int i = total; i < total + more; ++i) publish(publisher, i);
    total += more;
  }

  // 2. The agent stops acknowledging: its acknowledge path refuses the same
  // message again and again while the count of acknowledged messages stays put.
  std::int64_t acknowledged = -1;
  const bool stalled = wait_until(
      [&] {
        const auto text = rig.agent.metrics();
        if (metric_value(text, "meter_agent_append_blocked") != 1) return false;
        const auto appended = metric_value(text, "meter_agent_messages_appended_total");
        const auto failures = metric_value(text, "meter_agent_append_failures_total");
        if (!wait_until(
                [&] {
                  return rig.agent.metric("meter_agent_append_failures_total") >= failures + 2;
                },
                15s, 20ms) ||
            rig.agent.metric("meter_agent_messages_appended_total") != appended) {
          return false;
        }
        acknowledged = appended;
        return true;
      },
      60s, 50ms);
  INFO("agent metrics:\n" << rig.agent.metrics());
  REQUIRE(stalled);
  INFO("acknowledged by the agent: " << acknowledged << " of " << total);
  REQUIRE(acknowledged < total);
  CHECK(rig.agent.metric("meter_agent_buffer_over_budget") == 1);
  CHECK(rig.agent.metric("meter_agent_buffer_used_bytes") > kBudget - kBudgetSlack);
  CHECK(rig.agent.log().find("the buffer reached its disk budget") != std::string::npos);
  CHECK(rig.agent.log().find("NOT acknowledging") != std::string::npos);
  CHECK(rig.status_text().find("OVER BUDGET") != std::string::npos);
  CHECK(http_get(rig.agent.http_port(), "/healthz").find(" 503 ") != std::string::npos);

  // 3. The broker holds the rest for the agent's session (its store counts
  // every message a session has still to receive).
  {
    TestSubscriber broker_store(rig.broker.port(), "budget-sys",
                                "$SYS/broker/store/messages/count");
    std::int64_t stored = 0;
    const bool held = wait_until(
        [&] {
          if (auto message = broker_store.next(200ms)) {
            stored = std::stoll(message->get_payload_str());
          }
          return stored >= total - acknowledged;
        },
        15s, 1ms);
    INFO("messages in the broker's store: " << stored);
    CHECK(held);
  }

  // 4. Nothing was deleted and nothing went out: every raw message and every
  // measurement the agent stored is still there (sequence numbers are never
  // reused: a deleted raw message would leave last_seq above the count), and
  // what it acknowledged is all in the raw log.
  REQUIRE(wait_until(
      [&] {
        auto buffered = rig.agent.open_buffer()->status();
        return buffered && buffered->last_seq == acknowledged &&
               buffered->normalized_through_seq == acknowledged;
      },
      60s, 100ms));
  std::set<std::string> exported_while_full;
  {
    const auto outage_end = std::chrono::steady_clock::now() + outage;
    std::int64_t measurements = 0;
    for (;;) {
      {
        auto buffered = rig.agent.open_buffer()->status();
        REQUIRE(buffered);
        CHECK(buffered->raw_messages == acknowledged);
        CHECK(buffered->last_seq == acknowledged);
        CHECK(buffered->measurements >= measurements);
        CHECK(buffered->unsynced == buffered->measurements);
        measurements = buffered->measurements;
      }
      CHECK(rig.agent.metric("meter_agent_buffer_over_budget") == 1);
      CHECK(rig.agent.metric("meter_agent_messages_appended_total") == acknowledged);
      CHECK(rig.agent.metric("meter_agent_uplink_measurements_confirmed_total") == 0);
      if (std::chrono::steady_clock::now() >= outage_end) break;
      std::this_thread::sleep_for(1s);  // looking again during the outage, not waiting for it
    }
    // What the agent holds now is what the central must end up with.
    exported_while_full = rig.agent_rows();
    CHECK(static_cast<std::int64_t>(exported_while_full.size()) == measurements);
  }
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements") == 0);
  // What the agent had acknowledged before it stopped is all stored now: it
  // counted it at what it takes stored, so the budget holds. (Counted at its
  // own size, an inbox the normalizer had not caught up with let this reach
  // 33 MB.)
  {
    const auto used = rig.agent.open_buffer()->used_bytes();
    REQUIRE(used);
    CHECK(*used <= kBudget);
  }

  // What the agent holds and the central has, for failure messages.
  auto describe = [&] {
    const auto text = rig.agent.metrics();
    auto buffered = rig.agent.open_buffer()->status();
    std::ostringstream out;
    out << "central: " << rig.central.count("SELECT count(*) FROM normalized_measurements")
        << " of " << total << " measurements; agent: over_budget "
        << metric_value(text, "meter_agent_buffer_over_budget") << ", used bytes "
        << metric_value(text, "meter_agent_buffer_used_bytes") << " of " << kBudget
        << ", acknowledged " << metric_value(text, "meter_agent_messages_appended_total")
        << ", raw log " << buffered->raw_messages << " (last seq " << buffered->last_seq
        << "), measurements " << buffered->measurements << " (" << buffered->unsynced
        << " unsynced), database file " << buffered->database_bytes << " bytes, WAL "
        << buffered->wal_bytes << " bytes; pruned: raw "
        << metric_value(text, "meter_agent_uplink_pruned_raw_total") << ", measurements "
        << metric_value(text, "meter_agent_uplink_pruned_measurements_total");
    return out.str();
  };

  // 5. The central is back: the agent uploads, prunes what was confirmed, gets
  // below its budget and acknowledges again, by itself.
  rig.proxy.set_default(fault(Fault::pass));
  {
    const bool resumed =
        rig.agent.wait_log("below its disk budget again", 120s) &&
        wait_until(
            [&] { return rig.agent.metric("meter_agent_messages_appended_total") > acknowledged; },
            30s);
    INFO(describe());
    REQUIRE(resumed);
  }
  {
    const bool all_in_central = wait_until(
        [&] { return rig.central.count("SELECT count(*) FROM normalized_measurements") == total; },
        full_run() ? 600s : 120s, 200ms);
    INFO(describe());
    REQUIRE(all_in_central);
  }
  {
    // The broker's held messages arrive at once after the resume; with a
    // backlog bigger than the room made, the agent may be at its budget again
    // for a moment, until the uplink confirms and prunes again.
    const bool below =
        wait_until([&] { return rig.agent.metric("meter_agent_buffer_over_budget") == 0; }, 60s);
    INFO(describe());
    CHECK(below);
  }
  CHECK(rig.agent.metric("meter_agent_uplink_budget_prunes_total") > 0);
  CHECK(rig.agent.log().find("before uplink.retention") != std::string::npos);
  CHECK(rig.agent.pid() == agent_pid);
  CHECK(::kill(agent_pid, 0) == 0);
  const auto log = rig.agent.log();
  CHECK(log.find("starting") == log.rfind("starting"));  // started once: no restart

  // 6. Every reading exactly once, as the agent had it: the rows it held when
  // full (since confirmed and pruned) and the ones it keeps now are in the
  // central as they were, and every row is what the meters published (per
  // meter a counter rising by 0.25 kWh).
  REQUIRE(wait_until(
      [&] {
        auto buffer = rig.agent.open_buffer();
        auto buffered = buffer->status();
        auto sync = buffer->sync_status();
        return buffered && sync && buffered->last_seq == buffered->normalized_through_seq &&
               sync->waiting() == 0;
      },
      60s, 100ms));
  const auto rows = rig.central_rows();
  const std::set<std::string> stored(rows.begin(), rows.end());
  CHECK(rows.size() == stored.size());
  CHECK(static_cast<std::int64_t>(stored.size()) == total);
  CHECK(rig.central.count("SELECT count(DISTINCT event_id) FROM normalized_measurements") == total);
  auto missing_from_central = [&](const std::set<std::string>& exported) {
    std::int64_t missing = 0;
    for (const auto& row : exported) {
      if (!stored.count(row) && missing++ < 5) UNSCOPED_INFO("agent only: " << row);
    }
    return missing;
  };
  CHECK(missing_from_central(exported_while_full) == 0);
  CHECK(missing_from_central(rig.agent_rows()) == 0);
  CHECK(rig.central.count("SELECT count(*) FROM normalized_measurements WHERE "
                          "(delta = 0.25 AND flags = '{}') OR "
                          "(delta IS NULL AND flags = '{first_reading}' AND value = 1)") == total);
  // Every raw message the agent logged, once (a redelivered message may be
  // logged twice, as MQTT DUP, but is one measurement).
  const auto last_seq = rig.agent.open_buffer()->status()->last_seq;
  CHECK(last_seq >= total);
  CHECK(rig.central.count("SELECT count(*) FROM raw_events") == last_seq);
}

TEST_CASE(
    "two requests in flight: an answer that arrives behind a failed request confirms its "
    "measurements but never lets the raw watermark skip the failed batch",
    "[uplink_e2e]") {
  Rig rig("  max_in_flight: 2\n");
  rig.start_agent();
  // A backlog of several batches (200 records per array) behind an outage.
  rig.proxy.set_default(fault(Fault::refuse));
  const int readings = 1000;
  publish_readings(rig.broker.port(), readings, 10, kStart, "pipe-pub");
  REQUIRE(wait_until(
      [&] {
        auto status = rig.agent.open_buffer()->status();
        return status && status->measurements == readings;
      },
      30s));
  // The central comes back, except that the first request to arrive is
  // refused (the central never sees it) while the one selected behind it is
  // forwarded and answered. The agent launches both before waiting for the
  // first, so the refused one is the first batch: were the second's answer
  // allowed to move the raw watermark, the first batch's raw events would
  // never be sent and the central's raw_events count would fall short.
  const auto before = rig.proxy.forwarded();
  rig.proxy.push(fault(Fault::refuse));
  rig.proxy.set_default(fault(Fault::pass));
  rig.check_exactly_once(readings);
  CHECK(rig.proxy.forwarded() > before);
  CHECK(rig.agent.metric("meter_agent_uplink_requests_in_flight") == 0);
}
