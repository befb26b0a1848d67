#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/config/config.hpp"

namespace {

namespace fs = std::filesystem;
using meter::parse_config;

// A valid config to build variations on; line numbers below refer to it.
const std::string kMinimal =
    "gateway_id: gw\n"                        // 1
    "metrics:\n"                              // 2
    "  energy: {kind: counter, unit: kWh}\n"  // 3
    "mappings:\n"                             // 4
    "  - topic: meters/#\n";                  // 5

meter::Config parse_ok(const std::string& yaml) {
  auto result = parse_config(yaml, "t.yaml");
  INFO(yaml);
  if (!result) FAIL(result.error().message);
  return std::move(result).value();
}

std::string error_of(const std::string& yaml) {
  auto result = parse_config(yaml, "t.yaml");
  INFO(yaml);
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

// A directory of its own per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("meter-test-config-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

}  // namespace

TEST_CASE("the shipped example config parses to the documented values", "[config]") {
  const std::string path = std::string(METER_SOURCE_DIR) + "/config/agent.example.yaml";
  auto result = meter::load_config(path);
  if (!result) FAIL(result.error().message);
  const meter::Config& config = *result;

  CHECK(config.source == path);
  CHECK(config.gateway_id == "site-01");
  CHECK(config.buffer.path == "/var/lib/meter-agent/buffer.db");
  CHECK(config.buffer.durability == meter::Durability::power_loss);

  REQUIRE(config.metrics.size() == 2);
  const meter::MetricConfig* energy = config.metric("energy");
  REQUIRE(energy != nullptr);
  CHECK(energy->name == "energy");
  CHECK(energy->kind == meter::MetricKind::counter);
  CHECK(energy->unit == "kWh");
  REQUIRE(energy->jump_threshold.has_value());
  CHECK(energy->jump_threshold->text() == "10000");

  const meter::MetricConfig* power = config.metric("power");
  REQUIRE(power != nullptr);
  CHECK(power->name == "power");
  CHECK(power->kind == meter::MetricKind::gauge);
  CHECK(power->unit == "kW");
  CHECK_FALSE(power->jump_threshold.has_value());

  REQUIRE(config.mappings.size() == 5);
  CHECK(config.mappings[1].topic == "import");  // JSON lines given to `meter-agent import`
  CHECK(config.mappings[1].timestamp.zone == nullptr);
  // The presets, found in config/presets/ beside the example.
  CHECK(config.presets_dir.empty());
  CHECK(config.mappings[2].preset == "tasmota");
  CHECK(config.mappings[2].topic == "tele/+/SENSOR");
  CHECK(config.mappings[3].preset == "shelly_em");
  CHECK(config.mappings[3].topic == "+/status/+");
  CHECK(config.mappings[4].preset == "zigbee2mqtt");
  CHECK(config.mappings[4].topic == "zigbee2mqtt/#");
  const meter::MappingConfig& mapping = config.mappings[0];
  CHECK(mapping.topic == "meters/#");
  CHECK(mapping.format == meter::PayloadFormat::seed_json);
  CHECK(mapping.timestamp.format == meter::TimestampFormat::rfc3339);
  CHECK(mapping.timestamp.zone_name == "Europe/Berlin");
  CHECK(mapping.timestamp.zone != nullptr);

  CHECK(config.normalize.future_tolerance_ms == 5 * 60 * 1000);
  CHECK(config.normalize.batch_size == 20000);
}

TEST_CASE("optional keys take their defaults", "[config]") {
  const meter::Config config = parse_ok(kMinimal);
  CHECK(config.source == "t.yaml");
  CHECK(config.gateway_id == "gw");
  CHECK(config.buffer.path == "/var/lib/meter-agent/buffer.db");
  CHECK(config.buffer.durability == meter::Durability::power_loss);
  REQUIRE(config.metric("energy") != nullptr);
  CHECK_FALSE(config.metric("energy")->jump_threshold.has_value());
  REQUIRE(config.mappings.size() == 1);
  CHECK(config.mappings[0].format == meter::PayloadFormat::seed_json);
  CHECK(config.mappings[0].timestamp.format == meter::TimestampFormat::rfc3339);
  CHECK(config.mappings[0].timestamp.zone_name.empty());
  CHECK(config.mappings[0].timestamp.zone == nullptr);
  CHECK(config.normalize.future_tolerance_ms == 300000);
  CHECK(config.normalize.batch_size == 20000);
}

TEST_CASE("every setting is read", "[config]") {
  const meter::Config config = parse_ok(
      "gateway_id: Site_A.01-x\n"
      "buffer:\n"
      "  path: /data/buf.db\n"
      "  durability: normal\n"
      "metrics:\n"
      "  energy_total:\n"
      "    kind: counter\n"
      "    unit: MWh\n"
      "    jump_threshold: 12345678901234567890.123456789\n"
      "  temp_c: {kind: gauge, unit: \"°C\"}\n"
      "mappings:\n"
      "  - topic: a/+/s\n"
      "    timestamp: {format: epoch_seconds, zone: UTC}\n"
      "  - topic: b/#\n"
      "    format: seed_json\n"
      "    timestamp: {format: epoch_milliseconds}\n"
      "normalize:\n"
      "  future_tolerance: 250ms\n"
      "  batch_size: 100000\n");
  CHECK(config.gateway_id == "Site_A.01-x");
  CHECK(config.buffer.path == "/data/buf.db");
  CHECK(config.buffer.durability == meter::Durability::normal);
  REQUIRE(config.metric("energy_total") != nullptr);
  // Digits a double would lose: the threshold must come from the text.
  CHECK(config.metric("energy_total")->jump_threshold->text() == "12345678901234567890.123456789");
  CHECK(config.metric("energy_total")->unit == "MWh");
  REQUIRE(config.metric("temp_c") != nullptr);
  CHECK(config.metric("temp_c")->unit == "°C");
  CHECK(config.metric("temp_c")->kind == meter::MetricKind::gauge);
  REQUIRE(config.mappings.size() == 2);
  CHECK(config.mappings[0].topic == "a/+/s");
  CHECK(config.mappings[0].timestamp.format == meter::TimestampFormat::epoch_seconds);
  CHECK(config.mappings[0].timestamp.zone_name == "UTC");
  CHECK(config.mappings[0].timestamp.zone != nullptr);
  CHECK(config.mappings[1].topic == "b/#");
  CHECK(config.mappings[1].timestamp.format == meter::TimestampFormat::epoch_milliseconds);
  CHECK(config.normalize.future_tolerance_ms == 250);
  CHECK(config.normalize.batch_size == 100000);
}

TEST_CASE("metric() and mapping_for() look things up", "[config]") {
  const meter::Config config = parse_ok(
      "gateway_id: gw\n"
      "metrics: {energy: {kind: counter, unit: kWh}, power: {kind: gauge, unit: kW}}\n"
      "mappings:\n"
      "  - topic: meters/special/+\n"
      "    timestamp: {format: epoch_seconds}\n"
      "  - topic: meters/#\n");
  CHECK(config.metric("power")->unit == "kW");
  CHECK(config.metric("pow") == nullptr);
  CHECK(config.metric("") == nullptr);

  // First match wins, even though "meters/#" matches too.
  const meter::MappingConfig* special = config.mapping_for("meters/special/m1");
  REQUIRE(special != nullptr);
  CHECK(special == &config.mappings[0]);
  CHECK(config.mapping_for("meters/special/m1/x") == &config.mappings[1]);
  CHECK(config.mapping_for("meters") == &config.mappings[1]);
  CHECK(config.mapping_for("other/m1") == nullptr);
}

TEST_CASE("unknown keys are errors at every level", "[config]") {
  CHECK(error_of(kMinimal + "mapings: []\n") ==
        "t.yaml:6:1: unknown key 'mapings' in top level; expected one of gateway_id, buffer, "
        "metrics, mappings, presets_dir, normalize, mqtt, http, uplink, log");
  CHECK(error_of("buffer:\n  path: x.db\n  durabilty: normal\n") ==
        "t.yaml:3:3: unknown key 'durabilty' in buffer; expected one of path, durability, "
        "max_size_mib");
  CHECK(error_of("metrics:\n  energy:\n    kind: counter\n    units: kWh\n") ==
        "t.yaml:4:5: unknown key 'units' in metrics.energy; expected one of kind, unit, "
        "jump_threshold, glitch_window, max_rate, rollback_max, gap_factor, direction, period, "
        "period_zone, role");
  CHECK(error_of("mappings:\n  - topic: a\n  - topic: b\n    fromat: seed_json\n") ==
        "t.yaml:4:5: unknown key 'fromat' in mappings[1]; expected one of preset, topic, format, "
        "timestamp, device_id, readings, when, ignore");
  CHECK(error_of("mappings:\n  - topic: a\n    timestamp: {format: rfc3339, tz: UTC}\n") ==
        "t.yaml:3:34: unknown key 'tz' in mappings[0].timestamp; expected one of path, format, "
        "zone");
  CHECK(error_of("normalize:\n  batch: 10\n") ==
        "t.yaml:2:3: unknown key 'batch' in normalize; expected one of future_tolerance, "
        "batch_size, clock");
}

TEST_CASE("the uplink section: defaults, durations, and what it refuses", "[config]") {
  auto off = parse_config(kMinimal, "t.yaml");
  REQUIRE(off);
  CHECK_FALSE(off->uplink.enabled());
  CHECK(off->uplink.max_in_flight == 2);
  CHECK(off->normalize.clock == meter::ClockTrust::automatic);
  auto on = parse_config(kMinimal +
                             "uplink:\n  url: https://central.example.com/\n  token_env: TOKEN\n"
                             "  retry: {min: 2s, max: 1m}\n  retention: 30d\n  gzip_level: 6\n"
                             "  max_in_flight: 1\n"
                             "normalize:\n  clock: synchronized\n",
                         "t.yaml");
  REQUIRE(on);
  CHECK(on->uplink.ingest_url() == "https://central.example.com/api/v1/ingest");
  CHECK(on->uplink.token_env == "TOKEN");
  CHECK(on->uplink.verify);
  CHECK(on->uplink.retry_min_ms == 2000);
  CHECK(on->uplink.retry_max_ms == 60000);
  CHECK(on->uplink.retention_ms == 30LL * 86400 * 1000);
  CHECK(on->uplink.gzip_level == 6);
  CHECK(on->uplink.max_in_flight == 1);
  CHECK(on->normalize.clock == meter::ClockTrust::synchronized);
  CHECK(error_of(kMinimal + "uplink:\n  url: http://central.example.com\n  token_env: T\n")
            .find("in the clear") != std::string::npos);
  CHECK(
      parse_config(kMinimal + "uplink:\n  url: http://127.0.0.1:8080\n  token_env: T\n", "t.yaml"));
  CHECK(error_of(kMinimal + "uplink:\n  url: https://c.example.com\n").find("token") !=
        std::string::npos);
  CHECK(error_of(kMinimal + "uplink:\n  url: https://c\n  token_env: T\n  token_file: f\n")
            .find("not both") != std::string::npos);
  CHECK(error_of(kMinimal + "uplink:\n  url: https://c\n  token_env: T\n  cert_file: c\n")
            .find("go together") != std::string::npos);
  CHECK(error_of(kMinimal +
                 "uplink:\n  url: https://c\n  token_env: T\n  retry: {min: 2s, max: 1s}\n")
            .find("retry.max") != std::string::npos);
  CHECK(error_of(kMinimal + "uplink:\n  url: ftp://c\n  token_env: T\n").find("https://") !=
        std::string::npos);
  CHECK(error_of(kMinimal + "uplink:\n  batch_max_records: 20000\n").find("1 to 10000") !=
        std::string::npos);
  CHECK(error_of(kMinimal + "uplink:\n  max_in_flight: 0\n").find("1 to 8") != std::string::npos);
}

TEST_CASE("duplicate keys are errors at the second occurrence", "[config]") {
  CHECK(error_of(kMinimal + "gateway_id: other\n") ==
        "t.yaml:6:1: duplicate key 'gateway_id' in top level; first at line 1, column 1");
  CHECK(error_of("metrics:\n  energy: {kind: counter, unit: kWh}\n  energy: {kind: gauge, unit: "
                 "kW}\n") ==
        "t.yaml:3:3: duplicate key 'energy' in metrics; first at line 2, column 3");
  CHECK(error_of("metrics:\n  power: {kind: gauge, unit: kW, kind: counter}\n") ==
        "t.yaml:2:34: duplicate key 'kind' in metrics.power; first at line 2, column 11");
  CHECK(error_of("normalize:\n  batch_size: 1\n  batch_size: 2\n") ==
        "t.yaml:3:3: duplicate key 'batch_size' in normalize; first at line 2, column 3");
}

TEST_CASE("enum values outside their set are errors", "[config]") {
  CHECK(error_of("metrics:\n  energy:\n    kind: countr\n") ==
        "t.yaml:3:11: metrics.energy.kind: expected one of counter, gauge, got 'countr'");
  // Case matters: the value is a keyword, not prose.
  CHECK(error_of("metrics:\n  energy:\n    kind: Counter\n") ==
        "t.yaml:3:11: metrics.energy.kind: expected one of counter, gauge, got 'Counter'");
  CHECK(error_of("buffer:\n  durability: fast\n") ==
        "t.yaml:2:15: buffer.durability: expected one of power_loss, normal, got 'fast'");
  CHECK(error_of("mappings:\n  - topic: a\n    format: jsn\n") ==
        "t.yaml:3:13: mappings[0].format: expected one of seed_json, json, plain, got 'jsn'");
  CHECK(error_of("mappings:\n  - topic: a\n    timestamp:\n      format: iso\n") ==
        "t.yaml:4:15: mappings[0].timestamp.format: expected one of rfc3339, epoch_seconds, "
        "epoch_milliseconds, got 'iso'");
}

TEST_CASE("values of the wrong type are errors at the value", "[config]") {
  CHECK(error_of("gateway_id: g\nmetrics: [energy]\n") ==
        "t.yaml:2:10: metrics: expected a map, got a list");
  CHECK(error_of("metrics:\n  energy:\n    kind: {a: b}\n") ==
        "t.yaml:3:11: metrics.energy.kind: expected one of counter, gauge, got a map");
  CHECK(error_of("gateway_id: [a, b]\n") ==
        "t.yaml:1:13: gateway_id: expected 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-', "
        "got a list");
  CHECK(error_of("mappings:\n  topic: a\n") ==
        "t.yaml:2:3: mappings: expected a list of mappings, got a map");
  CHECK(error_of("mappings:\n  - meters/#\n") ==
        "t.yaml:2:5: mappings[0]: expected a map, got 'meters/#'");
  CHECK(error_of("buffer: /tmp/x.db\n") == "t.yaml:1:9: buffer: expected a map, got '/tmp/x.db'");
  CHECK(error_of("normalize:\n  batch_size: [1]\n") ==
        "t.yaml:2:15: normalize.batch_size: expected a whole number from 1 to 100000, got a list");
  CHECK(error_of("- a\n- b\n") == "t.yaml:1:1: top level: expected a map, got a list");
  CHECK(error_of("hello\n") == "t.yaml:1:1: top level: expected a map, got 'hello'");
  CHECK(error_of("? [a]\n: 1\n") == "t.yaml:1:3: expected a string key in top level, got a list");
}

TEST_CASE("an empty value is blamed on its key", "[config]") {
  // yaml-cpp places an empty value at the next token; the key is the useful spot.
  CHECK(error_of("gateway_id:\nmetrics: {}\n") ==
        "t.yaml:1:1: gateway_id: expected 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-', "
        "got an empty value");
  CHECK(error_of("metrics:\n  energy:\n    kind: counter\n    unit:\n") ==
        "t.yaml:4:5: metrics.energy.unit: expected a unit without whitespace or '|', got an "
        "empty value");
  CHECK(error_of("gateway_id: gw\nmetrics:\n  energy:\nmappings: []\n") ==
        "t.yaml:3:3: metrics.energy: missing required key 'kind'");
  CHECK(error_of("normalize:\n  future_tolerance: ~\n") ==
        "t.yaml:2:3: normalize.future_tolerance: expected a duration: a whole number and a unit "
        "ms, s, m, h or d, e.g. 300s or 5m, got an empty value");
}

TEST_CASE("a missing required key points at the map that lacks it", "[config]") {
  CHECK(error_of("metrics:\n  energy: {kind: counter, unit: kWh}\nmappings:\n  - topic: a\n") ==
        "t.yaml:1:1: top level: missing required key 'gateway_id'");
  CHECK(error_of("gateway_id: gw\nmappings:\n  - topic: a\n") ==
        "t.yaml:1:1: top level: missing required key 'metrics'");
  CHECK(error_of("gateway_id: gw\nmetrics:\n  energy: {kind: counter, unit: kWh}\n") ==
        "t.yaml:1:1: top level: missing required key 'mappings'");
  CHECK(error_of("gateway_id: g\nmetrics:\n  energy:\n    kind: counter\n") ==
        "t.yaml:4:5: metrics.energy: missing required key 'unit'");
  CHECK(error_of("metrics:\n  energy: {unit: kWh}\n") ==
        "t.yaml:2:11: metrics.energy: missing required key 'kind'");
  CHECK(error_of("gateway_id: gw\nmetrics:\n  e: {kind: gauge, unit: W}\nmappings:\n  - format: "
                 "seed_json\n") == "t.yaml:5:5: mappings[0]: missing required key 'topic'");
  CHECK(error_of("gateway_id: gw\nmetrics: {}\n") ==
        "t.yaml:2:10: metrics: at least one metric is required");
  CHECK(error_of("gateway_id: gw\nmetrics:\n  e: {kind: gauge, unit: W}\nmappings: []\n") ==
        "t.yaml:4:11: mappings: at least one mapping is required");
}

TEST_CASE("names and units are validated", "[config]") {
  const std::string gateway_expected =
      ": gateway_id: expected 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-', got ";
  CHECK(error_of("gateway_id: site/01\n") == "t.yaml:1:13" + gateway_expected + "'site/01'");
  CHECK(error_of("gateway_id: \"\"\n") == "t.yaml:1:13" + gateway_expected + "''");
  const std::string id64(64, 'a');
  CHECK(parse_ok("gateway_id: " + id64 + kMinimal.substr(kMinimal.find('\n'))).gateway_id == id64);
  CHECK(error_of("gateway_id: " + id64 + "b\n") ==
        "t.yaml:1:13" + gateway_expected + "'" + id64.substr(0, 60) + "...'");

  CHECK(error_of("metrics:\n  Energy: {kind: counter, unit: kWh}\n") ==
        "t.yaml:2:3: metrics: invalid metric name 'Energy'; expected 1 to 64 characters of a-z, "
        "0-9, '_'");
  CHECK(error_of("metrics:\n  \"a|b\": {kind: counter, unit: kWh}\n") ==
        "t.yaml:2:3: metrics: invalid metric name 'a|b'; expected 1 to 64 characters of a-z, "
        "0-9, '_'");
  CHECK(error_of("metrics:\n  " + std::string(65, 'm') + ": {kind: gauge, unit: W}\n")
            .starts_with("t.yaml:2:3: metrics: invalid metric name"));

  const std::string unit_expected =
      "metrics.e.unit: expected a unit without whitespace or '|', got ";
  CHECK(error_of("metrics:\n  e: {kind: gauge, unit: \"k Wh\"}\n") ==
        "t.yaml:2:26: " + unit_expected + "'k Wh'");
  CHECK(error_of("metrics:\n  e: {kind: gauge, unit: \"kWh|x\"}\n") ==
        "t.yaml:2:26: " + unit_expected + "'kWh|x'");
  CHECK(error_of("metrics:\n  e: {kind: gauge, unit: \"\"}\n") ==
        "t.yaml:2:26: " + unit_expected + "''");
  CHECK(error_of("metrics:\n  e: {kind: gauge, unit: \"kWh\\t\"}\n") ==
        "t.yaml:2:26: " + unit_expected + "'kWh\\x09'");
}

TEST_CASE("jump_threshold is a positive decimal on counters only", "[config]") {
  const auto with_threshold = [](const std::string& threshold) {
    return "gateway_id: gw\n"
           "metrics:\n"
           "  energy:\n"
           "    kind: counter\n"
           "    unit: kWh\n"
           "    jump_threshold: " +
           threshold +
           "\n"
           "mappings:\n"
           "  - topic: meters/#\n";
  };
  CHECK(parse_ok(with_threshold("0.001")).metric("energy")->jump_threshold->text() == "0.001");
  CHECK(parse_ok(with_threshold("1e3")).metric("energy")->jump_threshold->text() == "1000");
  CHECK(parse_ok(with_threshold("\"42\"")).metric("energy")->jump_threshold->text() == "42");

  const std::string prefix =
      "t.yaml:6:21: metrics.energy.jump_threshold: expected a decimal number greater than 0, got ";
  CHECK(error_of(with_threshold("0")) == prefix + "'0'");
  CHECK(error_of(with_threshold("-5")) == prefix + "'-5'");
  CHECK(error_of(with_threshold("abc")) == prefix + "'abc'");
  CHECK(error_of(with_threshold(".inf")) == prefix + "'.inf'");
  CHECK(error_of(with_threshold("1,000")) == prefix + "'1,000'");
  CHECK(error_of(with_threshold("[1]")) == prefix + "a list");

  // On a gauge, wherever `kind` is written relative to the threshold.
  CHECK(error_of("metrics:\n  power:\n    jump_threshold: 5\n    kind: gauge\n    unit: kW\n") ==
        "t.yaml:3:5: metrics.power.jump_threshold: only allowed for kind counter, not gauge");
  CHECK(error_of("metrics:\n  power: {kind: gauge, unit: kW, jump_threshold: 5}\n") ==
        "t.yaml:2:34: metrics.power.jump_threshold: only allowed for kind counter, not gauge");
}

TEST_CASE("durations take an integer and a unit", "[config]") {
  const auto tolerance = [](const std::string& text) {
    return parse_ok(kMinimal + "normalize:\n  future_tolerance: " + text + "\n")
        .normalize.future_tolerance_ms;
  };
  CHECK(tolerance("0s") == 0);
  CHECK(tolerance("0ms") == 0);
  CHECK(tolerance("250ms") == 250);
  CHECK(tolerance("300s") == 300000);
  CHECK(tolerance("5m") == 300000);
  CHECK(tolerance("2h") == 7200000);
  CHECK(tolerance("007s") == 7000);

  const auto bad = [](const std::string& text) {
    return error_of(kMinimal + "normalize:\n  future_tolerance: " + text + "\n");
  };
  const std::string prefix =
      "t.yaml:7:21: normalize.future_tolerance: expected a duration: a whole number and a unit "
      "ms, s, m, h or d, e.g. 300s or 5m, got ";
  CHECK(bad("300") == prefix + "'300'");
  CHECK(bad("5 m") == prefix + "'5 m'");
  CHECK(bad("5min") == prefix + "'5min'");
  CHECK(bad("1.5h") == prefix + "'1.5h'");
  CHECK(bad("+5m") == prefix + "'+5m'");
  CHECK(bad("m") == prefix + "'m'");
  CHECK(bad("ms") == prefix + "'ms'");
  CHECK(bad("5D") == prefix + "'5D'");
  CHECK(bad("5M") == prefix + "'5M'");
  CHECK(bad("\"\"") == prefix + "''");
  CHECK(bad("-5m") == "t.yaml:7:21: normalize.future_tolerance: must not be negative, got '-5m'");
  CHECK(bad("3000000000000h") ==
        "t.yaml:7:21: normalize.future_tolerance: duration too large, got '3000000000000h'");
}

TEST_CASE("batch_size is a whole number from 1 to 100000", "[config]") {
  CHECK(parse_ok(kMinimal + "normalize: {batch_size: 1}\n").normalize.batch_size == 1);
  const std::string prefix =
      "t.yaml:6:25: normalize.batch_size: expected a whole number from 1 to 100000, got ";
  for (const std::string text :
       {"0", "100001", "-1", "5.5", "1e3", "abc", "99999999999999999999"}) {
    INFO(text);
    CHECK(error_of(kMinimal + "normalize: {batch_size: " + text + "}\n") ==
          prefix + "'" + text + "'");
  }
}

TEST_CASE("topic filters follow MQTT 3.1.1", "[config]") {
  const auto with_topic = [](const std::string& topic) {
    return "gateway_id: gw\nmetrics: {e: {kind: gauge, unit: W}}\nmappings:\n  - topic: " + topic +
           "\n";
  };
  for (const std::string good :
       {"\"#\"", "+", "+/+/#", "/", "a//b", "$SYS/#", "a/+", "sport/#", "\"m\\u00e9ter/+\""}) {
    INFO(good);
    CHECK(parse_ok(with_topic(good)).mappings.size() == 1);
  }
  const std::string at = "t.yaml:4:12: mappings[0].topic: invalid MQTT topic filter ";
  CHECK(error_of(with_topic("\"\"")) == at + "'': must not be empty");
  CHECK(error_of(with_topic("a/#/b")) == at + "'a/#/b': '#' must be alone in the last level");
  CHECK(error_of(with_topic("\"#/a\"")) == at + "'#/a': '#' must be alone in the last level");
  CHECK(error_of(with_topic("a#")) == at + "'a#': '#' must be alone in the last level");
  CHECK(error_of(with_topic("a/b#")) == at + "'a/b#': '#' must be alone in the last level");
  CHECK(error_of(with_topic("a/b+")) == at + "'a/b+': '+' must be alone in its level");
  CHECK(error_of(with_topic("+a/b")) == at + "'+a/b': '+' must be alone in its level");
  CHECK(error_of(with_topic("\"a\\0b\"")) == at + "'a\\x00b': must not contain a NUL character");
  CHECK(error_of(with_topic("\"a\xff\"")) == at + "'a\xff': is not valid UTF-8");
  // Unquoted, '#' starts a YAML comment and the topic is empty.
  CHECK(error_of(with_topic("#")) ==
        "t.yaml:4:5: mappings[0].topic: expected an MQTT topic filter, got an empty value (quote "
        "a filter that starts with '#': YAML reads an unquoted one as a comment)");
  CHECK(error_of(with_topic("[a]")) ==
        "t.yaml:4:12: mappings[0].topic: expected an MQTT topic filter, got a list");
  CHECK(error_of(with_topic("\"" + std::string(65536, 'a') + "\""))
            .starts_with(at + "'" + std::string(60, 'a') + "...': longer than 65535 bytes"));

  // The second copy could never match: the first always wins.
  CHECK(error_of("gateway_id: gw\nmetrics: {e: {kind: gauge, unit: W}}\nmappings:\n"
                 "  - topic: a/#\n  - topic: b\n  - topic: a/#\n") ==
        "t.yaml:6:12: mappings[2].topic: same filter as mappings[0] (line 4), so it would never "
        "match");
}

TEST_CASE("an unknown time zone is an error at the zone", "[config]") {
  const std::string message = error_of(
      "gateway_id: gw\nmetrics: {e: {kind: gauge, unit: W}}\nmappings:\n  - topic: a\n"
      "    timestamp:\n      zone: Mars/Olympus_Mons\n");
  CHECK(message.starts_with("t.yaml:6:13: mappings[0].timestamp.zone: "));
  CHECK(message.find("Mars/Olympus_Mons") != std::string::npos);
  CHECK(error_of("gateway_id: gw\nmetrics: {e: {kind: gauge, unit: W}}\nmappings:\n  - topic: a\n"
                 "    timestamp: {zone: \"\"}\n") ==
        "t.yaml:5:23: mappings[0].timestamp.zone: expected an IANA time zone name such as "
        "Europe/Berlin, got ''");
}

TEST_CASE("YAML syntax errors, empty files and extra documents", "[config]") {
  CHECK(error_of("gateway_id: gw\nmetrics: [a\n") ==
        "t.yaml:3:1: invalid YAML: end of sequence flow not found");
  CHECK(error_of("gateway_id: gw\n\tmetrics: {}\n").starts_with("t.yaml:2:"));
  CHECK(error_of("a: b: c\n") == "t.yaml:1:5: invalid YAML: illegal map value");

  const std::string empty =
      "t.yaml:1:1: empty configuration; expected a map with at least gateway_id, metrics and "
      "mappings";
  CHECK(error_of("") == empty);
  CHECK(error_of("# nothing but a comment\n\n") == empty);
  CHECK(error_of("---\n") == empty);

  CHECK(error_of(kMinimal + "---\ngateway_id: other\n") ==
        "t.yaml:7:1: expected a single YAML document; another one starts here");
  // A trailing document marker adds no content and is harmless.
  CHECK(parse_ok(kMinimal + "---\n").gateway_id == "gw");
}

TEST_CASE("parse_config never throws", "[config]") {
  const std::string inputs[] = {
      "{",
      "]",
      "\t",
      "&a [*a]",
      "*undefined",
      "!!binary x",
      std::string(5000, '[') + std::string(5000, ']'),
      std::string("a: \0 b", 6),
      "gateway_id: gw\nmetrics: {e: {kind: gauge, unit: W}}\nmappings:\n  - {topic: a\n",
  };
  for (const std::string& input : inputs) {
    INFO(input.substr(0, 80));
    meter::Result<meter::Config> result = meter::Error{""};
    REQUIRE_NOTHROW(result = parse_config(input, "t.yaml"));
    CHECK_FALSE(result.ok());
    if (!result.ok()) CHECK(result.error().message.starts_with("t.yaml"));
  }
}

TEST_CASE("relative buffer paths resolve against the config file's directory", "[config]") {
  const auto with_path = [](const std::string& path) {
    return "gateway_id: gw\nbuffer:\n  path: " + path + "\n" +
           kMinimal.substr(kMinimal.find('\n') + 1);
  };

  TempDir dir;
  const fs::path file = dir.write("agent.yaml", with_path("data/buffer.db"));
  auto loaded = meter::load_config(file.string());
  if (!loaded) FAIL(loaded.error().message);
  CHECK(loaded->buffer.path == (dir.path() / "data/buffer.db").string());
  CHECK(fs::path(loaded->buffer.path).is_absolute());

  const fs::path up = dir.write("up.yaml", with_path("../x/./buffer.db"));
  auto loaded_up = meter::load_config(up.string());
  if (!loaded_up) FAIL(loaded_up.error().message);
  CHECK(loaded_up->buffer.path == (dir.path().parent_path() / "x/buffer.db").string());

  const fs::path absolute = dir.write("abs.yaml", with_path("/srv/b.db"));
  auto loaded_abs = meter::load_config(absolute.string());
  if (!loaded_abs) FAIL(loaded_abs.error().message);
  CHECK(loaded_abs->buffer.path == "/srv/b.db");

  // parse_config uses the directory part of the source name, if any.
  CHECK(parse_config(with_path("buffer.db"), "/etc/meter-agent/agent.yaml")->buffer.path ==
        "/etc/meter-agent/buffer.db");
  CHECK(parse_config(with_path("buffer.db"), "<string>")->buffer.path == "buffer.db");

  CHECK(error_of(with_path("data/")) == "t.yaml:3:9: buffer.path: must name a file, got 'data/'");
  CHECK(error_of(with_path("\"\"")) == "t.yaml:3:9: buffer.path: expected a file path, got ''");
}

TEST_CASE("load_config reports unreadable files", "[config]") {
  TempDir dir;
  const std::string missing = (dir.path() / "missing.yaml").string();
  auto result = meter::load_config(missing);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().message == missing + ": cannot read: No such file or directory");

  auto directory = meter::load_config(dir.path().string());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().message == dir.path().string() + ": cannot read: Is a directory");

  const fs::path empty = dir.write("empty.yaml", "");
  auto empty_result = meter::load_config(empty.string());
  REQUIRE_FALSE(empty_result.ok());
  CHECK(empty_result.error().message ==
        empty.string() +
            ":1:1: empty configuration; expected a map with at least gateway_id, metrics and "
            "mappings");

  // Errors from a file name the file as given.
  const fs::path bad = dir.write("bad.yaml", "gateway_id: gw\nmetrics:\n  e: {kind: gaug}\n");
  auto bad_result = meter::load_config(bad.string());
  REQUIRE_FALSE(bad_result.ok());
  CHECK(bad_result.error().message ==
        bad.string() + ":3:13: metrics.e.kind: expected one of counter, gauge, got 'gaug'");
}

TEST_CASE("topic_matches follows MQTT 3.1.1 section 4.7", "[config]") {
  using meter::topic_matches;
  // Exact levels.
  CHECK(topic_matches("a/b", "a/b"));
  CHECK_FALSE(topic_matches("a/b", "a/b/c"));
  CHECK_FALSE(topic_matches("a/b/c", "a/b"));
  CHECK_FALSE(topic_matches("a/b", "a/B"));
  CHECK_FALSE(topic_matches("a/b", "a/b/"));
  CHECK(topic_matches("/", "/"));

  // '#': the rest, including the parent level itself.
  CHECK(topic_matches("sport/tennis/player1/#", "sport/tennis/player1"));
  CHECK(topic_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  CHECK(topic_matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  CHECK(topic_matches("sport/#", "sport"));
  CHECK(topic_matches("sport/#", "sport/"));
  CHECK_FALSE(topic_matches("sport/#", "sports"));
  CHECK_FALSE(topic_matches("sport/#", "spor"));
  CHECK(topic_matches("#", "a"));
  CHECK(topic_matches("#", "/a/b"));

  // '+': exactly one level, which may be empty.
  CHECK(topic_matches("sport/tennis/+", "sport/tennis/player1"));
  CHECK_FALSE(topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  CHECK_FALSE(topic_matches("sport/+", "sport"));
  CHECK(topic_matches("sport/+", "sport/"));
  CHECK(topic_matches("+", "sport"));
  CHECK(topic_matches("+/+", "/finance"));
  CHECK(topic_matches("/+", "/finance"));
  CHECK_FALSE(topic_matches("+", "/finance"));
  CHECK(topic_matches("+/tennis/#", "sport/tennis/player1"));
  CHECK(topic_matches("a/+/c", "a//c"));

  // '$' topics are not matched by a leading wildcard, only by a '$' filter.
  CHECK_FALSE(topic_matches("#", "$SYS/broker/uptime"));
  CHECK_FALSE(topic_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
  CHECK(topic_matches("$SYS/#", "$SYS/monitor/Clients"));
  CHECK(topic_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
  CHECK(topic_matches("a/#", "a/$b"));

  // Invalid filters and empty topics match nothing.
  CHECK_FALSE(topic_matches("", ""));
  CHECK_FALSE(topic_matches("#", ""));
  CHECK_FALSE(topic_matches("a/#/b", "a/x/b"));
  CHECK_FALSE(topic_matches("a#", "a#"));
  CHECK_FALSE(topic_matches("a/b+", "a/b+"));
}

TEST_CASE("the daemon's sections: mqtt, http, log", "[config]") {
  const meter::Config config = parse_ok(kMinimal + R"(
mqtt:
  host: broker.local
  port: 8883
  protocol: "5"
  keepalive: 20s
  session_expiry: 2d
  username: gw
  password_env: METER_AGENT_MQTT_PASSWORD
  tls:
    enabled: true
    ca_file: ca.pem
    cert_file: /etc/meter-agent/client.pem
    key_file: /etc/meter-agent/client.key
  reconnect: {min: 500ms, max: 2m}
  status_topic_prefix: site/agents
http:
  listen: 127.0.0.1:9108
log:
  level: warning
  components: {mqtt: debug}
)");
  CHECK(config.mqtt.host == "broker.local");
  CHECK(config.mqtt.effective_port() == 8883);
  CHECK(config.mqtt.protocol_version == 5);
  CHECK(config.mqtt.keepalive_ms == 20000);
  CHECK(config.mqtt.session_expiry_ms == 2LL * 24 * 3600 * 1000);
  CHECK(config.mqtt.password_env == "METER_AGENT_MQTT_PASSWORD");
  CHECK(config.mqtt.tls.enabled);
  CHECK(config.mqtt.tls.verify);  // on unless turned off
  CHECK(config.mqtt.tls.cert_file == "/etc/meter-agent/client.pem");
  CHECK(config.mqtt.reconnect_min_ms == 500);
  CHECK(config.mqtt.reconnect_max_ms == 120000);
  CHECK(config.mqtt.client_id == "meter-agent-gw");  // fixed per gateway
  CHECK(config.http.listen == "127.0.0.1:9108");
  CHECK(config.log.level == meter::LogLevel::warning);
  CHECK(config.log.components.at("mqtt") == meter::LogLevel::debug);

  const meter::Config defaults = parse_ok(kMinimal);
  CHECK(defaults.mqtt.effective_port() == 1883);
  CHECK(defaults.mqtt.protocol_version == 4);
  CHECK_FALSE(defaults.mqtt.tls.enabled);
  CHECK(defaults.http.listen.empty());
}

TEST_CASE("the daemon's sections reject what cannot work", "[config]") {
  CHECK_THAT(error_of(kMinimal + "http:\n  listen: 0.0.0.0:9108\n"),
             Catch::Contains("t.yaml:7:11: http.listen: the operations endpoint listens on "
                             "loopback only"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  port: 70000\n"),
             Catch::Contains("t.yaml:7:9: mqtt.port: expected a whole number from 1 to 65535"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  tls: {enabled: true, cert_file: c.pem}\n"),
             Catch::Contains("cert_file and key_file go together"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  password_file: p\n  password_env: P\n"),
             Catch::Contains("not both"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  protocol: 4\n"),
             Catch::Contains("mqtt.protocol: expected one of 3.1.1, 5"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  reconnect: {min: 10s, max: 1s}\n"),
             Catch::Contains("reconnect.max must not be below reconnect.min"));
  CHECK_THAT(error_of(kMinimal + "log:\n  components: {mqtt: loud}\n"),
             Catch::Contains("log.components.mqtt: expected one of error, warning, info, debug"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  tls: {enabled: yes}\n"),
             Catch::Contains("mqtt.tls.enabled: expected one of true, false"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  acknowledge: later\n"),
             Catch::Contains("t.yaml:7:16: mqtt.acknowledge: expected one of each, batched"));
  // Two ways of sharing syncs at once: refused at the acknowledge key, in either order.
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  acknowledge: batched\n  ingest_workers: 2\n"),
             Catch::Contains("t.yaml:7:16: mqtt.acknowledge: batched shares syncs on one "
                             "connection and replaces ingest_workers"));
  CHECK_THAT(error_of(kMinimal + "mqtt:\n  ingest_workers: 2\n  acknowledge: batched\n"),
             Catch::Contains("t.yaml:8:16: mqtt.acknowledge:"));
}

TEST_CASE("mqtt.acknowledge: batched by default, each with ingest workers or when asked",
          "[config]") {
  CHECK(parse_ok(kMinimal).mqtt.batched_acknowledge);
  CHECK(parse_ok(kMinimal + "mqtt:\n  acknowledge: batched\n").mqtt.batched_acknowledge);
  CHECK_FALSE(parse_ok(kMinimal + "mqtt:\n  acknowledge: each\n").mqtt.batched_acknowledge);
  CHECK_FALSE(parse_ok(kMinimal + "mqtt:\n  ingest_workers: 4\n").mqtt.batched_acknowledge);
}

TEST_CASE("a section with every key commented out takes its defaults", "[config]") {
  const meter::Config config = parse_ok(kMinimal + "http:\n  # listen: 127.0.0.1:9108\nmqtt:\n");
  CHECK(config.http.listen.empty());
  CHECK(config.mqtt.host == "localhost");
}

// --- Mappings beyond seed_json, and presets ----------------------------------

namespace {

const std::string kPresetsDir = std::string(METER_SOURCE_DIR) + "/config/presets";

// kMinimal's metrics, a presets_dir, and `mappings` (line 6 on).
std::string with_mappings(const std::string& mappings) {
  return "gateway_id: gw\n"                        // 1
         "metrics:\n"                              // 2
         "  energy: {kind: counter, unit: kWh}\n"  // 3
         "  power: {kind: gauge, unit: W}\n"       // 4
         "presets_dir: " +
         kPresetsDir +
         "\n"             // 5
         "mappings:\n" +  // 6
         mappings;
}

}  // namespace

TEST_CASE("a json mapping reads every source form", "[config][mapping]") {
  const meter::Config config = parse_ok(with_mappings(R"(
  - topic: "site/+/data"
    format: json
    device_id: {topic_level: 1}
    timestamp: {path: /ts, format: epoch_milliseconds}
    readings:
      - metric_type: energy
        value: {path: "/emdata:0/total_act"}
        unit: {path: /unit}
        arrays: channels
        required: true
      - metric_type: power
        value: {path: /a~1b/0}
        unit: {constant: kW}
  - topic: "x/#"
    format: json
    device_id: {topic_levels_from: 1}
    readings: [{metric_type: {topic_level: -1}, value: {path: ""}, unit: {per_metric: {energy: Wh}}}]
  - topic: "y/#"
    format: plain
    device_id: meter-1
    readings: [{metric_type: power, unit: W}]
)"));
  REQUIRE(config.mappings.size() == 3);
  const meter::MappingConfig& json = config.mappings[0];
  CHECK(json.format == meter::PayloadFormat::json);
  CHECK(json.device_id.kind == meter::TextSource::Kind::topic_level);
  CHECK(json.device_id.topic_level == 1);
  REQUIRE(json.timestamp.path.has_value());
  CHECK(json.timestamp.path->text == "/ts");
  CHECK(json.timestamp.format == meter::TimestampFormat::epoch_milliseconds);
  REQUIRE(json.readings.size() == 2);
  CHECK(json.readings[0].metric_type.constant == "energy");
  REQUIRE(json.readings[0].value.has_value());
  CHECK(json.readings[0].value->tokens == std::vector<std::string>{"emdata:0", "total_act"});
  CHECK(json.readings[0].unit.kind == meter::TextSource::Kind::json_path);
  CHECK(json.readings[0].arrays == meter::ArrayValues::channels);
  CHECK(json.readings[0].required);
  CHECK(json.readings[1].value->tokens == std::vector<std::string>{"a/b", "0"});
  CHECK(json.readings[1].unit.constant == "kW");
  CHECK(json.readings[1].arrays == meter::ArrayValues::error);
  CHECK_FALSE(json.readings[1].required);

  const meter::MappingConfig& rest = config.mappings[1];
  CHECK(rest.device_id.kind == meter::TextSource::Kind::topic_levels_from);
  CHECK(rest.readings[0].metric_type.kind == meter::TextSource::Kind::topic_level);
  CHECK(rest.readings[0].metric_type.topic_level == -1);
  CHECK(rest.readings[0].value->tokens.empty());  // the whole document
  CHECK(rest.readings[0].unit.per_metric.at("energy") == "Wh");

  const meter::MappingConfig& plain = config.mappings[2];
  CHECK(plain.format == meter::PayloadFormat::plain);
  CHECK(plain.device_id.constant == "meter-1");
  CHECK_FALSE(plain.readings[0].value.has_value());
}

TEST_CASE("mapping combinations that cannot work are errors", "[config][mapping]") {
  CHECK(error_of(with_mappings("  - topic: a\n    format: json\n    readings: "
                               "[{metric_type: power, value: {path: /p}, unit: W}]\n")) ==
        "t.yaml:7:5: mappings[0]: missing required key 'device_id'");
  CHECK(error_of(with_mappings("  - topic: a\n    format: json\n    device_id: d\n")) ==
        "t.yaml:7:5: mappings[0]: missing required key 'readings'");
  CHECK(error_of(with_mappings("  - topic: a\n    format: json\n    device_id: d\n    readings: "
                               "[{metric_type: power, unit: W}]\n")) ==
        "t.yaml:7:5: mappings[0]: readings[0]: missing required key 'value' (format json)");
  CHECK(error_of(with_mappings("  - topic: a\n    device_id: d\n")) ==
        "t.yaml:7:5: mappings[0]: device_id and readings are for format json or plain; "
        "seed_json reads them from each payload");
  CHECK(error_of(with_mappings("  - topic: a\n    timestamp: {path: /t}\n")) ==
        "t.yaml:7:5: mappings[0]: timestamp.path is for format json; seed_json reads the "
        "member 'timestamp'");
  CHECK_THAT(error_of(with_mappings("  - topic: a\n    format: plain\n    device_id: d\n"
                                    "    readings: [{metric_type: power, value: {path: /v}, "
                                    "unit: W}]\n")),
             Catch::StartsWith("t.yaml:7:5: mappings[0]: format plain has no JSON to point into"));
  CHECK(error_of(with_mappings("  - topic: a\n    format: plain\n    device_id: d\n"
                               "    readings: [{metric_type: power, unit: W}, "
                               "{metric_type: energy, unit: kWh}]\n")) ==
        "t.yaml:7:5: mappings[0]: format plain takes exactly one reading: the payload is one "
        "number");
  CHECK(error_of(with_mappings("  - topic: a\n    format: plain\n    device_id: d\n"
                               "    readings: [{metric_type: power, unit: {per_metric: "
                               "{energy: kWh}}}]\n")) ==
        "t.yaml:7:5: mappings[0]: readings[0]: unit.per_metric has no unit for its metric_type "
        "'power'");
  // A metric the config does not declare, even when `metrics` comes later.
  CHECK(error_of("gateway_id: gw\nmappings:\n  - topic: a\n    format: plain\n    device_id: d\n"
                 "    readings: [{metric_type: voltage, unit: V}]\n"
                 "metrics:\n  energy: {kind: counter, unit: kWh}\n") ==
        "t.yaml:3:5: mappings[0]: a reading has metric_type 'voltage', which is not declared "
        "under metrics; declare it or remove the reading");
}

TEST_CASE("mapping sources are validated where they are written", "[config][mapping]") {
  const std::string head = "  - topic: a\n    format: json\n";  // lines 7-8
  CHECK(error_of(with_mappings(head + "    device_id: {topic_level: 1, path: /d}\n")) ==
        "t.yaml:9:16: mappings[0].device_id: expected exactly one of constant, path, "
        "topic_level, topic_levels_from, key, key_match, parts, match, got 2");
  CHECK(error_of(with_mappings(head + "    device_id: {per_metric: {energy: kWh}}\n")) ==
        "t.yaml:9:17: unknown key 'per_metric' in mappings[0].device_id; expected one of "
        "constant, path, topic_level, topic_levels_from, key, key_match, parts, match");
  CHECK(error_of(with_mappings(head + "    device_id: {topic_levels_from: -1}\n")) ==
        "t.yaml:9:36: mappings[0].device_id.topic_levels_from: expected a topic level index "
        "from 0 (the first level), got '-1'");
  CHECK(error_of(with_mappings(head + "    device_id: {topic_level: x}\n")) ==
        "t.yaml:9:30: mappings[0].device_id.topic_level: expected a topic level index: 0 for "
        "the first, -1 for the last, got 'x'");
  CHECK(error_of(with_mappings(head + "    device_id: {path: ENERGY.Total}\n")) ==
        "t.yaml:9:23: mappings[0].device_id.path: a JSON pointer must start with '/' (RFC "
        "6901), e.g. /ENERGY/Total, got 'ENERGY.Total'");
  CHECK(error_of(with_mappings(head + "    device_id: {path: /a~2}\n")) ==
        "t.yaml:9:23: mappings[0].device_id.path: '~' in a JSON pointer must be followed by 0 "
        "(for '~') or 1 (for '/'), got '/a~2'");
  CHECK(error_of(with_mappings(head + "    device_id: [a]\n")) ==
        "t.yaml:9:16: mappings[0].device_id: expected a constant or a map with one of constant, "
        "path, topic_level, topic_levels_from, key, key_match, parts, match, got a list");
  const std::string with_device = head + "    device_id: d\n    readings:\n";  // 9, 10
  CHECK(error_of(with_mappings(with_device + "      - metric_type: {path: /m}\n")) ==
        "t.yaml:11:23: unknown key 'path' in mappings[0].readings[0].metric_type; expected one "
        "of constant, topic_level, topic_levels_from, match, map");
  CHECK(error_of(with_mappings(with_device + "      - metric_type: Energy\n")) ==
        "t.yaml:11:22: mappings[0].readings[0].metric_type: expected a metric name (1 to 64 "
        "characters of a-z, 0-9, '_'), got 'Energy'");
  CHECK(
      error_of(with_mappings(with_device + "      - {metric_type: power, value: /p, unit: W}\n")) ==
      "t.yaml:11:37: mappings[0].readings[0].value: expected a map {path: JSON_POINTER}, "
      "{sum: [POINTER, ...]} or {difference: [POINTER, POINTER]}, e.g. {path: /ENERGY/Total}, "
      "got '/p'");
  CHECK(error_of(with_mappings(with_device +
                               "      - {metric_type: power, value: {path: /p}, unit: k W}\n")) ==
        "t.yaml:11:55: mappings[0].readings[0].unit: expected a unit without whitespace or '|', "
        "got 'k W'");
  CHECK(error_of(with_mappings(with_device + "      - {metric_type: power, value: {path: /p}, "
                                             "unit: W, arrays: split}\n")) ==
        "t.yaml:11:66: mappings[0].readings[0].arrays: expected one of error, channels, got "
        "'split'");
  CHECK(error_of(with_mappings(with_device + "      - {metric_type: power, value: {path: /p}, "
                                             "unit: W, channel: 1}\n")) ==
        "t.yaml:11:58: unknown key 'channel' in mappings[0].readings[0]; expected one of "
        "metric_type, value, unit, arrays, required, each, scale, timestamp, device_id");
  CHECK(
      error_of(with_mappings(with_device + "      - {metric_type: power, value: {path: /p}}\n")) ==
      "t.yaml:11:9: mappings[0].readings[0]: missing required key 'unit'");
  CHECK(error_of(with_mappings(head + "    device_id: d\n    readings: []\n")) ==
        "t.yaml:10:15: mappings[0].readings: at least one reading is required");
}

TEST_CASE("presets expand into mappings, and keys beside them replace the preset's",
          "[config][mapping]") {
  const meter::Config config = parse_ok(with_mappings(R"(
  - preset: tasmota
  - preset: tasmota
    topic: "tasmota/tele/+/SENSOR"
    timestamp: {path: /Time, format: rfc3339, zone: Europe/Berlin}
  - preset: zigbee2mqtt
    readings:
      - {metric_type: power, value: {path: /power}, unit: W}
)"));
  REQUIRE(config.mappings.size() == 3);
  const meter::MappingConfig& tasmota = config.mappings[0];
  CHECK(tasmota.preset == "tasmota");
  CHECK(tasmota.topic == "tele/+/SENSOR");
  CHECK(tasmota.format == meter::PayloadFormat::json);
  CHECK(tasmota.device_id.topic_level == -2);
  CHECK_FALSE(tasmota.timestamp.path.has_value());  // the receive time
  REQUIRE(tasmota.readings.size() == 4);            // ENERGY Total and Power, then a CT's
  CHECK(tasmota.readings[0].value->text == "/ENERGY/Total");
  CHECK(tasmota.readings[0].unit.constant == "kWh");

  const meter::MappingConfig& clock = config.mappings[1];
  CHECK(clock.topic == "tasmota/tele/+/SENSOR");
  REQUIRE(clock.timestamp.path.has_value());
  CHECK(clock.timestamp.path->text == "/Time");
  CHECK(clock.timestamp.zone_name == "Europe/Berlin");
  CHECK(clock.readings.size() == 4);  // kept from the preset

  REQUIRE(config.mappings[2].readings.size() == 1);
  CHECK(config.mappings[2].readings[0].metric_type.constant == "power");
}

TEST_CASE("every shipped preset parses", "[config][mapping]") {
  for (const char* name : {"seed", "tasmota", "shelly_em", "zigbee2mqtt", "plain"}) {
    INFO(name);
    const meter::Config config = parse_ok(with_mappings(std::string("  - preset: ") + name + "\n"));
    REQUIRE(config.mappings.size() == 1);
    CHECK(config.mappings[0].preset == name);
  }
}

TEST_CASE("preset errors name the preset and what is available", "[config][mapping]") {
  CHECK(error_of(with_mappings("  - preset: tasmotta\n")) ==
        "t.yaml:7:13: mappings[0].preset: unknown preset 'tasmotta'; available: dsmr_reader, "
        "dsmr_reader_topics, "
        "emonhub, esphome, opendtu, plain, seed, shelly_em, shelly_gen1, shelly_gen2, shelly_rpc, "
        "tasmota, tasmota_boot, tasmota_state, zigbee2mqtt, zigbee2mqtt_attributes (searched " +
            kPresetsDir + "; set presets_dir to change)");
  CHECK(error_of(with_mappings("  - preset: Tasmota\n")) ==
        "t.yaml:7:13: mappings[0].preset: expected a preset name (a-z, 0-9, '_'), got 'Tasmota'");
  // The same filter twice, once through a preset.
  CHECK(error_of(with_mappings("  - preset: tasmota\n  - topic: \"tele/+/SENSOR\"\n")) ==
        "t.yaml:8:12: mappings[1].topic: same filter as mappings[0] (line 7), so it would never "
        "match");
  // A preset's metric must be declared too; the hint says how to do without it.
  CHECK(error_of("gateway_id: gw\nmetrics:\n  energy: {kind: counter, unit: kWh}\npresets_dir: " +
                 kPresetsDir + "\nmappings:\n  - preset: tasmota\n") ==
        "t.yaml:6:5: mappings[0] (preset 'tasmota'): a reading has metric_type 'power', which is "
        "not declared under metrics; declare it or give this mapping its own readings");
  // An override that breaks the preset is blamed on the mapping.
  CHECK(error_of(with_mappings("  - preset: zigbee2mqtt\n    format: plain\n")) ==
        "t.yaml:7:5: mappings[0]: format plain (preset 'zigbee2mqtt') takes exactly one "
        "reading: the payload is one number");
}

TEST_CASE("presets come from presets_dir or from presets/ beside the config", "[config][mapping]") {
  TempDir dir;
  fs::create_directories(dir.path() / "presets");
  dir.write("presets/mine.yaml",
            "description: my meters\n"
            "mapping:\n"
            "  topic: \"mine/+\"\n"
            "  format: plain\n"
            "  device_id: {topic_level: 1}\n"
            "  readings: [{metric_type: energy, unit: Wh}]\n");
  dir.write("presets/broken.yaml",
            "description: broken\n"
            "mapping:\n"
            "  topic: \"b/+\"\n"
            "  format: plain\n"
            "  device_id: {topic_level: 1}\n"
            "  readings: [{metric_type: energy, unit: Wh, colour: red}]\n");
  dir.write("presets/nested.yaml", "description: nested\nmapping:\n  preset: mine\n");
  const std::string head = "gateway_id: gw\nmetrics:\n  energy: {kind: counter, unit: kWh}\n";
  auto found = meter::load_config(dir.write("a.yaml", head + "mappings:\n  - preset: mine\n"));
  if (!found) FAIL(found.error().message);
  CHECK(found->mappings[0].topic == "mine/+");

  const std::string broken_path = (dir.path() / "presets" / "broken.yaml").string();
  auto broken = meter::load_config(dir.write("b.yaml", head + "mappings:\n  - preset: broken\n"));
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().message ==
        (dir.path() / "b.yaml").string() +
            ":5:13: mappings[0].preset: preset 'broken': " + broken_path +
            ":6:46: unknown key 'colour' in mapping.readings[0]; expected one of metric_type, "
            "value, unit, arrays, required, each, scale, timestamp, device_id");
  auto nested = meter::load_config(dir.write("c.yaml", head + "mappings:\n  - preset: nested\n"));
  REQUIRE_FALSE(nested.ok());
  CHECK_THAT(nested.error().message, Catch::Contains("unknown key 'preset' in mapping;"));

  // presets_dir, relative to the config file, replaces the search.
  fs::create_directories(dir.path() / "other");
  auto elsewhere = meter::load_config(
      dir.write("d.yaml", head + "presets_dir: other\nmappings:\n  - preset: mine\n"));
  REQUIRE_FALSE(elsewhere.ok());
  CHECK_THAT(elsewhere.error().message,
             Catch::Contains("unknown preset 'mine'; available: none found (searched " +
                             (dir.path() / "other").string()));
}
