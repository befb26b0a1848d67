// Every preset in config/presets/ end to end: a real mosquitto on a free
// loopback port, the real `meter-agent run` with `mappings: - preset: NAME`
// (presets_dir pointing at the source tree), the real-looking payloads of
// tests/data/payloads/ published at QoS 1 to the preset's topics, and the
// exact canonical measurements read back from the agent's buffer. Messages
// that carry no reading must produce no measurement (counted as ignored).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/model/flags.hpp"
#include "support/agent_process.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

std::string payload_file(const std::string& name) {
  const std::string text =
      read_text_file(std::string(METER_SOURCE_DIR) + "/tests/data/payloads/" + name);
  REQUIRE_FALSE(text.empty());
  // The files end with a newline; a device sends the bare document.
  const auto end = text.find_last_not_of(" \n\r\t");
  return text.substr(0, end + 1);
}

std::string preset_mappings(const std::string& preset) {
  return "presets_dir: " + std::string(METER_SOURCE_DIR) +
         "/config/presets\n"
         "metrics:\n"
         "  energy: {kind: counter, unit: kWh}\n"
         "  power: {kind: gauge, unit: kW}\n"
         "mappings:\n"
         "  - preset: " +
         preset + "\n";
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

FlagSet flags_of(std::initializer_list<Flag> flags) {
  FlagSet set = 0;
  for (const Flag f : flags) set |= flag_bit(f);
  return set;
}

struct Expected {
  std::string device_id;
  std::string metric_type;
  std::string value;  // canonical decimal text
  std::string unit;   // canonical unit
  FlagSet flags = 0;
  std::int64_t timestamp_ms = 0;  // 0: the receive time (checked against the publish window)
};

struct Outcome {
  std::vector<Measurement> measurements;
  BufferStatus status;
  std::int64_t published_from_ms = 0;
  std::int64_t published_to_ms = 0;
};

// Starts a broker and the agent with `preset`, publishes `messages` (topic,
// payload) at QoS 1, and waits until the agent has stored and normalized all.
Outcome run_preset(const std::string& preset,
                   const std::vector<std::pair<std::string, std::string>>& messages) {
  Mosquitto broker;
  AgentProcess agent(broker.port(), "", preset_mappings(preset), "presets-gw");
  agent.start();
  if (!agent.wait_connected()) FAIL("the agent did not connect; its log:\n" << agent.log());

  Outcome outcome;
  outcome.published_from_ms = now_ms();
  {
    TestPublisher publisher(broker.port(), "preset-publisher-" + preset);
    for (const auto& [topic, payload] : messages) publisher.publish(topic, payload);
    publisher.flush();
    REQUIRE(publisher.acknowledged() == static_cast<long>(messages.size()));
  }
  const auto count = static_cast<std::int64_t>(messages.size());
  const bool settled = wait_until(
      [&] {
        auto status = agent.open_buffer()->status();
        return status && status->raw_messages == count &&
               status->normalized_through_seq == status->last_seq;
      },
      15s, 20ms);
  outcome.published_to_ms = now_ms();
  INFO("agent log:\n" << agent.log());
  REQUIRE(settled);

  auto buffer = agent.open_buffer();
  auto status = buffer->status();
  REQUIRE(status);
  outcome.status = *status;
  REQUIRE(buffer->for_each_measurement(
      [&](const Measurement& m) { outcome.measurements.push_back(m); }));
  buffer.reset();
  REQUIRE(agent.stop() == 0);
  return outcome;
}

void require_measurements(const Outcome& outcome, const std::vector<Expected>& expected) {
  std::map<std::string, const Measurement*> by_key;
  for (const auto& m : outcome.measurements) {
    const std::string key = m.device_id + "|" + m.metric_type;
    INFO("measurement " << key << " = " << m.value << " " << m.unit);
    REQUIRE(by_key.emplace(key, &m).second);  // one per series here
  }
  for (const auto& e : expected) {
    const std::string key = e.device_id + "|" + e.metric_type;
    INFO("expected " << key << " = " << e.value << " " << e.unit);
    const auto found = by_key.find(key);
    REQUIRE(found != by_key.end());
    const Measurement& m = *found->second;
    CHECK(m.value == e.value);
    CHECK(m.unit == e.unit);
    CHECK(join_flags(m.flags, ';') == join_flags(e.flags, ';'));
    if (e.timestamp_ms != 0) {
      CHECK(m.timestamp_ms == e.timestamp_ms);
    } else {
      // The gateway's receive time: within the publish window.
      CHECK(m.timestamp_ms >= outcome.published_from_ms);
      CHECK(m.timestamp_ms <= outcome.published_to_ms);
    }
  }
  CHECK(outcome.measurements.size() == expected.size());
}

const FlagSet kGateway = flags_of({Flag::gateway_timestamp});
const FlagSet kFirstGateway = flags_of({Flag::first_reading, Flag::gateway_timestamp});
const FlagSet kFirst = flags_of({Flag::first_reading});

}  // namespace

TEST_CASE("presets over MQTT: seed", "[presets_mqtt]") {
  const auto outcome = run_preset(
      "seed",
      {
          {"meters/m1",
           R"({"device_id":"m1","timestamp":"2024-01-01T10:00:00Z","metric_type":"energy",)"
           R"("value":1234.5,"unit":"kWh"})"},
          // An array; Wh converted to kWh exactly; an offset; no timestamp.
          {"meters/site/m2",
           R"([{"device_id":"m2","timestamp":"2024-01-01T10:00:00+01:00","metric_type":"energy",)"
           R"("value":1500,"unit":"Wh"},)"
           R"({"device_id":"m2","metric_type":"power","value":2300,"unit":"W"}])"},
          {"meters/m1/status", "online"},  // no reading
      });
  require_measurements(outcome, {
                                    {"m1", "energy", "1234.5", "kWh", kFirst, 1704103200000},
                                    {"m2", "energy", "1.5", "kWh", kFirst, 1704099600000},
                                    {"m2", "power", "2.3", "kW", kGateway, 0},
                                });
  CHECK(outcome.status.ignored == 1);
  CHECK(outcome.status.decode_errors == 0);
}

TEST_CASE("presets over MQTT: tasmota", "[presets_mqtt]") {
  const auto outcome = run_preset(
      "tasmota", {
                     {"tele/tasmota_A1B2C3/SENSOR", payload_file("tasmota-sensor.json")},
                     {"tele/tasmota_dual/SENSOR", payload_file("tasmota-sensor-2ch.json")},
                     // A device without an energy monitor: no reading.
                     {"tele/tasmota_temp/SENSOR", payload_file("tasmota-sensor-ds18b20.json")},
                     {"tele/tasmota_temp/SENSOR", "Offline"},  // no reading
                 });
  require_measurements(outcome,
                       {
                           // ENERGY.Total (not Today/Yesterday/Period), Power 45 W.
                           {"tasmota_A1B2C3", "energy", "123.456", "kWh", kFirstGateway, 0},
                           {"tasmota_A1B2C3", "power", "0.045", "kW", kGateway, 0},
                           // Total is a scalar; Power an array per channel.
                           {"tasmota_dual", "energy", "1.53", "kWh", kFirstGateway, 0},
                           {"tasmota_dual/ch1", "power", "0.012", "kW", kGateway, 0},
                           {"tasmota_dual/ch2", "power", "0", "kW", kGateway, 0},
                       });
  CHECK(outcome.status.ignored == 2);
  CHECK(outcome.status.decode_errors == 0);
}

TEST_CASE("presets over MQTT: shelly_em", "[presets_mqtt]") {
  const std::string device = "shellypro3em-a8032abe54dc";
  const auto outcome = run_preset(
      "shelly_em", {
                       {device + "/status/em:0", payload_file("shelly-em-status.json")},
                       {device + "/status/emdata:0", payload_file("shelly-emdata-status.json")},
                       {device + "/status/sys", payload_file("shelly-sys-status.json")},  // ignored
                   });
  require_measurements(outcome, {
                                    {device, "power", "0.7155", "kW", kGateway, 0},  // 715.5 W
                                    {device, "energy", "4.84102", "kWh", kFirstGateway, 0},  // Wh
                                });
  CHECK(outcome.status.ignored == 1);
  CHECK(outcome.status.decode_errors == 0);
}

TEST_CASE("presets over MQTT: zigbee2mqtt", "[presets_mqtt]") {
  const auto outcome = run_preset(
      "zigbee2mqtt", {
                         // A friendly name with '/': the device id is every level after the base.
                         {"zigbee2mqtt/living room/plug", payload_file("z2m-plug.json")},
                         // null attributes (not reported yet): no reading.
                         {"zigbee2mqtt/garage/plug", payload_file("z2m-plug-not-reported.json")},
                         {"zigbee2mqtt/bridge/state", R"({"state":"online"})"},
                         {"zigbee2mqtt/living room/plug/availability", "online"},
                     });
  require_measurements(outcome,
                       {
                           {"living room/plug", "energy", "12.34", "kWh", kFirstGateway, 0},
                           {"living room/plug", "power", "0.056", "kW", kGateway, 0},
                       });
  CHECK(outcome.status.ignored == 3);
  CHECK(outcome.status.decode_errors == 0);
}

TEST_CASE("presets over MQTT: plain", "[presets_mqtt]") {
  const auto outcome = run_preset("plain", {
                                               {"meters/m7/energy", "1234.5"},
                                               {"meters/m7/power", " 2300\n"},
                                               {"meters/m8/energy", "nan"},  // no reading
                                               {"meters/m8/power", "ON"},    // no reading
                                           });
  require_measurements(outcome, {
                                    {"m7", "energy", "1234.5", "kWh", kFirstGateway, 0},
                                    {"m7", "power", "2.3", "kW", kGateway, 0},
                                });
  CHECK(outcome.status.ignored == 2);
  CHECK(outcome.status.decode_errors == 0);
}
