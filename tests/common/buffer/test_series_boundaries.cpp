// The series rules' boundaries through the buffer: an operator's replacement
// (a raw message of the reserved topic, recorded by `meter replace`) and a
// device's restart evidence (a metric with a role) re-judge the counter
// series they concern, whatever the order they arrive in.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/model/flags.hpp"
#include "common/normalize/operator_event.hpp"
#include "common/normalize/series_scan.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using meter::test::BufferFixture;
using meter::test::seed_payload;

namespace {

const char* kConfig = R"(
gateway_id: test-gw
buffer:
  durability: normal
metrics:
  energy:
    kind: counter
    unit: kWh
    jump_threshold: 10000
    rollback_max: 2
  uptime:
    kind: gauge
    unit: s
    role: uptime_seconds
mappings:
  - topic: "meters/#"
    format: seed_json
)";

std::string energy(int hour, const std::string& value) {
  return seed_payload(
      "m1", "2024-01-01T" + std::string(hour < 10 ? "0" : "") + std::to_string(hour) + ":00:00Z",
      "energy", value, "kWh");
}

std::string uptime(int hour, const std::string& seconds) {
  return seed_payload(
      "m1", "2024-01-01T" + std::string(hour < 10 ? "0" : "") + std::to_string(hour) + ":00:00Z",
      "uptime", seconds, "s");
}

OperatorEvent replacement(bool withdrawn = false) {
  OperatorEvent event;
  event.device_id = "m1";
  event.metric_type = "energy";
  event.at_ms = 1704081600000;  // 2024-01-01T04:00:00Z
  event.old_final = *Decimal::parse("1003.5");
  event.new_initial = *Decimal::parse("0");
  event.withdrawn = withdrawn;
  return event;
}

std::string flags_at(BufferFixture& f, const std::string& timestamp) {
  return join_flags(f.at("m1", "energy", timestamp).flags, ';');
}

}  // namespace

TEST_CASE("a replacement recorded after the readings re-judges them, its withdrawal too",
          "[normalizer][boundaries]") {
  BufferFixture f(kConfig);
  for (const auto& [hour, value] : std::vector<std::pair<int, std::string>>{
           {1, "1001"}, {2, "1002"}, {3, "1003"}, {4, "0.5"}, {5, "1.5"}, {6, "2.5"}, {7, "3.5"}}) {
    f.append(energy(hour, value));
  }
  f.normalize();
  CHECK(flags_at(f, "2024-01-01T04:00:00.000Z") == "counter_reset");

  auto recorded = f.buffer().record_operator_event(replacement(), 1735689600000);
  REQUIRE(recorded);
  f.normalize();
  const auto replaced = f.at("m1", "energy", "2024-01-01T04:00:00.000Z");
  CHECK(join_flags(replaced.flags, ';') == "meter_replaced");
  CHECK(replaced.delta == std::optional<std::string>("1"));  // 1003 -> 1003.5, then 0 -> 0.5
  CHECK(replaced.revision == 2);

  REQUIRE(f.buffer().record_operator_event(replacement(true), 1735689600001));
  f.normalize();
  CHECK(flags_at(f, "2024-01-01T04:00:00.000Z") == "counter_reset");

  // renormalize replays the raw log: the same result.
  REQUIRE(f.buffer().record_operator_event(replacement(), 1735689600002));
  f.normalize();
  REQUIRE(f.buffer().renormalize(f.config()));
  CHECK(flags_at(f, "2024-01-01T04:00:00.000Z") == "meter_replaced");
}

TEST_CASE("restart evidence: a drop after the uptime fell is never a glitch",
          "[normalizer][boundaries]") {
  BufferFixture f(kConfig);
  f.append(uptime(1, "3600"));
  f.append(uptime(2, "7200"));
  f.append(energy(1, "1000"));
  f.append(energy(2, "1001"));
  f.append(energy(3, "1002"));
  f.append(energy(4, "1000.5"));  // the device restored an older total after a restart
  f.append(energy(5, "1003"));
  f.normalize();
  // Without evidence the drop came back: a glitch.
  CHECK(flags_at(f, "2024-01-01T04:00:00.000Z") == "glitch");
  // The uptime at 04:00 says the device booted at 03:30.
  f.append(uptime(4, "1800"));
  f.normalize();
  CHECK(flags_at(f, "2024-01-01T04:00:00.000Z") == "device_restarted;rollback");
  CHECK(f.at("m1", "energy", "2024-01-01T05:00:00.000Z").delta ==
        std::optional<std::string>("2.5"));
  // Restart evidence is local: the uptime series is never uploaded.
  auto batch = f.buffer().select_unsynced(SyncLimits{});
  REQUIRE(batch);
  for (const auto& m : batch->measurements) CHECK(m.measurement.metric_type == "energy");
}

TEST_CASE("restart evidence of a device bounds its components' series, in either order",
          "[normalizer][boundaries]") {
  // A Shelly publishes its uptime as `<prefix>` (sys) and its meters as
  // `<prefix>/switch:N`; a device whose id only shares a prefix is not one.
  const auto at = [](const std::string& device, int hour, const std::string& metric,
                     const std::string& value, const std::string& unit) {
    return seed_payload(
        device,
        "2024-01-01T" + std::string(hour < 10 ? "0" : "") + std::to_string(hour) + ":00:00Z",
        metric, value, unit);
  };
  for (const bool evidence_first : {true, false}) {
    BufferFixture f(kConfig);
    const auto evidence = [&] {
      f.append(at("plug", 1, "uptime", "3600", "s"));
      f.append(at("plug", 2, "uptime", "7200", "s"));
      f.append(at("plug", 4, "uptime", "1800", "s"));  // booted at 03:30
    };
    if (evidence_first) evidence();
    for (const char* device : {"plug/switch:0", "plugX/switch:0"}) {
      f.append(at(device, 1, "energy", "1000", "kWh"));
      f.append(at(device, 2, "energy", "1001", "kWh"));
      f.append(at(device, 3, "energy", "1002", "kWh"));
      f.append(at(device, 4, "energy", "1000.5", "kWh"));
      f.append(at(device, 5, "energy", "1003", "kWh"));
    }
    f.normalize();
    if (!evidence_first) {
      evidence();
      f.normalize();
    }
    INFO("evidence first: " << evidence_first);
    CHECK(join_flags(f.at("plug/switch:0", "energy", "2024-01-01T04:00:00.000Z").flags, ';') ==
          "device_restarted;rollback");
    CHECK(f.at("plug/switch:0", "energy", "2024-01-01T05:00:00.000Z").delta ==
          std::optional<std::string>("2.5"));
    CHECK(join_flags(f.at("plugX/switch:0", "energy", "2024-01-01T04:00:00.000Z").flags, ';') ==
          "glitch");
  }
}

TEST_CASE("restart_evidence_devices: the device and each id it extends with '/'",
          "[normalizer][boundaries]") {
  using V = std::vector<std::string>;
  CHECK(restart_evidence_devices("plug") == V{"plug"});
  CHECK(restart_evidence_devices("plug/switch:0") == V{"plug/switch:0", "plug"});
  CHECK(restart_evidence_devices("a/b/c") == V{"a/b/c", "a/b", "a"});
  CHECK(restart_evidence_devices("/x") == V{"/x"});
}

TEST_CASE(
    "after pruning, renormalize reproduces the stored state: the anchor keeps the rules' state",
    "[normalizer][boundaries]") {
  BufferFixture f(kConfig);
  const std::vector<std::string> values = {"1000", "1001", "0",    "1002", "1003", "1004",
                                           "1005", "1006", "1007", "1008", "1009", "1010"};
  for (std::size_t hour = 0; hour < values.size(); ++hour) {
    f.append(energy(static_cast<int>(hour), values[hour]));
  }
  f.normalize();
  CHECK(flags_at(f, "2024-01-01T02:00:00.000Z") == "glitch");
  CHECK(f.confirm_measurements([](const Measurement&) { return true; }) == 12);
  // Pruned up to 07:00, the series' newest glitch_window + 1 = 4 rows kept.
  PruneScope scope;
  scope.before_ms = 1704092400000;  // 2024-01-01T07:00:00Z
  scope.keep_newest_measurements = 4;
  auto pruned = f.buffer().prune_measurements(scope);
  REQUIRE(pruned);
  CHECK(pruned->measurements_deleted == 7);
  const auto before = f.measurements();
  REQUIRE(before.size() == 5);
  CHECK(before.front().delta == std::optional<std::string>("1"));  // 07:00, from 06:00 (pruned)

  REQUIRE(f.buffer().renormalize(f.config()));
  const auto after = f.measurements();
  // The raw messages of the pruned readings are still in the raw log: they
  // come back beyond retention; every kept row is as it was, no new revision.
  std::size_t kept = 0;
  for (const auto& m : after) {
    if (has_flag(m.flags, Flag::beyond_retention)) continue;
    REQUIRE(kept < before.size());
    CHECK(m.timestamp_ms == before[kept].timestamp_ms);
    CHECK(m.delta == before[kept].delta);
    CHECK(m.flags == before[kept].flags);
    CHECK(m.revision == before[kept].revision);
    ++kept;
  }
  CHECK(kept == before.size());
  // And a new reading still gets its delta from the kept tail.
  f.append(energy(12, "1011.5"));
  f.normalize();
  CHECK(f.at("m1", "energy", "2024-01-01T12:00:00.000Z").delta ==
        std::optional<std::string>("1.5"));
}
