// The offline commands, run as a user would: the real meter-agent binary on
// real files.
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>

#include "common/buffer/buffer.hpp"
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

std::string config_args(const TempDir& dir) {
  return "--config " + quote(kSource + "/config/agent.example.yaml") + " --buffer " +
         quote(dir.file("buffer.db"));
}

}  // namespace

TEST_CASE("import then export the shipped sample gives the hand-computed measurements", "[cli]") {
  TempDir dir;
  auto imported = run(dir, "import " + quote(kSource + "/config/samples/seed-readings.jsonl") +
                               " " + config_args(dir));
  INFO(imported.err);
  REQUIRE(imported.exit_code == 0);
  CHECK_THAT(imported.err, Catch::Contains("imported 13 lines"));
  CHECK_THAT(imported.err, Catch::Contains("10 new measurements, 1 duplicates, 1 revised, "
                                           "2 decode errors"));

  auto exported = run(dir, "export " + config_args(dir));
  REQUIRE(exported.exit_code == 0);
  CHECK(exported.out == read_file(kSource + "/tests/data/seed-readings.expected.jsonl"));

  // Importing the same file again changes no measurement: every reading is a duplicate.
  auto again = run(dir, "import " + quote(kSource + "/config/samples/seed-readings.jsonl") + " " +
                            config_args(dir));
  REQUIRE(again.exit_code == 0);
  CHECK_THAT(again.err, Catch::Contains("0 new measurements, 11 duplicates, 0 revised"));
  CHECK(run(dir, "export " + config_args(dir)).out == exported.out);
}

TEST_CASE("export as CSV: flags joined with semicolons, a null delta empty, fields quoted",
          "[cli]") {
  TempDir dir;
  const std::string input =
      "{\"device_id\":\"a,b\",\"timestamp\":\"2024-01-01T00:00:00Z\",\"metric_type\":\"energy\","
      "\"value\":5,\"unit\":\"kWh\"}\n"
      "{\"device_id\":\"a,b\",\"timestamp\":\"2024-01-01T01:00:00Z\",\"metric_type\":\"energy\","
      "\"value\":2,\"unit\":\"kWh\"}\n"
      "{\"device_id\":\"a,b\",\"timestamp\":\"2024-01-01T00:30:00Z\",\"metric_type\":\"energy\","
      "\"value\":7,\"unit\":\"kWh\"}\n";
  REQUIRE(run(dir, "import - " + config_args(dir), input).exit_code == 0);
  auto exported = run(
      dir, "export --format csv --output " + quote(dir.file("out.csv")) + " " + config_args(dir));
  REQUIRE(exported.exit_code == 0);
  std::istringstream csv(read_file(dir.file("out.csv")));
  std::string header, first, second, third;
  std::getline(csv, header);
  std::getline(csv, first);
  std::getline(csv, second);
  std::getline(csv, third);
  CHECK(header == "event_id,device_id,metric_type,timestamp,value,unit,delta,flags,revision");
  CHECK_THAT(first,
             Catch::EndsWith(",\"a,b\",energy,2024-01-01T00:00:00.000Z,5,kWh,,first_reading,1"));
  CHECK_THAT(second,
             Catch::EndsWith(",\"a,b\",energy,2024-01-01T00:30:00.000Z,7,kWh,2,out_of_order,1"));
  CHECK_THAT(
      third,
      Catch::EndsWith(
          ",\"a,b\",energy,2024-01-01T01:00:00.000Z,2,kWh,,counter_reset,1"));  // still a reset:
                                                                                // unchanged
}

TEST_CASE("status shows counts by state and flag and the latest decode errors", "[cli]") {
  TempDir dir;
  REQUIRE(run(dir, "import " + quote(kSource + "/config/samples/seed-readings.jsonl") + " " +
                       config_args(dir))
              .exit_code == 0);
  auto status = run(dir, "status " + config_args(dir));
  REQUIRE(status.exit_code == 0);
  CHECK_THAT(status.out, Catch::Contains("raw messages    13"));
  CHECK_THAT(status.out, Catch::Contains("measurements    10 (10 unsynced)"));
  CHECK_THAT(status.out, Catch::Contains("first_reading=3"));
  CHECK_THAT(status.out, Catch::Contains("kVAh"));
  CHECK_THAT(status.out, Catch::Contains("disk budget     none (buffer.max_size_mib)"));
  auto json = run(dir, "status --json " + config_args(dir));
  REQUIRE(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::Contains("\"over_budget\":false"));
  CHECK_THAT(json.out, Catch::Contains("\"decode_errors\":2"));
  CHECK_THAT(json.out, Catch::Contains("\"duplicates\":1"));
  CHECK_THAT(json.out, Catch::Contains("\"counter_reset\":1"));
}

TEST_CASE("status shows the disk budget as the daemon counts it", "[cli]") {
  TempDir dir;
  write_file(dir.file("agent.yaml"),
             "gateway_id: gw\nbuffer:\n  max_size_mib: 16\nmetrics:\n  energy: {kind: counter, "
             "unit: kWh}\n  power: {kind: gauge, unit: kW}\nmappings:\n  - topic: \"meters/#\"\n");
  const auto args =
      "--config " + quote(dir.file("agent.yaml")) + " --buffer " + quote(dir.file("buffer.db"));
  REQUIRE(run(dir, "import " + quote(kSource + "/config/samples/seed-readings.jsonl") + " " + args)
              .exit_code == 0);
  auto status = run(dir, "status " + args);
  REQUIRE(status.exit_code == 0);
  CHECK_THAT(status.out, Catch::Contains(" of 16777216 bytes used (database pages in use + WAL + "
                                         "inbox)"));
  CHECK_THAT(status.out, !Catch::Contains("OVER BUDGET"));
  auto json = run(dir, "status --json " + args);
  CHECK_THAT(json.out, Catch::Contains("\"disk_budget_bytes\":16777216"));
  CHECK_THAT(json.out, Catch::Contains("\"over_budget\":false"));
}

TEST_CASE("renormalize from the command line is idempotent", "[cli]") {
  TempDir dir;
  REQUIRE(run(dir, "import " + quote(kSource + "/config/samples/seed-readings.jsonl") + " " +
                       config_args(dir))
              .exit_code == 0);
  const auto before = run(dir, "export " + config_args(dir)).out;
  auto renormalized = run(dir, "renormalize " + config_args(dir));
  REQUIRE(renormalized.exit_code == 0);
  CHECK_THAT(renormalized.out, Catch::Contains("renormalized 13 raw messages"));
  CHECK(run(dir, "export " + config_args(dir)).out == before);
}

TEST_CASE("bad config fails with file:line:column and the key", "[cli]") {
  TempDir dir;
  write_file(dir.file("bad.yaml"),
             "gateway_id: gw\nmetrics:\n  energy:\n    kind: countr\n    unit: kWh\n"
             "mappings:\n  - topic: \"meters/#\"\n");
  auto result = run(dir, "check-config --config " + quote(dir.file("bad.yaml")));
  CHECK(result.exit_code == 3);
  CHECK_THAT(result.err, Catch::Contains(dir.file("bad.yaml") + ":4:11:"));
  CHECK_THAT(result.err, Catch::Contains("kind"));

  auto good = run(dir, "check-config --config " + quote(kSource + "/config/agent.example.yaml"));
  CHECK(good.exit_code == 0);
  CHECK_THAT(good.out, Catch::Contains("OK"));
}

TEST_CASE("usage errors exit 2 and say what is wrong", "[cli]") {
  TempDir dir;
  auto unknown = run(dir, "frobnicate");
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("unknown command 'frobnicate'"));
  auto missing = run(dir, "import " + config_args(dir));
  CHECK(missing.exit_code == 2);
  auto format = run(dir, "export --format xml " + config_args(dir));
  CHECK(format.exit_code == 2);
  CHECK_THAT(format.err, Catch::Contains("xml"));
}

TEST_CASE("a buffer from a newer meter-agent is refused, not touched", "[cli]") {
  TempDir dir;
  REQUIRE(run(dir, "status " + config_args(dir)).exit_code == 0);  // creates it
  REQUIRE(std::system(("sqlite3 " + quote(dir.file("buffer.db")) + " 'PRAGMA user_version = 99'")
                          .c_str()) == 0);
  auto refused = run(dir, "status " + config_args(dir));
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("schema version 99 is newer"));
}

TEST_CASE("meter replace records an operator event once, meter list shows it", "[cli]") {
  TempDir dir;
  const std::string replace = "meter replace m1 --metric energy --at 2024-03-01T13:00:00+01:00 ";
  auto recorded = run(dir, replace + "--old-final 12345.60 --new-initial 0.5 " + config_args(dir));
  INFO(recorded.err);
  REQUIRE(recorded.exit_code == 0);
  CHECK(recorded.out ==
        "recorded meter replacement of m1 energy at 2024-03-01T12:00:00.000Z (seq 1)\n");
  // Repeated (the same values, written differently): nothing written.
  auto again = run(dir, replace + "--old-final 12345.6 --new-initial 0.50 " + config_args(dir));
  REQUIRE(again.exit_code == 0);
  CHECK(again.out ==
        "meter replacement of m1 energy at 2024-03-01T12:00:00.000Z: already recorded (seq 1)\n");
  // The same instant given as local time in a zone is the same event.
  auto zoned = run(dir,
                   "meter replace m1 --metric energy --at 2024-03-01T13:00:00 --zone Europe/Berlin "
                   "--old-final 12345.6 --new-initial 0.5 " +
                       config_args(dir));
  CHECK(zoned.out.ends_with("already recorded (seq 1)\n"));

  auto listed = run(dir, "meter list " + config_args(dir));
  REQUIRE(listed.exit_code == 0);
  CHECK_THAT(listed.out, Catch::StartsWith("m1 energy replaced at 2024-03-01T12:00:00.000Z "
                                           "old_final 12345.6 new_initial 0.5 (seq 1, recorded "));
  CHECK(run(dir, "meter list m2 " + config_args(dir)).out == "no meter replacements recorded\n");

  // Withdrawn: a new record; the list says so; nothing is deleted.
  auto withdrawn = run(dir, replace + "--withdraw " + config_args(dir));
  REQUIRE(withdrawn.exit_code == 0);
  CHECK(withdrawn.out ==
        "recorded withdrawal of the meter replacement of m1 energy at "
        "2024-03-01T12:00:00.000Z (seq 2)\n");
  CHECK_THAT(run(dir, "meter list m1 " + config_args(dir)).out,
             Catch::Contains(" WITHDRAWN (seq 2,"));
}

TEST_CASE("meter replace refuses what it cannot record exactly", "[cli]") {
  TempDir dir;
  const auto replace = [&](const std::string& arguments) {
    return run(dir, "meter replace " + arguments + " " + config_args(dir));
  };
  const auto refused = [&](const std::string& arguments, int code, const std::string& says) {
    auto result = replace(arguments);
    INFO(arguments);
    CHECK(result.exit_code == code);
    CHECK_THAT(result.err, Catch::Contains(says));
    CHECK(result.out.empty());
  };
  refused("m1 --at 2024-03-01T12:00:00Z", 2, "needs DEVICE, --metric and --at");
  refused("m1 --metric power --at 2024-03-01T12:00:00Z", 2, "--metric 'power' is not a counter in");
  refused("m1 --metric water --at 2024-03-01T12:00:00Z", 2, "--metric 'water' is not declared in");
  refused("m1 --metric energy --at 2024-03-01T12:00:00", 2, "--at: ");
  refused("m1 --metric energy --at 2024-03-31T02:30:00 --zone Europe/Berlin", 2,
          "is not one instant in that zone");
  refused("m1 --metric energy --at 2024-03-01T12:00:00Z --new-initial 1,5", 2, "--new-initial: ");
  refused("'' --metric energy --at 2024-03-01T12:00:00Z", 2, "DEVICE is empty");
  refused("m1 --metric energy --at 2024-03-01T12:00:00Z --withdraw", 1, "nothing to withdraw");
  auto meter = run(dir, "meter " + config_args(dir));
  CHECK(meter.exit_code == 2);
  // Nothing was written by any of them.
  CHECK(run(dir, "meter list " + config_args(dir)).out == "no meter replacements recorded\n");
}

TEST_CASE("meter replace works while a daemon-like writer appends to the raw log", "[cli]") {
  TempDir dir;
  REQUIRE(run(dir, "meter list " + config_args(dir)).exit_code == 0);  // creates the buffer
  meter::BufferConfig buffer;
  buffer.path = dir.file("buffer.db");
  constexpr int kAppends = 2000;
  // Commits message by message on a Buffer of its own, in write transactions
  // as the daemon's are (they take turns with a waiting command: Database::
  // begin_write); the commands below run while it does (each waits for the
  // lock). An autocommit appender, which takes no turns, starved a command
  // past SQLite's 10 s busy timeout under emulation (the arm64 VM).
  auto writer = std::async(std::launch::async, [buffer] {
    auto daemon = meter::Buffer::open(buffer);
    if (!daemon) return false;
    for (int i = 0; i < kAppends; ++i) {
      meter::RawMessage message;
      message.topic = "meters/m1";
      message.payload = "{}";
      message.received_ms = i;
      if (!(*daemon)->append_raw_batch({message})) return false;
    }
    return true;
  });
  constexpr int kEvents = 5;
  for (int i = 0; i < kEvents; ++i) {
    const std::string at = "2024-03-0" + std::to_string(i + 1) + "T12:00:00Z";
    auto recorded =
        run(dir, "meter replace m1 --metric energy --at " + at + " " + config_args(dir));
    INFO(recorded.err);
    CHECK(recorded.exit_code == 0);
    CHECK_THAT(recorded.out, Catch::StartsWith("recorded meter replacement of m1 energy"));
    auto repeated =
        run(dir, "meter replace m1 --metric energy --at " + at + " " + config_args(dir));
    CHECK_THAT(repeated.out, Catch::Contains("already recorded"));
  }
  REQUIRE(writer.get());
  // Every row of both writers, each with its own seq, nothing lost or doubled.
  auto count = [&](const std::string& where) {
    const auto result = std::system(
        ("sqlite3 " + quote(dir.file("buffer.db")) + " " +
         quote("SELECT count(*), count(DISTINCT seq), max(seq) FROM raw_messages " + where) + " >" +
         quote(dir.file("count")))
            .c_str());
    REQUIRE(result == 0);
    return read_file(dir.file("count"));
  };
  CHECK(count("") == std::to_string(kAppends + kEvents) + "|" + std::to_string(kAppends + kEvents) +
                         "|" + std::to_string(kAppends + kEvents) + "\n");
  CHECK(count("WHERE topic = '$meter-agent/operator'")
            .starts_with(std::to_string(kEvents) + "|" + std::to_string(kEvents) + "|"));
  auto listed = run(dir, "meter list m1 " + config_args(dir));
  CHECK(std::count(listed.out.begin(), listed.out.end(), '\n') == kEvents);
}
