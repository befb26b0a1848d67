// The mapping language's composing features (common/decode/mapping.* and
// common/config/mapping_reader.cpp): device ids from parts, `each` over
// component keys, topic-level captures and maps, `when` conditions, `ignore`
// mappings, `scale`, sums and differences, per-reading timestamps.
#include <catch2/catch.hpp>
#include <string>

#include "common/decode/mapping.hpp"
#include "common/decode/scale.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;

namespace {

Config config_with(const std::string& mappings) {
  return meter::test::make_config(
      "gateway_id: gw\n"
      "metrics:\n"
      "  energy: {kind: counter, unit: kWh}\n"
      "  energy_today: {kind: gauge, unit: kWh}\n"
      "  power: {kind: gauge, unit: W}\n"
      "mappings:\n" +
      mappings);
}

std::string config_error(const std::string& mappings) {
  auto config = parse_config(
      "gateway_id: gw\n"
      "metrics:\n"
      "  energy: {kind: counter, unit: kWh}\n"
      "  power: {kind: gauge, unit: W}\n"
      "mappings:\n" +
          mappings,
      "t.yaml");
  REQUIRE_FALSE(config.ok());
  return config.error().message;
}

Result<Decoded> decode(const Config& config, const std::string& topic, const std::string& payload) {
  const MappingConfig* mapping = config.mapping_for(topic);
  if (mapping == nullptr) return Error{"no mapping"};
  return decode_message(*mapping, topic, payload);
}

Decoded decoded(const Config& config, const std::string& topic, const std::string& payload) {
  auto result = decode(config, topic, payload);
  INFO("topic " << topic << " payload: " << payload);
  if (!result) FAIL("unexpected error: " << result.error().message);
  return std::move(result).value();
}

std::string error_of(const Config& config, const std::string& topic, const std::string& payload) {
  auto result = decode(config, topic, payload);
  INFO("payload: " << payload);
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

std::string scaled(const std::string& value, const Scale& scale) {
  auto result = apply_scale(value, scale);
  if (!result) return "error: " + result.error().message;
  return result->text + (result->rounded ? " (rounded)" : "");
}

}  // namespace

TEST_CASE("each: one reading per matching member, the key in the device id", "[mapping]") {
  // A Shelly NotifyStatus: only the changed components, the instance in the key.
  const Config config = config_with(R"(
  - topic: "+/events/rpc"
    format: json
    device_id: {parts: [{topic_level: 0}, "/", {key: true}]}
    timestamp: {path: /params/ts, format: epoch_seconds}
    readings:
      - metric_type: energy
        each: {path: /params, keys: "switch:*"}
        value: {path: /aenergy/total}
        unit: Wh
      - metric_type: power
        each: {path: /params, keys: "switch:*"}
        value: {path: /apower}
        unit: W
)");
  const Decoded d = decoded(config, "plug1/events/rpc",
                            R"({"src":"plug1","method":"NotifyStatus","params":{"ts":1719835200.5,)"
                            R"("switch:0":{"id":0,"aenergy":{"total":12.5}},)"
                            R"("switch:1":{"id":1,"apower":3.1,"aenergy":{"total":7}},)"
                            R"("sys":{"uptime":5}}})");
  REQUIRE(d.readings.size() == 3);
  CHECK(d.readings[0].device_id == "plug1/switch:0");
  CHECK(d.readings[0].metric_type == "energy");
  CHECK(d.readings[0].value == "12.5");
  CHECK(d.readings[0].timestamp == std::optional<std::string>("1719835200.5"));
  CHECK(d.readings[1].device_id == "plug1/switch:1");
  CHECK(d.readings[1].value == "7");
  CHECK(d.readings[2].device_id == "plug1/switch:1");
  CHECK(d.readings[2].metric_type == "power");
  CHECK(d.readings[2].value == "3.1");
  // Only other components: ignored, not an error.
  CHECK(decoded(config, "plug1/events/rpc", R"({"method":"NotifyStatus","params":{"sys":{}}})")
            .ignored_reason ==
        std::optional<std::string>(
            "no reading in payload (no member of '/params' matches 'switch:*')"));
}

TEST_CASE("key_match and topic-level captures give em1:N and em1data:N one device", "[mapping]") {
  const Config config = config_with(R"(
  - topic: "+/status/+"
    when: [{topic_level: -1, match: "em1:*"}]
    format: json
    device_id: {parts: [{topic_level: 0}, "/em1:", {topic_level: -1, match: "em1:*"}]}
    readings: [{metric_type: power, value: {path: /act_power}, unit: W}]
  - topic: "+/status/+"
    when: [{topic_level: -1, match: "em1data:*"}]
    format: json
    device_id: {parts: [{topic_level: 0}, "/em1:", {topic_level: -1, match: "em1data:*"}]}
    readings: [{metric_type: energy, value: {path: /total_act_energy}, unit: Wh}]
  - topic: "+/status/+"
    ignore: "other status component"
)");
  Decoded d = decoded(config, "proem/status/em1:1", R"({"id":1,"act_power":-20.5})");
  REQUIRE(d.readings.size() == 1);
  CHECK(d.readings[0].device_id == "proem/em1:1");
  d = decoded(config, "proem/status/em1data:1", R"({"id":1,"total_act_energy":1200.25})");
  REQUIRE(d.readings.size() == 1);
  CHECK(d.readings[0].device_id == "proem/em1:1");
  CHECK(d.readings[0].metric_type == "energy");
  d = decoded(config, "proem/status/sys", R"({"uptime":12})");
  CHECK(d.readings.empty());
  CHECK(d.ignored_reason == std::optional<std::string>("other status component"));
  // A key_match inside each.
  const Config each = config_with(R"(
  - topic: "x/+"
    format: json
    device_id: {parts: [{topic_level: 1}, "/ch", {key_match: true}]}
    readings:
      - {metric_type: power, each: {keys: "em1:*"}, value: {path: /act_power}, unit: W}
)");
  d = decoded(each, "x/dev", R"({"em1:0":{"act_power":1},"em1:1":{"act_power":2},"x":{}})");
  REQUIRE(d.readings.size() == 2);
  CHECK(d.readings[1].device_id == "dev/ch1");
  CHECK(d.readings[1].value == "2");
}

TEST_CASE("metric and unit chosen per topic level", "[mapping]") {
  const Config config = config_with(R"(
  - topic: "solar/+/0/+"
    format: plain
    device_id: {topic_level: 1}
    readings:
      - metric_type: {topic_level: -1, map: {yieldtotal: energy, yieldday: energy_today}}
        unit: {topic_level: -1, map: {yieldtotal: kWh, yieldday: Wh}}
)");
  Decoded d = decoded(config, "solar/1141/0/yieldtotal", "123.456");
  CHECK(d.readings.at(0).metric_type == "energy");
  CHECK(d.readings.at(0).unit == "kWh");
  d = decoded(config, "solar/1141/0/yieldday", "1500");
  CHECK(d.readings.at(0).metric_type == "energy_today");
  CHECK(d.readings.at(0).unit == "Wh");
  // A level the map does not list is a topic this mapping does not read.
  CHECK(decoded(config, "solar/1141/0/voltage", "230.1").ignored_reason ==
        std::optional<std::string>(
            "no reading in payload (topic level 'voltage' is not in the metric map)"));
}

TEST_CASE("scale: exact where the result is a finite decimal, else rounded and marked",
          "[mapping]") {
  const Config config = config_with(R"(
  - topic: "shellies/+/relay/+/energy"
    format: plain
    device_id: {parts: [{topic_level: 1}, "/relay/", {topic_level: 3}]}
    readings: [{metric_type: energy, unit: Wh, scale: {divide: 60, decimals: 6}}]
  - topic: "pulses/+"
    format: plain
    device_id: {topic_level: 1}
    readings: [{metric_type: energy, unit: kWh, scale: 0.0016}]
)");
  // Watt-minutes: 81010 / 60 = 1350.1666..., rounded to 6 places.
  Decoded d = decoded(config, "shellies/plug-s/relay/0/energy", "81010");
  CHECK(d.readings.at(0).device_id == "plug-s/relay/0");
  CHECK(d.readings.at(0).value == "1350.166667");
  CHECK(d.readings.at(0).rounded);
  d = decoded(config, "shellies/plug-s/relay/0/energy", "81030");
  CHECK(d.readings.at(0).value == "1350.5");  // exact: not rounded
  CHECK_FALSE(d.readings.at(0).rounded);
  // 625 pulses/kWh: a pulse is 0.0016 kWh, exactly.
  d = decoded(config, "pulses/m1", "1234");
  CHECK(d.readings.at(0).value == "1.9744");
  CHECK_FALSE(d.readings.at(0).rounded);
  CHECK(error_of(config, "pulses/m1", "abc").rfind("value 'abc': ", 0) == 0);

  Scale thirds;
  thirds.divide = 3;
  thirds.decimals = 2;
  CHECK(scaled("1", thirds) == "0.33 (rounded)");
  CHECK(scaled("2", thirds) == "0.67 (rounded)");
  CHECK(scaled("-2", thirds) == "-0.67 (rounded)");
  CHECK(scaled("3", thirds) == "1");
  CHECK(scaled("0.000001", thirds) == "0 (rounded)");
  Scale eighths;
  eighths.divide = 8;
  eighths.decimals = 1;
  CHECK(scaled("1", eighths) == "0.125");  // finite: exact, more places than `decimals`
  Scale half_even;
  half_even.divide = 1000000000;
  half_even.decimals = 0;
  half_even.multiply = Decimal::from_int(1);
  // x / 10^9 is always finite: exact.
  CHECK(scaled("2500000000", half_even) == "2.5");
  // A quotient that is a finite decimal is exact: 15 / 6 = 2.5, however few `decimals`.
  Scale sixths;
  sixths.divide = 6;
  sixths.decimals = 0;
  CHECK(scaled("15", sixths) == "2.5");
  // Otherwise rounded to `decimals` (never a tie: a tie would be a finite decimal).
  Scale sevenths;
  sevenths.divide = 7;
  sevenths.decimals = 0;
  CHECK(scaled("1", sevenths) == "0 (rounded)");  // 0.142857...
  CHECK(scaled("4", sevenths) == "1 (rounded)");  // 0.571428...
  CHECK(scaled("-4", sevenths) == "-1 (rounded)");
  CHECK(scaled("69.99", sevenths) == "10 (rounded)");  // 9.998571... carries
  sevenths.decimals = 3;
  CHECK(scaled("1.2345678", sevenths) == "0.176 (rounded)");  // 0.17636683...
}

TEST_CASE("sum and difference of fields, exact, a missing term gives no reading", "[mapping]") {
  const Config config = config_with(R"(
  - topic: "dsmr/json"
    format: json
    device_id: dsmr
    timestamp: {path: /timestamp}
    readings:
      - metric_type: energy
        value: {sum: [/electricity_delivered_1, /electricity_delivered_2]}
        unit: kWh
      - metric_type: power
        value: {difference: [/electricity_currently_delivered, /electricity_currently_returned]}
        unit: kW
      - metric_type: energy_today
        value: {path: /extra_device_delivered}
        unit: kWh
        timestamp: {path: /extra_device_timestamp}
)");
  Decoded d =
      decoded(config, "dsmr/json",
              R"({"timestamp":"2024-07-01T12:00:00+02:00","electricity_delivered_1":)"
              R"(1234.567,"electricity_delivered_2":"2000.001",)"
              R"("electricity_currently_delivered":0.25,"electricity_currently_returned":1.5,)"
              R"("extra_device_delivered":100.5,)"
              R"("extra_device_timestamp":"2024-07-01T11:55:00+02:00"})");
  REQUIRE(d.readings.size() == 3);
  CHECK(d.readings[0].value == "3234.568");
  CHECK(d.readings[0].timestamp == std::optional<std::string>("2024-07-01T12:00:00+02:00"));
  CHECK(d.readings[1].value == "-1.25");
  CHECK(d.readings[2].timestamp == std::optional<std::string>("2024-07-01T11:55:00+02:00"));
  d = decoded(config, "dsmr/json",
              R"({"timestamp":"2024-07-01T12:00:00Z","electricity_delivered_1":1,)"
              R"("electricity_currently_delivered":0.25,"electricity_currently_returned":null})");
  CHECK(d.readings.empty());
  CHECK(error_of(config, "dsmr/json",
                 R"({"timestamp":"x","electricity_delivered_1":"x","electricity_delivered_2":1})")
            .rfind("value at '/electricity_delivered_1': ", 0) == 0);
}

TEST_CASE("when: one filter, several mappings, the first whose conditions hold wins", "[mapping]") {
  const Config config = config_with(R"(
  - topic: "z/+/+"
    when: [{topic_level: -1, match: "power"}]
    format: plain
    device_id: {topic_level: 1}
    readings: [{metric_type: power, unit: W}]
  - topic: "z/+/+"
    when: [{topic_level: -1, match: "energy"}]
    format: plain
    device_id: {topic_level: 1}
    readings: [{metric_type: energy, unit: kWh}]
  - topic: "z/+/+"
    ignore: "not a reading"
)");
  CHECK(decoded(config, "z/plug/power", "5").readings.at(0).unit == "W");
  CHECK(decoded(config, "z/plug/energy", "5").readings.at(0).unit == "kWh");
  CHECK(decoded(config, "z/plug/linkquality", "120").ignored_reason ==
        std::optional<std::string>("not a reading"));
  CHECK(mapping_applies(config.mappings[0], "z/a/power"));
  CHECK_FALSE(mapping_applies(config.mappings[0], "z/a/powerx"));
}

TEST_CASE("the new keys are checked strictly, with file:line:column", "[mapping][config]") {
  CHECK(
      config_error("  - topic: a\n    format: json\n    device_id: x\n"
                   "    readings: [{metric_type: power, value: {path: /p}, unit: W, scal: 2}]\n") ==
      "t.yaml:9:65: unknown key 'scal' in mappings[0].readings[0]; expected one of "
      "metric_type, value, unit, arrays, required, each, scale, timestamp, device_id");
  CHECK(config_error("  - topic: a\n    format: plain\n    device_id: x\n"
                     "    readings: [{metric_type: energy, unit: Wh, scale: {divide: 60}}]\n")
            .find("scale with divide needs decimals") != std::string::npos);
  CHECK(config_error("  - topic: a\n    format: json\n    device_id: {key: true}\n"
                     "    readings: [{metric_type: power, value: {path: /p}, unit: W}]\n")
            .find("this reading has no 'each'") != std::string::npos);
  CHECK(config_error("  - topic: a\n    ignore: x\n    device_id: d\n")
            .find("a mapping that ignores its messages has no device_id") != std::string::npos);
  CHECK(config_error("  - topic: a\n    when: [{topic_level: 0, match: 'a*b*'}]\n")
            .find("at most one '*'") != std::string::npos);
  CHECK(config_error("  - topic: a\n    format: json\n    device_id: d\n"
                     "    readings: [{metric_type: power, value: {difference: [/a]}, unit: W}]\n")
            .find("a list of two JSON pointers") != std::string::npos);
  CHECK(config_error("  - topic: a\n    format: plain\n    device_id: d\n"
                     "    readings: [{metric_type: {topic_level: 1, map: {x: nope}}, unit: W}]\n")
            .find("'nope', which is not declared under metrics") != std::string::npos);
  // The same filter twice without `when` still never matches: an error as before.
  CHECK(config_error("  - topic: a\n  - topic: a\n").find("same filter as") != std::string::npos);
}
