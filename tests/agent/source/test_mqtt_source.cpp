// The MQTT source (agent/source/mqtt_source.hpp) against a real mosquitto,
// with a sink that records what it is handed and decides when to return
// (returning is the PUBACK).
#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "agent/source/mqtt_source.hpp"
#include "support/manual_clock.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"
#include "support/process.hpp"

using namespace meter;
using namespace meter::agent;
using namespace std::chrono_literals;

namespace {

class RecordingSink final : public MessageSink {
 public:
  void commit(const RawMessage& message) override {
    std::unique_lock lock(mutex_);
    ++entered_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
    messages_.push_back(message);
  }
  // While closed, commit() holds each message (the broker gets no PUBACK).
  void close() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }
  bool wait_entered(int count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return entered_ >= count; });
  }
  std::vector<RawMessage> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return messages_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = true;
  int entered_ = 0;
  std::vector<RawMessage> messages_;
};

Config source_config(int port, const std::string& topic = "meters/#") {
  auto parsed = parse_config(
      "gateway_id: source-gw\n"
      "metrics:\n  energy: {kind: counter, unit: kWh}\n"
      "mappings:\n  - topic: \"" +
          topic +
          "\"\n"
          "mqtt:\n  host: 127.0.0.1\n  port: " +
          std::to_string(port) +
          // The Paho connection subscribing itself (batched is the daemon's default).
          "\n  acknowledge: each\n  keepalive: 5s\n  reconnect: {min: 100ms, max: 500ms}\n",
      "<test>");
  if (!parsed) FAIL(parsed.error().message);
  return *parsed;
}

// The source with a supervising thread standing in for the daemon's main loop.
struct Rig {
  explicit Rig(int port)
      : config(std::make_shared<const Config>(source_config(port))), logger(log, false) {
    source = std::make_unique<MqttSource>(MqttSource::Shared{
        [this] {
          std::lock_guard lock(config_mutex);
          return config;
        },
        sink, metrics, logger, clock, [this] { wake.notify_all(); }, std::nullopt});
    source->start();
    supervisor = std::thread([this] {
      std::unique_lock lock(loop_mutex);
      while (!done) {
        lock.unlock();
        source->supervise();
        lock.lock();
        wake.wait_for(lock, 20ms, [&] { return done || source->needs_supervision(); });
      }
    });
  }
  ~Rig() { stop_supervising(); }
  void stop_supervising() {
    {
      std::lock_guard lock(loop_mutex);
      done = true;
    }
    wake.notify_all();
    if (supervisor.joinable()) supervisor.join();
  }
  void swap_config(Config fresh) {
    auto before = config;
    {
      std::lock_guard lock(config_mutex);
      config = std::make_shared<const Config>(std::move(fresh));
    }
    // reconfigure runs on the supervising thread in the daemon; here it is stopped meanwhile.
    stop_supervising();
    source->reconfigure(*before, *config);
    done = false;
    supervisor = std::thread([this] {
      std::unique_lock lock(loop_mutex);
      while (!done) {
        lock.unlock();
        source->supervise();
        lock.lock();
        wake.wait_for(lock, 20ms, [&] { return done || source->needs_supervision(); });
      }
    });
  }

  std::mutex config_mutex;
  std::shared_ptr<const Config> config;
  RecordingSink sink;
  Metrics metrics;
  std::ostringstream log;
  Logger logger;
  test::ManualClock clock;
  std::unique_ptr<MqttSource> source;
  std::mutex loop_mutex;
  std::condition_variable wake;
  bool done = false;
  std::thread supervisor;
};

}  // namespace

TEST_CASE("mqtt source: messages reach the sink stamped by the clock, status online, then offline",
          "[daemon][source]") {
  test::Mosquitto broker;
  test::TestSubscriber status(broker.port(), "status-watcher", "meter-agent/source-gw/status");
  Rig rig(broker.port());
  REQUIRE(test::wait_until([&] { return rig.metrics.mqtt_connected.load(); }, 20s));
  CHECK(status.wait_for_payload("\"status\":\"online\"", 10s));
  {
    test::TestPublisher publisher(broker.port(), "source-publisher");
    publisher.publish("meters/d1", "first");
    publisher.publish("meters/d2", "second");
    publisher.publish("other/d3", "not subscribed");
    publisher.flush();
  }
  REQUIRE(test::wait_until([&] { return rig.sink.count() == 2; }, 20s));
  const auto messages = rig.sink.messages();
  CHECK(messages[0].topic == "meters/d1");
  CHECK(messages[0].payload == "first");
  CHECK(messages[0].qos == 1);
  CHECK(messages[0].received_ms == rig.clock.now_ms());
  CHECK(messages[1].payload == "second");
  CHECK(rig.metrics.received == 2);

  rig.stop_supervising();
  CHECK(rig.source->stop(std::chrono::steady_clock::now() + 10s));
  CHECK(status.wait_for_payload("\"status\":\"offline\"", 10s));
  CHECK_FALSE(rig.metrics.mqtt_connected);
}

TEST_CASE("mqtt source: stop waits for a message the sink still holds", "[daemon][source]") {
  test::Mosquitto broker;
  Rig rig(broker.port());
  REQUIRE(test::wait_until([&] { return rig.metrics.mqtt_connected.load(); }, 20s));
  rig.sink.close();
  // From another process: Paho runs every client of this one on the thread the sink holds.
  REQUIRE(std::system(("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                       " -q 1 -t meters/d1 -m held")
                          .c_str()) == 0);
  REQUIRE(rig.sink.wait_entered(1, 20s));
  rig.stop_supervising();
  std::atomic<int> stopped{-1};
  std::thread stopper(
      [&] { stopped = rig.source->stop(std::chrono::steady_clock::now() + 30s) ? 1 : 0; });
  CHECK(rig.sink.count() == 0);
  rig.sink.open();
  stopper.join();
  CHECK(stopped == 1);
  CHECK(rig.sink.count() == 1);
}

TEST_CASE("mqtt source: reconnects after the broker restarts, the session keeps the subscription",
          "[daemon][source]") {
  test::Mosquitto broker;
  Rig rig(broker.port());
  REQUIRE(test::wait_until([&] { return rig.metrics.mqtt_connected.load(); }, 20s));
  broker.restart();
  REQUIRE(test::wait_until([&] { return rig.metrics.connections_lost.load() == 1; }, 30s));
  // The backoff runs on the injected clock: the next attempt is due once it moves.
  rig.clock.advance(std::chrono::seconds(1));
  const bool reconnected =
      test::wait_until([&] { return rig.metrics.reconnects.load() == 1; }, 30s);
  INFO(rig.log.str());
  REQUIRE(reconnected);
  REQUIRE(test::wait_until([&] { return rig.metrics.mqtt_connected.load(); }, 30s));
  CHECK(rig.metrics.connections_lost == 1);
  {
    test::TestPublisher publisher(broker.port(), "source-publisher-2");
    publisher.publish("meters/d1", "after restart");
  }
  REQUIRE(test::wait_until([&] { return rig.sink.count() == 1; }, 20s));
  CHECK(rig.log.str().find("session resumed") != std::string::npos);
}

TEST_CASE("mqtt source: a reload with other topic filters changes only the subscriptions",
          "[daemon][source]") {
  test::Mosquitto broker;
  Rig rig(broker.port());
  REQUIRE(test::wait_until([&] { return rig.metrics.mqtt_connected.load(); }, 20s));
  rig.swap_config(source_config(broker.port(), "site/+/energy"));
  REQUIRE(test::wait_until(
      [&] { return rig.log.str().find("subscribed to 'site/+/energy'") != std::string::npos; },
      20s));
  CHECK(rig.log.str().find("unsubscribed from 'meters/#'") != std::string::npos);
  CHECK(rig.metrics.connects == 1);  // the same connection
  {
    test::TestPublisher publisher(broker.port(), "source-publisher-3");
    publisher.publish("meters/d1", "old filter");
    publisher.publish("site/h1/energy", "new filter");
  }
  REQUIRE(test::wait_until([&] { return rig.sink.count() >= 1; }, 20s));
  CHECK(rig.sink.messages().front().payload == "new filter");
}

TEST_CASE("mqtt source: which config changes need a new connection", "[source]") {
  const Config base = source_config(1883);
  Config backoff = base;
  backoff.mqtt.reconnect_max_ms *= 2;
  CHECK_FALSE(connection_settings_differ(base, backoff));
  Config filters = source_config(1883, "site/#");
  CHECK_FALSE(connection_settings_differ(base, filters));
  Config keepalive = base;
  keepalive.mqtt.keepalive_ms += 1000;
  CHECK(connection_settings_differ(base, keepalive));
  Config tls = base;
  tls.mqtt.tls.ca_file = "/etc/ca.pem";
  CHECK(connection_settings_differ(base, tls));
  Config gateway = base;
  gateway.gateway_id = "another";
  CHECK(connection_settings_differ(base, gateway));
  // 1883 written out or left to its default is the same server.
  Config default_port = base;
  default_port.mqtt.port = 0;
  CHECK_FALSE(connection_settings_differ(base, default_port));
  Config other_port = base;
  other_port.mqtt.port = 1884;
  CHECK(connection_settings_differ(base, other_port));
  CHECK(topic_filters(filters) == std::set<std::string>{"site/#"});
}
