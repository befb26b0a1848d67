// The firmware presets of config/presets/ (tasmota's CT sensors, tasmota_state,
// shelly_gen1, shelly_gen2, shelly_rpc, zigbee2mqtt_attributes, esphome,
// opendtu, emonhub, dsmr_reader) with payloads shaped like the vendors' own
// (tests/data/payloads/): what each message becomes, and what is ignored.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/decode/mapping.hpp"
#include "common/model/flags.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using meter::test::BufferFixture;

namespace {

const std::string kSourceDir = METER_SOURCE_DIR;

std::string config_text(const std::string& presets) {
  return "gateway_id: gw\n"
         "buffer: {durability: normal}\n"
         "presets_dir: " +
         kSourceDir +
         "/config/presets\n"
         "metrics:\n"
         "  energy: {kind: counter, unit: kWh}\n"
         "  power: {kind: gauge, unit: W}\n"
         "  uptime: {kind: gauge, unit: s, role: uptime_seconds}\n"
         "  boot_count: {kind: gauge, unit: count, role: boot_count}\n"
         "mappings:\n" +
         presets;
}

Config presets_config(const std::string& presets) {
  return meter::test::make_config(config_text(presets));
}

std::string payload_file(const std::string& name) {
  std::ifstream in(kSourceDir + "/tests/data/payloads/" + name, std::ios::binary);
  if (!in) FAIL("missing fixture " << name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One reading as text: "device metric value unit [timestamp]".
std::vector<std::string> readings(const Config& config, const std::string& topic,
                                  const std::string& payload) {
  const MappingConfig* mapping = config.mapping_for(topic);
  REQUIRE(mapping != nullptr);
  auto decoded = decode_message(*mapping, topic, payload);
  INFO("topic " << topic << " payload " << payload);
  if (!decoded) FAIL("decode error: " << decoded.error().message);
  std::vector<std::string> out;
  for (const DecodedReading& r : decoded->readings) {
    out.push_back(r.device_id + " " + r.metric_type + " " + r.value + " " + r.unit +
                  (r.timestamp ? " @" + *r.timestamp : "") + (r.rounded ? " (rounded)" : ""));
  }
  return out;
}

std::string ignored(const Config& config, const std::string& topic, const std::string& payload) {
  const MappingConfig* mapping = config.mapping_for(topic);
  if (mapping == nullptr) return "no mapping";
  auto decoded = decode_message(*mapping, topic, payload);
  if (!decoded) return "error: " + decoded.error().message;
  return decoded->ignored_reason.value_or("not ignored");
}

using Lines = std::vector<std::string>;

}  // namespace

TEST_CASE("tasmota: a CT sensor's ANALOG.CTEnergyN is one device per CT", "[presets]") {
  const Config config = presets_config("  - preset: tasmota\n");
  CHECK(readings(config, "tele/ctplug/SENSOR", payload_file("tasmota-sensor-ct.json")) ==
        Lines{"ctplug/CTEnergy1 energy 0.123 kWh", "ctplug/CTEnergy2 energy 1.5 kWh",
              "ctplug/CTEnergy1 power 26 W", "ctplug/CTEnergy2 power 0 W"});
  // ENERGY readings are unchanged beside it (the preset's own tests in
  // test_mapping.cpp), and a sensor-only message keeps its old reason.
  CHECK(ignored(config, "tele/x/SENSOR", payload_file("tasmota-sensor-ds18b20.json")) ==
        "no reading in payload (absent or null: '/ENERGY/Total', '/ENERGY/Power')");
}

TEST_CASE("tasmota_state: UptimeSec is the restart evidence", "[presets]") {
  const Config config = presets_config("  - preset: tasmota_state\n");
  CHECK(readings(config, "tele/plug1/STATE", payload_file("tasmota-state.json")) ==
        Lines{"plug1 uptime 8025 s"});
}

TEST_CASE("tasmota_boot: INFO3's BootCount is the restart evidence", "[presets]") {
  const Config config = presets_config("  - preset: tasmota_boot\n");
  CHECK(readings(config, "tele/plug1/INFO3", payload_file("tasmota-info3.json")) ==
        Lines{"plug1 boot_count 184 count"});
  // A crash report (RestartReason an object) without BootCount: no reading.
  CHECK(ignored(config, "tele/plug1/INFO3",
                R"({"Info3":{"RestartReason":{"Exception":28,"Reason":"LoadProhibited"}}})") ==
        "no reading in payload (absent or null: '/Info3/BootCount')");
}

TEST_CASE("tasmota_boot: a boot count that rose makes the energy's drop a restart", "[presets]") {
  BufferFixture f(config_text("  - preset: tasmota\n  - preset: tasmota_boot\n"));
  const auto sensor = [](const char* total) {
    return std::string(R"({"ENERGY":{"Total":)") + total + R"(,"Power":10}})";
  };
  f.append(R"({"Info3":{"RestartReason":"Power on","BootCount":7}})", 1719835200000, false, false,
           "tele/plug1/INFO3");
  f.append(sensor("100.5"), 1719835260000, false, false, "tele/plug1/SENSOR");
  f.append(sensor("100.6"), 1719835320000, false, false, "tele/plug1/SENSOR");
  f.append(R"({"Info3":{"RestartReason":"Power on","BootCount":8}})", 1719835380000, false, false,
           "tele/plug1/INFO3");
  f.append(sensor("100.4"), 1719835440000, false, false, "tele/plug1/SENSOR");
  f.append(sensor("100.7"), 1719835500000, false, false, "tele/plug1/SENSOR");
  f.normalize();
  // Tasmota restored an older saved total after the boot: a drop at a
  // restart (counter_reset: this config sets no rollback_max), not a glitch
  // (without the boot count it would be one: the next reading is back on
  // course); the next reading counts from it.
  const auto restored = f.at("plug1", "energy", "2024-07-01T12:04:00.000Z");
  CHECK(join_flags(restored.flags, ';') == "counter_reset;device_restarted;gateway_timestamp");
  CHECK(f.at("plug1", "energy", "2024-07-01T12:05:00.000Z").delta ==
        std::optional<std::string>("0.3"));
}

TEST_CASE("shelly_gen1: watt-minutes become Wh, rounded only when they must be", "[presets]") {
  const Config config = presets_config("  - preset: shelly_gen1\n");
  CHECK(readings(config, "shellies/shellyplug-s-040BAD/relay/0/power", "45.36") ==
        Lines{"shellyplug-s-040BAD/relay/0 power 45.36 W"});
  CHECK(readings(config, "shellies/shellyplug-s-040BAD/relay/0/energy", "81010") ==
        Lines{"shellyplug-s-040BAD/relay/0 energy 1350.167 Wh (rounded)"});
  CHECK(readings(config, "shellies/shellyplug-s-040BAD/relay/0/energy", "81030") ==
        Lines{"shellyplug-s-040BAD/relay/0 energy 1350.5 Wh"});
  CHECK(readings(config, "shellies/shellyem-B9F5AB/emeter/1/total", "5312.7") ==
        Lines{"shellyem-B9F5AB/emeter/1 energy 5312.7 Wh"});
  CHECK(readings(config, "shellies/shellyem-B9F5AB/emeter/1/power", "-120.50") ==
        Lines{"shellyem-B9F5AB/emeter/1 power -120.50 W"});
  CHECK(config.mapping_for("shellies/shellyem-B9F5AB/emeter/1/energy") == nullptr);
}

TEST_CASE("shelly_gen1: the rounded energy is stored in the metric's unit", "[presets]") {
  BufferFixture f(config_text("  - preset: shelly_gen1\n"));
  f.append("81010", 1719835230000, false, false, "shellies/plug/relay/0/energy");
  f.normalize();
  const auto stored = f.measurements();
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].value == "1.350167");  // 1350.167 Wh in kWh, exactly
  CHECK(join_flags(stored[0].flags, ';') == "first_reading;gateway_timestamp;scale_rounded");
  // An exact quotient (81030 / 60 = 1350.5) is not marked.
  f.append("81030", 1719835290000, false, false, "shellies/plug/relay/0/energy");
  f.normalize();
  const auto exact = f.at("plug/relay/0", "energy", "2024-07-01T12:01:30.000Z");
  CHECK(exact.value == "1.3505");
  CHECK(!has_flag(exact.flags, Flag::scale_rounded));
}

TEST_CASE("shelly_gen2: one device per component instance, em1data joins em1", "[presets]") {
  const Config config = presets_config("  - preset: shelly_gen2\n");
  CHECK(
      readings(config, "shellyplus1pm-a1/status/switch:0",
               payload_file("shelly-switch-status.json")) ==
      Lines{"shellyplus1pm-a1/switch:0 energy 6.532 Wh", "shellyplus1pm-a1/switch:0 power 8.9 W"});
  CHECK(readings(config, "proem/status/em1:1", payload_file("shelly-em1-status.json")) ==
        Lines{"proem/em1:1 power 5080.3 W"});
  CHECK(readings(config, "proem/status/em1data:1", payload_file("shelly-em1data-status.json")) ==
        Lines{"proem/em1:1 energy 6644.90 Wh"});
  CHECK(readings(config, "pro3em/status/em:0", payload_file("shelly-em-status.json")) ==
        Lines{"pro3em/em:0 power 715.5 W"});
  CHECK(readings(config, "pro3em/status/emdata:0", payload_file("shelly-emdata-status.json")) ==
        Lines{"pro3em/em:0 energy 4841.02 Wh"});
  CHECK(readings(config, "pro3em/status/sys", payload_file("shelly-sys-status.json")).size() == 1);
  CHECK(ignored(config, "pro3em/status/wifi", R"({"sta_ip":"192.168.1.20","rssi":-60})") ==
        "Shelly status component without readings (wifi, cloud, input, ...)");
}

TEST_CASE("shelly_rpc: NotifyStatus and NotifyFullStatus at params.ts", "[presets]") {
  const Config config = presets_config("  - preset: shelly_rpc\n");
  CHECK(readings(config, "shellyplus2pm-a8032ab12345/events/rpc",
                 payload_file("shelly-rpc-notifystatus.json")) ==
        Lines{"shellyplus2pm-a8032ab12345/switch:0 energy 1234.567 Wh @1719835200.25",
              "shellyplus2pm-a8032ab12345/switch:1 power 15.2 W @1719835200.25"});
  CHECK(readings(config, "pro3em/events/rpc", payload_file("shelly-rpc-notifyfullstatus.json")) ==
        Lines{"pro3em/em:0 power 715.5 W @1719835260.01",
              "pro3em/em:0 energy 4841.02 Wh @1719835260.01",
              "pro3em uptime 28980 s @1719835260.01"});
  // NotifyEvent (button presses, ...) carries no component status.
  CHECK(ignored(config, "x/events/rpc",
                R"({"src":"x","method":"NotifyEvent","params":{"ts":1719835200.5,)"
                R"("events":[{"component":"input:0","event":"single_push"}]}})") ==
        "no reading in payload (absent or null: '/params/sys/uptime')");
}

TEST_CASE("zigbee2mqtt_attributes: per-attribute topics, other attributes ignored", "[presets]") {
  const Config config =
      presets_config("  - preset: zigbee2mqtt_attributes\n  - preset: zigbee2mqtt\n");
  CHECK(readings(config, "zigbee2mqtt/plug/energy", "12.34") == Lines{"plug energy 12.34 kWh"});
  CHECK(readings(config, "zigbee2mqtt/plug/power", "56") == Lines{"plug power 56 W"});
  CHECK(ignored(config, "zigbee2mqtt/plug/linkquality", "120") ==
        "no reading in payload (topic level 'linkquality' is not in the metric map)");
  CHECK(ignored(config, "zigbee2mqtt/plug/state", "ON") == "non-reading payload 'ON'");
  CHECK(ignored(config, "zigbee2mqtt/plug/last_seen", "2024-07-01T12:00:00.000Z") ==
        "no reading in payload (topic level 'last_seen' is not in the metric map)");
  // The JSON state topic still goes to the zigbee2mqtt preset.
  CHECK(readings(config, "zigbee2mqtt/plug", payload_file("z2m-plug.json")).size() == 2);
}

TEST_CASE("esphome: sensors by object id, others ignored", "[presets]") {
  const Config config = presets_config("  - preset: esphome\n");
  CHECK(readings(config, "node1/sensor/energy/state", "12.345") ==
        Lines{"node1 energy 12.345 kWh"});
  CHECK(readings(config, "node1/sensor/power/state", "230.5") == Lines{"node1 power 230.5 W"});
  CHECK(readings(config, "node1/sensor/uptime/state", "3600") == Lines{"node1 uptime 3600 s"});
  CHECK(ignored(config, "node1/sensor/temperature/state", "21.5") ==
        "no reading in payload (topic level 'temperature' is not in the metric map)");
  CHECK(ignored(config, "node1/sensor/power/state", "nan") == "non-reading payload 'nan'");
}

TEST_CASE("opendtu: yieldtotal in kWh, power in W, the rest ignored", "[presets]") {
  const Config config = presets_config("  - preset: opendtu\n");
  CHECK(readings(config, "solar/116491234567/0/yieldtotal", "1234.567") ==
        Lines{"116491234567 energy 1234.567 kWh"});
  CHECK(readings(config, "solar/116491234567/0/power", "312.4") ==
        Lines{"116491234567 power 312.4 W"});
  CHECK(ignored(config, "solar/116491234567/0/yieldday", "1520") ==
        "no reading in payload (topic level 'yieldday' is not in the metric map)");
}

TEST_CASE("emonhub: PN and EN of one CT channel are one device", "[presets]") {
  const Config config = presets_config("  - preset: emonhub\n");
  CHECK(readings(config, "emon/emontx4/P1", "123.4") == Lines{"emontx4/1 power 123.4 W"});
  CHECK(readings(config, "emon/emontx4/E1", "45678") == Lines{"emontx4/1 energy 45678 Wh"});
  CHECK(ignored(config, "emon/emontx4/V1", "239.8") ==
        "emonhub input that is not a CT power or energy (voltage, temperature, pulse, rssi)");
}

TEST_CASE("dsmr_reader: tariffs summed, net power, the telegram's timestamp", "[presets]") {
  const Config config = presets_config("  - preset: dsmr_reader\n");
  // A sum or difference is exact decimal arithmetic: canonical text (0.320 - 1.250 = -0.93).
  CHECK(readings(config, "dsmr/json", payload_file("dsmr-reader-json.json")) ==
        Lines{"dsmr energy 3580.245 kWh @2024-07-01T14:00:10+02:00",
              "dsmr power -0.93 kW @2024-07-01T14:00:10+02:00"});
}

TEST_CASE("multi-mapping presets take only timestamp beside them", "[presets][config]") {
  auto config =
      parse_config(config_text("  - preset: shelly_gen2\n    topic: \"a/+/+\"\n"), "t.yaml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.error().message.find("only 'timestamp' may be given beside it") !=
        std::string::npos);
  // The restart evidence metric must be declared, like any other.
  auto undeclared =
      parse_config("gateway_id: gw\npresets_dir: " + kSourceDir +
                       "/config/presets\nmetrics:\n  energy: {kind: counter, unit: kWh}\n"
                       "  power: {kind: gauge, unit: W}\nmappings:\n  - preset: shelly_gen2\n",
                   "t.yaml");
  REQUIRE_FALSE(undeclared.ok());
  CHECK(undeclared.error().message.find("'uptime', which is not declared") != std::string::npos);
}

TEST_CASE("normalization counts the messages each mapping took without a reading", "[presets]") {
  BufferFixture f(config_text("  - preset: shelly_gen2\n"));
  f.append(R"({"rssi":-60})", 1719835230000, false, false, "pro/status/wifi");
  f.append(R"({"rssi":-61})", 1719835231000, false, false, "pro/status/wifi");
  f.append("{", 1719835232000, false, false, "pro/status/em1:0");
  f.append(R"({"act_power":5})", 1719835233000, false, false, "pro/status/em1:0");
  f.append("1", 1719835234000, false, false, "elsewhere");
  const NormalizeStats stats = f.normalize();
  CHECK(stats.no_reading_by_mapping == std::map<std::string, std::int64_t, std::less<>>{
                                           {"", 1},
                                           {"+/status/+ (shelly_gen2)", 2},
                                           {"+/status/+ when -1=em1:* (shelly_gen2)", 1}});
}

TEST_CASE("dsmr_reader_topics: one series per tariff register, power per topic", "[presets]") {
  const Config config = presets_config("  - preset: dsmr_reader_topics\n");
  CHECK(readings(config, "dsmr/reading/electricity_delivered_1", "1234.567") ==
        Lines{"dsmr/tariff1 energy 1234.567 kWh"});
  CHECK(readings(config, "dsmr/reading/electricity_delivered_2", "2345.678") ==
        Lines{"dsmr/tariff2 energy 2345.678 kWh"});
  CHECK(readings(config, "dsmr/reading/electricity_currently_delivered", "0.320") ==
        Lines{"dsmr power 0.320 kW"});
  CHECK(ignored(config, "dsmr/reading/electricity_returned_1", "12.000") ==
        "dsmr-reader field without a reading here (returned energy and power, phases, gas, "
        "timestamp)");
  CHECK(ignored(config, "dsmr/reading/timestamp", "2024-07-01T12:00:10Z") ==
        "dsmr-reader field without a reading here (returned energy and power, phases, gas, "
        "timestamp)");
  CHECK(config.mapping_for("dsmr/json") == nullptr);
}
