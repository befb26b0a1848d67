// `meter-agent try`, run as a user would: the real binary, a real config
// file with the shipped presets; what a message becomes, and no buffer made.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/normalize/event_id.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"

using meter::test::quote;
using meter::test::read_file;
using meter::test::Run;
using meter::test::run;
using meter::test::TempDir;
using meter::test::write_file;

namespace {

const std::string kSource = METER_SOURCE_DIR;

std::string write_config(const TempDir& dir) {
  const std::string path = dir.file("agent.yaml");
  write_file(path,
             "gateway_id: gw\n"
             "buffer: {path: " +
                 dir.file("buffer.db") +
                 "}\n"
                 "presets_dir: " +
                 kSource +
                 "/config/presets\n"
                 "metrics:\n"
                 "  energy: {kind: counter, unit: kWh}\n"
                 "  power: {kind: gauge, unit: W}\n"
                 "mappings:\n"
                 "  - preset: shelly_gen1\n"
                 "  - preset: tasmota\n");
  return path;
}

}  // namespace

TEST_CASE("try shows the mapping and each reading with its event_id, stores nothing", "[cli]") {
  TempDir dir;
  const std::string config = write_config(dir);
  auto shown = run(dir, "try --config " + quote(config) +
                            " --topic shellies/plug/relay/0/energy --payload 81010"
                            " --received-at 2024-07-01T12:00:30Z");
  INFO(shown.out << shown.err);
  CHECK(shown.exit_code == 0);
  CHECK_THAT(shown.out, Catch::Contains("mapping 2 (topic filter 'shellies/+/relay/+/energy', "
                                        "preset 'shelly_gen1')"));
  const std::string id = meter::to_hex(
      meter::compute_event_id("plug/relay/0", "2024-07-01T12:00:30.000Z", "energy", "1.350167"));
  CHECK_THAT(shown.out,
             Catch::Contains("reading 1: device_id 'plug/relay/0', metric_type 'energy', value "
                             "1.350167 kWh (sent 1350.167 Wh, rounded by scale), timestamp "
                             "2024-07-01T12:00:30.000Z, event_id " +
                             id + ", flags gateway_timestamp"));
  CHECK_FALSE(std::filesystem::exists(dir.file("buffer.db")));
  // The warning about the rounding scale comes from check-config.
  auto checked = run(dir, "check-config --config " + quote(config));
  CHECK(checked.exit_code == 0);
  CHECK_THAT(checked.err, Catch::Contains("scale divides by 60 and rounds to 3 decimals"));
}

TEST_CASE("try says why a message is ignored or fails, with the exit code", "[cli]") {
  TempDir dir;
  const std::string config = write_config(dir);
  write_file(dir.file("payload.json"),
             R"({"Time":"2024-07-01T12:00:00","DS18B20":{"Temperature":21.5}})");
  auto ignored = run(dir, "try --config " + quote(config) + " --topic tele/x/SENSOR --file " +
                              quote(dir.file("payload.json")));
  CHECK(ignored.exit_code == 0);
  CHECK_THAT(ignored.out, Catch::Contains("ignored: no reading in payload (absent or null: "
                                          "'/ENERGY/Total', '/ENERGY/Power')"));
  auto failed = run(dir, "try --config " + quote(config) + " --topic tele/x/SENSOR --payload '{'");
  CHECK(failed.exit_code == 1);
  CHECK_THAT(failed.out, Catch::Contains("decode error: payload is not JSON"));
  auto unmapped = run(dir, "try --config " + quote(config) + " --topic nowhere --payload 1");
  CHECK(unmapped.exit_code == 1);
  CHECK_THAT(unmapped.out, Catch::Contains("decode error: no mapping matches topic 'nowhere'"));
  auto wrong_unit =
      run(dir, "try --config " + quote(config) +
                   " --topic tele/x/SENSOR --payload '{\"ENERGY\":{\"Power\":\"x\"}}'");
  CHECK(wrong_unit.exit_code == 1);
  CHECK_THAT(wrong_unit.out, Catch::Contains("reading 1: error: value: "));
  auto usage = run(dir, "try --config " + quote(config) + " --topic a");
  CHECK(usage.exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(dir.file("buffer.db")));
}

TEST_CASE("status lists recent decode errors and ignored messages by topic, reason, count",
          "[cli]") {
  TempDir dir;
  const std::string config = write_config(dir);
  write_file(dir.file("lines.txt"),
             "tele/x/SENSOR\t{\"DS18B20\":{\"Temperature\":21.5}}\n"
             "tele/x/SENSOR\t{\"DS18B20\":{\"Temperature\":21.6}}\n"
             "tele/y/SENSOR\tnot json\n"
             "tele/y/SENSOR\t{\"ENERGY\":{\"Total\":1.5}}\n");
  auto imported = run(dir, "import " + quote(dir.file("lines.txt")) + " --config " + quote(config) +
                               " --received-at 2024-07-01T12:00:30Z");
  INFO(imported.err);
  REQUIRE(imported.exit_code == 0);
  auto status = run(dir, "status --config " + quote(config));
  REQUIRE(status.exit_code == 0);
  CHECK_THAT(status.out,
             Catch::Contains("ignored messages (the newest 1000, by topic and reason):\n"
                             "  2 x topic 'tele/x/SENSOR' (last seq 2): no reading in "
                             "payload (absent or null: '/ENERGY/Total', "
                             "'/ENERGY/Power')"));
  CHECK_THAT(status.out, Catch::Contains("1 x topic 'tele/y/SENSOR' (last seq 3): payload is "
                                         "not JSON"));
  auto json = run(dir, "status --json --config " + quote(config));
  REQUIRE(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::Contains("\"recent_ignored\":[{\"topic\":\"tele/x/SENSOR\","
                                       "\"reason\":\"no reading in payload (absent or null: "
                                       "'/ENERGY/Total', '/ENERGY/Power')\",\"count\":2,"
                                       "\"last_seq\":2}]"));
  CHECK_THAT(json.out, Catch::Contains("\"recent_decode_errors\":[{\"topic\":\"tele/y/SENSOR\""));
}
