// The mapping layer (common/decode/mapping.*) and the shipped presets
// (config/presets/), each through the whole path: raw message appended to a
// real buffer -> decode by the preset's mapping -> normalize -> the stored
// measurements the export reads. Payloads are shaped like the vendors' own
// (tests/data/payloads/).
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "common/decode/mapping.hpp"
#include "common/model/flags.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using meter::test::BufferFixture;

namespace {

const std::string kSourceDir = METER_SOURCE_DIR;

// 2024-07-01T12:00:30Z: the gateway's receive time in these tests.
constexpr std::int64_t kReceivedMs = 1719835230000;
const std::string kReceivedText = "2024-07-01T12:00:30.000Z";

const std::string kPresetConfig = R"(
gateway_id: test-gw
buffer:
  durability: normal
presets_dir: )" + kSourceDir + R"(/config/presets
metrics:
  energy:
    kind: counter
    unit: kWh
  power:
    kind: gauge
    unit: kW
mappings:
  - preset: tasmota
  - preset: shelly_em
  - preset: zigbee2mqtt
  - preset: plain
  - preset: seed
    topic: "seed/#"
    timestamp: {format: rfc3339, zone: Europe/Berlin}
  # Tasmota with its device clock, in the zone the device is set to.
  - preset: tasmota
    topic: "tele-clock/+/SENSOR"
    timestamp: {path: /Time, format: rfc3339, zone: Europe/Berlin}
)";

std::string payload_file(const std::string& name) {
  std::ifstream in(kSourceDir + "/tests/data/payloads/" + name, std::ios::binary);
  if (!in) FAIL("missing fixture " << name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

FlagSet flags_of(std::initializer_list<Flag> flags) {
  FlagSet set = 0;
  for (auto f : flags) set |= flag_bit(f);
  return set;
}

struct PresetFixture : BufferFixture {
  PresetFixture() : BufferFixture(kPresetConfig) {}

  std::int64_t publish(const std::string& topic, const std::string& payload,
                       std::int64_t received_ms = kReceivedMs) {
    return append(payload, received_ms, false, false, topic);
  }

  // The outcome recorded for raw message `seq`, or "" when it produced
  // measurements without complaint.
  std::string outcome(std::int64_t seq) {
    for (const RawOutcome& o : outcomes()) {
      if (o.seq == seq) return o.kind + ": " + o.reason;
    }
    return "";
  }
};

const MappingConfig& mapping_named(const Config& config, const std::string& topic) {
  const MappingConfig* mapping = config.mapping_for(topic);
  REQUIRE(mapping != nullptr);
  return *mapping;
}

}  // namespace

TEST_CASE("tasmota: ENERGY.Total is the energy counter, ENERGY.Power the power, at receive time",
          "[mapping][presets]") {
  PresetFixture f;
  const auto seq = f.publish("tele/tasmota_1A2B3C/SENSOR", payload_file("tasmota-sensor.json"));
  // TelePeriod later: the counter moved, Today/Yesterday/Period are not read.
  f.publish(
      "tele/tasmota_1A2B3C/SENSOR",
      R"({"Time":"2024-07-01T12:05:00","ENERGY":{"TotalStartTime":"2023-01-15T10:20:30",)"
      R"("Total":123.461,"Yesterday":1.234,"Today":0.572,"Period":5,"Power":60,)"
      R"("ApparentPower":75,"ReactivePower":45,"Factor":0.80,"Voltage":231,"Current":0.325}})",
      kReceivedMs + 300000);
  f.normalize();
  CHECK(f.outcome(seq).empty());
  REQUIRE(f.measurements().size() == 4);

  auto energy = f.at("tasmota_1A2B3C", "energy", kReceivedText);
  CHECK(energy.value == "123.456");
  CHECK(energy.unit == "kWh");
  CHECK(energy.flags == flags_of({Flag::first_reading, Flag::gateway_timestamp}));
  auto later = f.at("tasmota_1A2B3C", "energy", "2024-07-01T12:05:30.000Z");
  CHECK(later.value == "123.461");
  CHECK(later.delta == std::optional<std::string>("0.005"));
  CHECK(later.flags == flags_of({Flag::gateway_timestamp}));

  auto power = f.at("tasmota_1A2B3C", "power", kReceivedText);
  CHECK(power.value == "0.045");  // 45 W, exactly
  CHECK(power.unit == "kW");
  CHECK(power.flags == flags_of({Flag::gateway_timestamp}));
}

TEST_CASE("tasmota: multi-channel arrays become one reading per channel", "[mapping][presets]") {
  PresetFixture f;
  f.publish("tele/tasmota_dual/SENSOR", payload_file("tasmota-sensor-2ch.json"));
  f.normalize();
  REQUIRE(f.measurements().size() == 3);
  CHECK(f.at("tasmota_dual", "energy", kReceivedText).value == "1.53");  // Total is a scalar
  CHECK(f.at("tasmota_dual/ch1", "power", kReceivedText).value == "0.012");
  CHECK(f.at("tasmota_dual/ch2", "power", kReceivedText).value == "0");
}

TEST_CASE("tasmota: the device clock, read in the configured zone", "[mapping][presets]") {
  PresetFixture f;
  f.publish("tele-clock/tasmota_1A2B3C/SENSOR", payload_file("tasmota-sensor.json"));
  f.normalize();
  // "2024-07-01T12:00:00" is CEST (+02:00) in Europe/Berlin.
  auto energy = f.at("tasmota_1A2B3C", "energy", "2024-07-01T10:00:00.000Z");
  CHECK(energy.value == "123.456");
  CHECK(energy.flags == flags_of({Flag::first_reading}));  // no gateway_timestamp
}

TEST_CASE("tasmota: messages without energy data and LWT words are ignored quietly",
          "[mapping][presets]") {
  PresetFixture f;
  const auto temperature =
      f.publish("tele/tasmota_temp/SENSOR", payload_file("tasmota-sensor-ds18b20.json"));
  const auto offline = f.publish("tele/tasmota_1A2B3C/SENSOR", "Offline");
  const auto not_json = f.publish("tele/tasmota_1A2B3C/SENSOR", "Restarting");
  auto stats = f.normalize();
  CHECK(f.measurements().empty());
  CHECK(stats.ignored == 2);
  CHECK(stats.decode_errors == 1);
  CHECK(f.outcome(temperature) ==
        "ignored: no reading in payload (absent or null: '/ENERGY/Total', '/ENERGY/Power')");
  CHECK(f.outcome(offline) == "ignored: non-reading payload 'Offline'");
  CHECK(f.outcome(not_json).rfind("decode_error: payload is not JSON", 0) == 0);
}

TEST_CASE("shelly_em: em:0 power in W and emdata:0 energy in Wh, converted exactly",
          "[mapping][presets]") {
  PresetFixture f;
  const auto em =
      f.publish("shellypro3em-a8032abe54dc/status/em:0", payload_file("shelly-em-status.json"));
  const auto emdata = f.publish("shellypro3em-a8032abe54dc/status/emdata:0",
                                payload_file("shelly-emdata-status.json"));
  const auto sys =
      f.publish("shellypro3em-a8032abe54dc/status/sys", payload_file("shelly-sys-status.json"));
  const auto online = f.publish("shellypro3em-a8032abe54dc/online", "true");
  auto stats = f.normalize();
  CHECK(f.outcome(em).empty());
  CHECK(f.outcome(emdata).empty());
  CHECK(f.outcome(sys).rfind("ignored: no reading in payload", 0) == 0);
  CHECK(f.outcome(online) ==
        "decode_error: no mapping matches topic "
        "'shellypro3em-a8032abe54dc/online'");
  CHECK(stats.new_measurements == 2);

  auto power = f.at("shellypro3em-a8032abe54dc", "power", kReceivedText);
  CHECK(power.value == "0.7155");  // 715.5 W
  CHECK(power.flags == flags_of({Flag::gateway_timestamp}));
  auto energy = f.at("shellypro3em-a8032abe54dc", "energy", kReceivedText);
  CHECK(energy.value == "4.84102");  // 4841.02 Wh: the lifetime register total_act
  CHECK(energy.flags == flags_of({Flag::first_reading, Flag::gateway_timestamp}));
}

TEST_CASE("shelly_em: a device prefix under another level still names the device",
          "[mapping][presets]") {
  BufferFixture f(kPresetConfig);
  const auto& mapping = mapping_named(f.config(), "shellypro3em-1/status/em:0");
  CHECK(mapping.preset == "shelly_em");
  auto decoded = decode_message(mapping, "shellypro3em-1/status/emdata:0",
                                R"({"id":0,"total_act":0.5,"total_act_ret":0})");
  REQUIRE(decoded);
  REQUIRE(decoded->readings.size() == 1);
  CHECK(decoded->readings[0].device_id == "shellypro3em-1");
  CHECK(decoded->readings[0].value == "0.5");
  CHECK(decoded->readings[0].unit == "Wh");
  CHECK_FALSE(decoded->readings[0].timestamp);
}

TEST_CASE("zigbee2mqtt: energy and power, null attributes and bridge topics are ignored",
          "[mapping][presets]") {
  PresetFixture f;
  const auto plug = f.publish("zigbee2mqtt/living room/plug", payload_file("z2m-plug.json"));
  const auto not_reported =
      f.publish("zigbee2mqtt/garage plug", payload_file("z2m-plug-not-reported.json"));
  // Only energy reported so far: power is null, energy still counts.
  const auto partial =
      f.publish("zigbee2mqtt/garage plug", R"({"energy":0.51,"power":null,"linkquality":96})");
  const auto bridge = f.publish("zigbee2mqtt/bridge/state", R"({"state":"online"})");
  const auto availability = f.publish("zigbee2mqtt/living room/plug/availability", "online");
  const auto devices = f.publish("zigbee2mqtt/bridge/devices",
                                 R"([{"ieee_address":"0x00158d0001","friendly_name":"plug"}])");
  auto stats = f.normalize();

  CHECK(f.outcome(plug).empty());
  CHECK(f.outcome(partial).empty());
  CHECK(f.outcome(not_reported) ==
        "ignored: no reading in payload (absent or null: '/energy', '/power')");
  CHECK(f.outcome(bridge).rfind("ignored:", 0) == 0);
  CHECK(f.outcome(availability) == "ignored: non-reading payload 'online'");
  CHECK(f.outcome(devices).rfind("ignored:", 0) == 0);
  CHECK(stats.decode_errors == 0);
  REQUIRE(f.measurements().size() == 3);

  // A friendly name with '/' is the whole name after the base topic.
  CHECK(f.at("living room/plug", "energy", kReceivedText).value == "12.34");
  CHECK(f.at("living room/plug", "power", kReceivedText).value == "0.056");
  auto garage = f.at("garage plug", "energy", kReceivedText);
  CHECK(garage.value == "0.51");
  CHECK(garage.flags == flags_of({Flag::first_reading, Flag::gateway_timestamp}));
}

TEST_CASE("zigbee2mqtt: a republished cached state at the same receive time is one event",
          "[mapping][presets]") {
  PresetFixture f;
  f.publish("zigbee2mqtt/plug", payload_file("z2m-plug.json"));
  f.publish("zigbee2mqtt/plug", payload_file("z2m-plug.json"));
  auto stats = f.normalize();
  CHECK(stats.new_measurements == 2);
  CHECK(stats.duplicates == 2);
}

TEST_CASE("plain: one number per topic, the metric from the topic, a unit per metric",
          "[mapping][presets]") {
  PresetFixture f;
  const auto energy = f.publish("meters/m7/energy", "1234.5\n");
  const auto power = f.publish("meters/m7/power", "2300");
  const auto nan = f.publish("meters/m7/power", "nan");
  const auto text = f.publish("meters/m7/power", "ON");
  const auto garbage = f.publish("meters/m7/power", "12,5");
  const auto voltage = f.publish("meters/m7/voltage", "230.1");
  auto stats = f.normalize();

  CHECK(f.outcome(energy).empty());
  CHECK(f.outcome(power).empty());
  CHECK(f.outcome(nan) == "ignored: non-reading payload 'nan'");
  CHECK(f.outcome(text) == "ignored: non-reading payload 'ON'");
  CHECK(f.outcome(garbage).rfind("decode_error: value:", 0) == 0);
  CHECK(f.outcome(voltage) == "decode_error: unit: no unit configured for metric 'voltage'");
  CHECK(stats.new_measurements == 2);
  auto stored = f.at("m7", "energy", kReceivedText);
  CHECK(stored.value == "1234.5");
  CHECK(stored.flags == flags_of({Flag::first_reading, Flag::gateway_timestamp}));
  CHECK(f.at("m7", "power", kReceivedText).value == "2.3");
}

TEST_CASE("seed preset: the seed's JSON format, unchanged", "[mapping][presets]") {
  PresetFixture f;
  f.publish("seed/m1",
            meter::test::seed_payload("m1", "2024-07-01T12:00:00", "energy", "1500", "Wh"));
  f.normalize();
  auto stored = f.at("m1", "energy", "2024-07-01T10:00:00.000Z");
  CHECK(stored.value == "1.5");
  CHECK(stored.flags == flags_of({Flag::first_reading}));
}

TEST_CASE("a retained message without timestamp is not stamped with the receive time",
          "[mapping][presets]") {
  PresetFixture f;
  f.append(payload_file("z2m-plug.json"), kReceivedMs, false, true, "zigbee2mqtt/plug");
  auto stats = f.normalize();
  CHECK(f.measurements().empty());
  CHECK(stats.ignored == 2);
}

// --- decode_message on its own ---------------------------------------------

namespace {

Config config_with(const std::string& mappings) {
  return meter::test::make_config(
      "gateway_id: gw\n"
      "metrics:\n"
      "  energy: {kind: counter, unit: kWh}\n"
      "  power: {kind: gauge, unit: W}\n"
      "mappings:\n" +
      mappings);
}

Decoded decoded(const Config& config, const std::string& topic, const std::string& payload) {
  auto result = decode_message(mapping_named(config, topic), topic, payload);
  INFO("payload: " << payload);
  if (!result) FAIL("unexpected error: " << result.error().message);
  return std::move(result).value();
}

std::string error_of(const Config& config, const std::string& topic, const std::string& payload) {
  auto result = decode_message(mapping_named(config, topic), topic, payload);
  INFO("payload: " << payload);
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

const std::string kJsonMapping = R"(
  - topic: "site/#"
    format: json
    device_id: {path: /meter/id}
    timestamp: {path: /ts, format: epoch_seconds}
    readings:
      - metric_type: energy
        value: {path: /meter/counters/0}
        unit: {path: /meter/unit}
      - metric_type: power
        value: {path: "/params/em:0/total_act_power"}
        unit: W
)";

}  // namespace

TEST_CASE("json: values, units, device ids and timestamps by JSON pointer", "[mapping]") {
  const Config config = config_with(kJsonMapping);
  Decoded d = decoded(config, "site/a",
                      R"({"ts":1719835200.25,"meter":{"id":"m-9","unit":"Wh","counters":[1.50,2]},)"
                      R"("params":{"em:0":{"total_act_power":-12.0}}})");
  REQUIRE(d.readings.size() == 2);
  CHECK(d.readings[0].device_id == "m-9");
  CHECK(d.readings[0].timestamp == std::optional<std::string>("1719835200.25"));
  CHECK(d.readings[0].value == "1.50");  // the exact text, never through double
  CHECK(d.readings[0].unit == "Wh");
  CHECK(d.readings[1].metric_type == "power");
  CHECK(d.readings[1].value == "-12.0");
  CHECK(d.readings[1].unit == "W");

  // A numeric device id and a decimal string value are taken as text.
  d = decoded(config, "site/a", R"({"ts":1,"meter":{"id":17,"unit":"kWh","counters":["3.25"]}})");
  REQUIRE(d.readings.size() == 1);
  CHECK(d.readings[0].device_id == "17");
  CHECK(d.readings[0].value == "3.25");
}

TEST_CASE("json: what is a decode error", "[mapping]") {
  const Config config = config_with(kJsonMapping);
  CHECK(error_of(config, "site/a", "{\"meter\":").rfind("payload is not JSON:", 0) == 0);
  CHECK(error_of(config, "site/a", "42") ==
        "payload is a number, but the mapping reads members of a JSON document (use format: "
        "plain for payloads that are one number)");
  CHECK(
      error_of(config, "site/a", R"({"ts":1,"meter":{"id":"m","unit":"Wh","counters":[true]}})") ==
      "value at '/meter/counters/0': expected a number, got true");
  CHECK(error_of(config, "site/a",
                 R"({"ts":1,"meter":{"id":"m","unit":"Wh","counters":[{"v":1}]}})") ==
        "value at '/meter/counters/0': expected a number, got an object");
  CHECK(error_of(config, "site/a", R"({"ts":1,"meter":{"unit":"Wh","counters":[1]}})") ==
        "device_id: '/meter/id' is missing");
  CHECK(error_of(config, "site/a", R"({"ts":1,"meter":{"id":[],"unit":"Wh","counters":[1]}})") ==
        "device_id at '/meter/id': expected a string, got an array");
  // Found by fuzz_mapping: an empty id was taken as a device.
  CHECK(error_of(config, "site/a", R"({"ts":1,"meter":{"id":"","unit":"Wh","counters":[1]}})") ==
        "device_id at '/meter/id' is empty");
  CHECK(error_of(config, "site/a", R"({"ts":1,"meter":{"id":"m","unit":"","counters":[1]}})") ==
        "unit at '/meter/unit' is empty");
  CHECK(error_of(config, "site/a", R"({"meter":{"id":"m","unit":"Wh","counters":[1]}})") ==
        "timestamp at '/ts' is missing");
  CHECK(error_of(config, "site/a", R"({"ts":1,"meter":{"id":"m","counters":[1]}})") ==
        "unit: '/meter/unit' is missing");
  CHECK(error_of(config, "site/a", "\xff{}") == "payload is not valid UTF-8 (byte 0)");
}

TEST_CASE("json: what is ignored", "[mapping]") {
  const Config config = config_with(kJsonMapping);
  CHECK(decoded(config, "site/a", "").ignored_reason ==
        std::optional<std::string>("empty payload"));
  CHECK(decoded(config, "site/a", " Online ").ignored_reason ==
        std::optional<std::string>("non-reading payload 'Online'"));
  CHECK(decoded(config, "site/a", R"("Charging")").ignored_reason ==
        std::optional<std::string>("text payload 'Charging'"));
  CHECK(decoded(config, "site/a", "null").ignored_reason ==
        std::optional<std::string>("non-reading payload 'null'"));
  CHECK(decoded(config, "site/a", R"({"meter":{"counters":[null]},"params":{"em:0":{}}})")
            .ignored_reason ==
        std::optional<std::string>("no reading in payload (absent or null: '/meter/counters/0', "
                                   "'/params/em:0/total_act_power')"));
  // "" is what a Zigbee2MQTT /get request carries for the attribute asked for.
  CHECK(decoded(config, "site/a", R"({"meter":{"counters":[""]},"params":{"em:0":{}}})")
            .readings.empty());
  // "nan" as a JSON string is what some firmwares send for a failed sensor.
  Decoded d = decoded(config, "site/a",
                      R"({"ts":1,"meter":{"id":"m","unit":"Wh","counters":["nan"]},)"
                      R"("params":{"em:0":{"total_act_power":5}}})");
  REQUIRE(d.readings.size() == 1);
  CHECK(d.readings[0].metric_type == "power");
}

TEST_CASE("json: arrays need arrays: channels, required values must be there", "[mapping]") {
  const Config config = config_with(R"(
  - topic: "multi/+"
    format: json
    device_id: {topic_level: -1}
    readings:
      - metric_type: power
        value: {path: /Power}
        unit: W
        arrays: channels
      - metric_type: energy
        value: {path: /Total}
        unit: kWh
        required: true
)");
  Decoded d = decoded(config, "multi/dev", R"({"Power":[12,null,"nan",7],"Total":1})");
  REQUIRE(d.readings.size() == 3);
  CHECK(d.readings[0].device_id == "dev/ch1");
  CHECK(d.readings[0].value == "12");
  CHECK(d.readings[1].device_id == "dev/ch4");  // channels keep their numbers
  CHECK(d.readings[1].value == "7");
  CHECK(d.readings[2].device_id == "dev");
  CHECK(error_of(config, "multi/dev", R"({"Power":5})") == "value at '/Total' missing");
  CHECK(error_of(config, "multi/dev", R"({"Power":[[1]],"Total":1})") ==
        "value at '/Power'[0]: expected a number, got an array");
  CHECK(error_of(config, "multi/dev", R"({"Total":[1,2]})") ==
        "value at '/Total': expected a number, got an array (set arrays: channels for one "
        "reading per element)");
}

TEST_CASE("device ids from topic levels", "[mapping]") {
  const Config config = config_with(R"(
  - topic: "one/#"
    format: plain
    device_id: {topic_level: 3}
    readings: [{metric_type: power, unit: W}]
  - topic: "rest/#"
    format: plain
    device_id: {topic_levels_from: 1}
    readings: [{metric_type: power, unit: W}]
  - topic: "fixed/#"
    format: plain
    device_id: meter-1
    readings: [{metric_type: {topic_level: -1}, unit: W}]
)");
  CHECK(decoded(config, "one/a/b/c", "1").readings.at(0).device_id == "c");
  CHECK(error_of(config, "one/a", "1") == "device_id: topic 'one/a' has no level 3");
  CHECK(error_of(config, "one/a/b/", "1") == "device_id: topic level 3 of 'one/a/b/' is empty");
  CHECK(decoded(config, "rest/a/b//c", "1").readings.at(0).device_id == "a/b//c");
  CHECK(error_of(config, "rest", "1") == "device_id: topic 'rest' has no level 1");
  Decoded d = decoded(config, "fixed/x/power", "5e2");
  CHECK(d.readings.at(0).device_id == "meter-1");
  CHECK(d.readings.at(0).metric_type == "power");
  CHECK(d.readings.at(0).value == "5e2");
  CHECK_FALSE(d.readings.at(0).timestamp);
}

TEST_CASE("seed_json mappings decode exactly as decode_seed_json", "[mapping]") {
  const Config config = config_with("  - topic: \"meters/#\"\n");
  const std::string payload =
      meter::test::seed_payload("m1", "2024-01-01T10:00:00Z", "energy", "1.0", "kWh");
  Decoded d = decoded(config, "meters/x", payload);
  REQUIRE(d.readings.size() == 1);
  CHECK(d.readings[0].device_id == "m1");
  CHECK(d.readings[0].value == "1.0");
}
