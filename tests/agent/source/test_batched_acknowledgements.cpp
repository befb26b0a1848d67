// The batched connection's central promise (agent/source/batched_source.hpp),
// on a scripted transport (the seam BatchedSource::Shared::connect) and a real
// inbox: no PUBACK before the messages are committed, PUBACKs in the order the
// messages came, and a refused commit holds them all back until it succeeds.
// The whole connection against a real mosquitto: test_batched_source.cpp.
#include <catch2/catch.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>

#include "agent/source/acknowledge_path.hpp"
#include "agent/source/batched_source.hpp"
#include "support/manual_clock.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::agent;
using namespace std::chrono_literals;

namespace {

std::string length_prefixed(const std::string& text) {
  return std::string{static_cast<char>(text.size() >> 8), static_cast<char>(text.size() & 0xff)} +
         text;
}

// A broker's QoS 1 PUBLISH in MQTT 3.1.1 (bodies under 128 bytes).
std::string publish(const std::string& topic, const std::string& payload, std::uint16_t id) {
  const std::string body = length_prefixed(topic) +
                           std::string{static_cast<char>(id >> 8), static_cast<char>(id & 0xff)} +
                           payload;
  REQUIRE(body.size() < 128);
  return std::string{'\x32', static_cast<char>(body.size())} + body;
}

// A QoS 0 PUBLISH (no packet id, nothing to acknowledge).
std::string publish_qos0(const std::string& topic, const std::string& payload) {
  const std::string body = length_prefixed(topic) + payload;
  REQUIRE(body.size() < 128);
  return std::string{'\x30', static_cast<char>(body.size())} + body;
}

// What the broker sends and what the client wrote, shared with the test.
struct Wire {
  std::mutex mutex;
  std::condition_variable arrived;
  std::string to_client;
  std::string from_client;
  int connects = 0;

  void send(const std::string& bytes) {
    std::lock_guard lock(mutex);
    to_client += bytes;
    arrived.notify_all();
  }
  std::string written() {
    std::lock_guard lock(mutex);
    return from_client;
  }
};

class ScriptedTransport final : public MqttTransport {
 public:
  explicit ScriptedTransport(Wire& wire) : wire_(wire) {}
  Result<std::size_t> read(std::string& into, std::size_t max_bytes,
                           std::chrono::milliseconds timeout) override {
    std::unique_lock lock(wire_.mutex);
    wire_.arrived.wait_for(lock, timeout, [&] { return !wire_.to_client.empty(); });
    const auto n = std::min(max_bytes, wire_.to_client.size());
    into += wire_.to_client.substr(0, n);
    wire_.to_client.erase(0, n);
    return n;
  }
  Status write(std::string_view bytes, std::chrono::milliseconds) override {
    std::lock_guard lock(wire_.mutex);
    wire_.from_client += bytes;
    // The broker's answers to CONNECT and SUBSCRIBE (packet id 1).
    if (bytes.size() > 0 && static_cast<unsigned char>(bytes[0]) == 0x10) {
      wire_.to_client += std::string("\x20\x02\x00\x00", 4);
    } else if (bytes.size() > 0 && static_cast<unsigned char>(bytes[0]) == 0x82) {
      wire_.to_client += std::string("\x90\x03\x00\x01\x01", 5);
    }
    wire_.arrived.notify_all();
    return Ok{};
  }
  void close() override {}
  std::string describe() const override { return "tcp://scripted:1883"; }

 private:
  Wire& wire_;
};

// The PUBACKs in what the client wrote, as packet ids in order.
std::vector<int> pubacks(const std::string& written) {
  std::vector<int> ids;
  for (std::size_t at = written.find("\x40\x02", 0, 2); at != std::string::npos;
       at = written.find("\x40\x02", at + 4, 2)) {
    if (at + 4 > written.size()) break;
    ids.push_back((static_cast<unsigned char>(written[at + 2]) << 8) |
                  static_cast<unsigned char>(written[at + 3]));
  }
  return ids;
}

struct Rig {
  Rig() : logger(log, false) {
    auto parsed = parse_config(
        "gateway_id: gw\nmetrics:\n  energy: {kind: counter, unit: kWh}\n"
        "mappings:\n  - topic: meters/#\nmqtt:\n  acknowledge: batched\n",
        "t.yaml");
    REQUIRE(parsed);
    config = std::make_shared<const Config>(std::move(*parsed));
    auto writer = InboxWriter::open(buffer_path(), true, 0);
    REQUIRE(writer);
    progress.publish((*writer)->position());
    path = std::make_unique<AcknowledgePath>(
        std::move(*writer),
        AcknowledgePath::Shared{budget, progress, metrics, logger, [] {}, max_page_count},
        kInboxMaxBytes);
    source = std::make_unique<BatchedSource>(BatchedSource::Shared{
        [this] { return config; }, *path, metrics, logger, clock, buffer_path(),
        [this](const MqttConfig&,
               std::chrono::milliseconds) -> Result<std::unique_ptr<MqttTransport>> {
          {
            std::lock_guard lock(wire.mutex);
            ++wire.connects;
          }
          return std::unique_ptr<MqttTransport>(std::make_unique<ScriptedTransport>(wire));
        }});
  }
  ~Rig() { source->stop(std::chrono::steady_clock::now()); }
  std::string buffer_path() const { return dir.file("buffer.db"); }
  std::vector<RawMessage> inbox() const {
    auto batch = read_inbox(buffer_path(), {}, 1000, true);
    REQUIRE(batch);
    return batch->messages;
  }

  test::TempDir dir;
  std::shared_ptr<const Config> config;
  DiskBudget budget;
  InboxProgress progress;
  Metrics metrics;
  std::ostringstream log;
  Logger logger;
  test::ManualClock clock;
  std::atomic<std::int64_t> max_page_count{0};
  std::unique_ptr<AcknowledgePath> path;
  Wire wire;
  std::unique_ptr<BatchedSource> source;
};

}  // namespace

TEST_CASE("batched connection: PUBACKs only after the commit, in arrival order",
          "[batched_source]") {
  Rig rig;
  rig.source->start();
  REQUIRE(test::wait_until([&] { return rig.metrics.batched_connected.load(); }, 10s, 1ms));

  // The disk budget is used up: nothing can be committed.
  rig.budget.set_limit(1024 * 1024);
  (void)rig.budget.record(1024 * 1024, 0);
  std::string burst;
  for (int i = 0; i < 5; ++i) {
    burst += publish("meters/m" + std::to_string(i), "reading " + std::to_string(i),
                     static_cast<std::uint16_t>(10 + i));
  }
  rig.wire.send(burst);
  // Refused, retried with backoff: and nothing acknowledged meanwhile.
  REQUIRE(test::wait_until([&] { return rig.metrics.append_failures.load() >= 2; }, 20s, 1ms));
  CHECK(pubacks(rig.wire.written()).empty());
  CHECK(rig.inbox().empty());

  (void)rig.budget.record(0, rig.budget.acknowledged_bytes());  // room again
  REQUIRE(test::wait_until([&] { return pubacks(rig.wire.written()).size() == 5; }, 20s, 1ms));
  CHECK(pubacks(rig.wire.written()) == std::vector<int>{10, 11, 12, 13, 14});
  const auto stored = rig.inbox();
  REQUIRE(stored.size() == 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(stored[i].topic == "meters/m" + std::to_string(i));
    CHECK(stored[i].payload == "reading " + std::to_string(i));
    CHECK(stored[i].qos == 1);
    CHECK(stored[i].received_ms == rig.clock.now_ms());
  }
  // The five shared one sync.
  CHECK(rig.metrics.group_commits == 1);
  CHECK(rig.metrics.appended == 5);
}

TEST_CASE(
    "batched connection: a malformed packet closes the connection, and what came before it "
    "is stored, unacknowledged",
    "[batched_source]") {
  Rig rig;
  rig.source->start();
  REQUIRE(test::wait_until([&] { return rig.metrics.batched_connected.load(); }, 10s, 1ms));
  // QoS 3 does not exist: the parser refuses, the connection is dropped and
  // opened again (the broker would send the message again).
  rig.wire.send(publish("meters/a", "x", 7) + publish_qos0("meters/b", "y") +
                std::string("\x36\x00", 2));
  REQUIRE(test::wait_until([&] { return rig.metrics.batched_connection_failures.load() >= 1; }, 20s,
                           1ms));
  CHECK(pubacks(rig.wire.written()).empty());
  // Opened again after the backoff.
  CHECK(test::wait_until(
      [&] {
        std::lock_guard lock(rig.wire.mutex);
        return rig.wire.connects >= 2;
      },
      10s, 1ms));
  rig.source->stop(std::chrono::steady_clock::now());  // the log is read once nothing writes it
  CHECK(rig.log.str().find("closing the connection") != std::string::npos);
  // Stored all the same: the QoS 0 one would never come again.
  const auto stored = rig.inbox();
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].payload == "x");
  CHECK(stored[1].payload == "y");
  CHECK(stored[1].qos == 0);
}
