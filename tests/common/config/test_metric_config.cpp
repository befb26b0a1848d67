// The series-rule keys of a metric (docs/QUALITY.md): glitch_window, max_rate,
// rollback_max, gap_factor, direction, period, period_zone, role.
#include <catch2/catch.hpp>
#include <string>

#include "common/config/config.hpp"

namespace {

using meter::parse_config;

// One counter metric with the given extra lines (each "    key: value\n");
// line 6 is the first extra line.
std::string with_energy(const std::string& kind, const std::string& extra) {
  return "gateway_id: gw\n"  // 1
         "metrics:\n"        // 2
         "  energy:\n"       // 3
         "    kind: " +
         kind +
         "\n"                 // 4
         "    unit: kWh\n" +  // 5
         extra +              // 6...
         "mappings:\n"
         "  - topic: meters/#\n";
}

meter::MetricConfig energy_of(const std::string& extra) {
  const std::string yaml = with_energy("counter", extra);
  auto result = parse_config(yaml, "t.yaml");
  INFO(yaml);
  if (!result) FAIL(result.error().message);
  REQUIRE(result->metric("energy") != nullptr);
  return *result->metric("energy");
}

std::string error_of(const std::string& kind, const std::string& extra) {
  const std::string yaml = with_energy(kind, extra);
  auto result = parse_config(yaml, "t.yaml");
  INFO(yaml);
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

}  // namespace

TEST_CASE("the series keys take their documented defaults", "[config]") {
  const meter::MetricConfig energy = energy_of("");
  CHECK(energy.glitch_window == 3);
  CHECK_FALSE(energy.max_rate.has_value());
  CHECK_FALSE(energy.rollback_max.has_value());
  CHECK(energy.gap_factor.text() == "10");
  CHECK(energy.direction == meter::Direction::imported);
  CHECK(energy.period == meter::Period::none);
  CHECK(energy.period_zone_name.empty());
  CHECK(energy.period_zone == nullptr);
  CHECK(energy.role == meter::MetricRole::none);
}

TEST_CASE("the series keys are read on a counter", "[config]") {
  const meter::MetricConfig energy = energy_of(
      "    glitch_window: 0\n"
      "    max_rate: 43.5\n"
      "    rollback_max: 0\n"
      "    gap_factor: 1.5\n"
      "    direction: net\n"
      "    period: daily\n"
      "    period_zone: Europe/Berlin\n"
      "    role: boot_count\n");
  CHECK(energy.glitch_window == 0);
  REQUIRE(energy.max_rate.has_value());
  CHECK(energy.max_rate->text() == "43.5");
  REQUIRE(energy.rollback_max.has_value());
  CHECK(energy.rollback_max->text() == "0");
  CHECK(energy.gap_factor.text() == "1.5");
  CHECK(energy.direction == meter::Direction::net);
  CHECK(energy.period == meter::Period::daily);
  CHECK(energy.period_zone_name == "Europe/Berlin");
  REQUIRE(energy.period_zone != nullptr);
  CHECK(energy.period_zone == meter::find_time_zone("Europe/Berlin").value());
  CHECK(energy.role == meter::MetricRole::boot_count);

  CHECK(energy_of("    direction: import\n").direction == meter::Direction::imported);
  CHECK(energy_of("    direction: export\n").direction == meter::Direction::exported);
  CHECK(energy_of("    period: none\n").period == meter::Period::none);
  CHECK(energy_of("    glitch_window: 1000\n").glitch_window == 1000);
  CHECK(energy_of("    rollback_max: 2.5\n").rollback_max->text() == "2.5");
  CHECK(energy_of("    role: uptime_seconds\n").role == meter::MetricRole::uptime_seconds);
  // A reload compares metrics whole: a changed series key is a change.
  CHECK_FALSE(energy_of("    max_rate: 43.5\n") == energy_of("    max_rate: 43.6\n"));
}

TEST_CASE("the series keys refuse meaningless values with file:line:column", "[config]") {
  const auto counter_error = [](const std::string& extra) { return error_of("counter", extra); };
  CHECK(counter_error("    glitch_window: -1\n") ==
        "t.yaml:6:20: metrics.energy.glitch_window: expected a whole number from 0 to 1000, got "
        "'-1'");
  CHECK(counter_error("    glitch_window: 1.5\n") ==
        "t.yaml:6:20: metrics.energy.glitch_window: expected a whole number from 0 to 1000, got "
        "'1.5'");
  CHECK(counter_error("    glitch_window: 1001\n") ==
        "t.yaml:6:20: metrics.energy.glitch_window: expected a whole number from 0 to 1000, got "
        "'1001'");
  const std::string rate = "t.yaml:6:15: metrics.energy.max_rate: expected a decimal number ";
  CHECK(counter_error("    max_rate: 0\n") == rate + "greater than 0, got '0'");
  CHECK(counter_error("    max_rate: -3\n") == rate + "greater than 0, got '-3'");
  CHECK(counter_error("    max_rate: fast\n") == rate + "greater than 0, got 'fast'");
  CHECK(counter_error("    rollback_max: -0.001\n") ==
        "t.yaml:6:19: metrics.energy.rollback_max: expected a decimal number of at least 0, got "
        "'-0.001'");
  const std::string gap = "t.yaml:6:17: metrics.energy.gap_factor: expected a decimal number ";
  CHECK(counter_error("    gap_factor: 1\n") == gap + "greater than 1, got '1'");
  CHECK(counter_error("    gap_factor: 0.5\n") == gap + "greater than 1, got '0.5'");
  CHECK(counter_error("    gap_factor: [2]\n") == gap + "greater than 1, got a list");
  CHECK(counter_error("    direction: both\n") ==
        "t.yaml:6:16: metrics.energy.direction: expected one of import, export, net, got 'both'");
  CHECK(counter_error("    period: weekly\n") ==
        "t.yaml:6:13: metrics.energy.period: expected one of none, daily, got 'weekly'");
  CHECK(counter_error("    role: voltage\n") ==
        "t.yaml:6:11: metrics.energy.role: expected one of uptime_seconds, boot_count, got "
        "'voltage'");
}

TEST_CASE("period daily needs a known period_zone, and period_zone needs period daily",
          "[config]") {
  CHECK(error_of("counter", "    period: daily\n") ==
        "t.yaml:6:5: metrics.energy.period: period daily needs period_zone (the IANA zone whose "
        "midnight resets the register, e.g. Europe/Berlin)");
  CHECK(error_of("counter", "    period_zone: Europe/Berlin\n") ==
        "t.yaml:6:5: metrics.energy.period_zone: only allowed with period daily");
  CHECK(error_of("counter", "    period: none\n    period_zone: Europe/Berlin\n") ==
        "t.yaml:7:5: metrics.energy.period_zone: only allowed with period daily");
  // Resolved like a mapping's timestamp zone: an unknown name is an error at the value.
  const std::string unknown =
      error_of("counter", "    period: daily\n    period_zone: Mars/Olympus\n");
  CHECK(unknown.starts_with("t.yaml:7:18: "));
  CHECK(unknown.find("Mars/Olympus") != std::string::npos);
  CHECK(error_of("counter", "    period: daily\n    period_zone: \"\"\n") ==
        "t.yaml:7:18: metrics.energy.period_zone: expected an IANA time zone name such as "
        "Europe/Berlin, got ''");
}

TEST_CASE("counter-only series keys are errors on a gauge, role is not", "[config]") {
  for (const std::string key :
       {"glitch_window: 3", "max_rate: 5", "rollback_max: 1", "gap_factor: 10", "direction: import",
        "period: none", "period_zone: Europe/Berlin", "jump_threshold: 5"}) {
    INFO(key);
    const std::string name = key.substr(0, key.find(':'));
    CHECK(error_of("gauge", "    " + key + "\n") ==
          "t.yaml:6:5: metrics.energy." + name + ": only allowed for kind counter, not gauge");
  }
  // Even when `kind` comes last.
  auto late_kind = parse_config(
      "gateway_id: gw\nmetrics:\n  uptime: {max_rate: 5, unit: s, kind: gauge}\nmappings:\n"
      "  - topic: meters/#\n",
      "t.yaml");
  REQUIRE_FALSE(late_kind.ok());
  CHECK(late_kind.error().message ==
        "t.yaml:3:12: metrics.uptime.max_rate: only allowed for kind counter, not gauge");

  auto gauge_role = parse_config(
      "gateway_id: gw\nmetrics:\n  uptime: {kind: gauge, unit: s, role: uptime_seconds}\n"
      "mappings:\n  - topic: meters/#\n",
      "t.yaml");
  if (!gauge_role) FAIL(gauge_role.error().message);
  CHECK(gauge_role->metric("uptime")->role == meter::MetricRole::uptime_seconds);
}

TEST_CASE("mapping topics may not take the agent's reserved $meter-agent topics", "[config]") {
  const auto with_topic = [](const std::string& topic) {
    return parse_config(
        "gateway_id: gw\nmetrics: {e: {kind: gauge, unit: W}}\nmappings:\n  - topic: " + topic +
            "\n",
        "t.yaml");
  };
  for (const std::string reserved : {"$meter-agent/operator", "$meter-agent/#", "$meter-agent"}) {
    INFO(reserved);
    auto result = with_topic(reserved);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().message ==
          "t.yaml:4:12: mappings[0].topic: topics starting with $meter-agent are reserved for the "
          "agent's own records, got '" +
              reserved + "'");
  }
  // Not reserved: other $ topics, and the agent's MQTT status prefix without '$'.
  CHECK(with_topic("$SYS/#").ok());
  CHECK(with_topic("meter-agent/+/status").ok());
}
