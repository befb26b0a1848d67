// The counts a buffer status shows are kept by triggers (schema version 3,
// sql.hpp kMigrateV3) instead of scanned: after every kind of change —
// new readings, out-of-order revisions, duplicates, confirmations, pruning,
// renormalize — and after migrating a version 1 database that already holds
// data, they must equal what a full scan counts.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>

#include "common/buffer/sql.hpp"
#include "common/model/flags.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using namespace meter::test;

namespace {

struct Scanned {
  std::int64_t raw = 0;
  std::int64_t measurements = 0;
  std::int64_t unsynced = 0;
  std::map<std::string, std::int64_t> flags;
};

std::int64_t scalar(sqlite3* db, const char* sql) {
  sqlite3_stmt* statement = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
  const auto value = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  return value;
}

Scanned scan(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  Scanned scanned;
  scanned.raw = scalar(db, "SELECT count(*) FROM raw_messages");
  scanned.measurements = scalar(db, "SELECT count(*) FROM measurements");
  scanned.unsynced =
      scalar(db, "SELECT count(*) FROM measurements WHERE synced_revision < revision");
  sqlite3_stmt* statement = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT flags, count(*) FROM measurements GROUP BY flags", -1,
                             &statement, nullptr) == SQLITE_OK);
  while (sqlite3_step(statement) == SQLITE_ROW) {
    const auto flags = static_cast<FlagSet>(sqlite3_column_int64(statement, 0));
    for (auto name : flag_names(flags)) {
      scanned.flags[std::string(name)] += sqlite3_column_int64(statement, 1);
    }
  }
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return scanned;
}

void require_counts_match(BufferFixture& fixture) {
  auto status = fixture.buffer().status();
  REQUIRE(status);
  const auto scanned = scan(fixture.config().buffer.path);
  CHECK(status->raw_messages == scanned.raw);
  CHECK(status->measurements == scanned.measurements);
  CHECK(status->unsynced == scanned.unsynced);
  CHECK(status->flag_counts == scanned.flags);
}

std::string ts(int minute) {
  char text[32];
  std::snprintf(text, sizeof text, "2024-06-01T10:%02d:00Z", minute);
  return text;
}

}  // namespace

TEST_CASE("buffer status: trigger-kept counts equal a full scan after every change",
          "[buffer][status]") {
  BufferFixture fixture;
  require_counts_match(fixture);

  // In order, then a reset and a jump (flags), a duplicate, late arrivals
  // that revise their successors.
  for (int minute : {0, 10, 20, 30, 40}) {
    fixture.append(seed_payload("m1", ts(minute), "energy", std::to_string(100 + minute), "kWh"));
  }
  fixture.append(seed_payload("m1", ts(50), "energy", "5", "kWh"));      // counter reset
  fixture.append(seed_payload("m1", ts(55), "energy", "99999", "kWh"));  // suspicious jump
  fixture.append(seed_payload("m1", ts(10), "energy", "110", "kWh"));    // duplicate
  fixture.append(seed_payload("m2", ts(5), "power", "1.5", "kW"));
  fixture.append("not json at all");  // decode error
  fixture.normalize();
  require_counts_match(fixture);

  fixture.append(seed_payload("m1", ts(15), "energy", "112", "kWh"));  // out of order: revises 20
  fixture.append(seed_payload("m1", ts(5), "energy", "104", "kWh"));
  fixture.normalize();
  require_counts_match(fixture);

  // The central side confirms some; a later revision makes one unsynced again.
  REQUIRE(fixture.confirm_measurements([](const Measurement& m) { return m.device_id == "m1"; }) >
          0);
  require_counts_match(fixture);
  fixture.append(seed_payload("m1", ts(25), "energy", "126", "kWh"));  // revises the 30 reading
  fixture.normalize();
  require_counts_match(fixture);

  // Pruning deletes confirmed measurements.
  fixture.confirm_measurements([](const Measurement&) { return true; });
  auto pruned = fixture.buffer().prune_measurements(1717239600000);  // 2024-06-01T11:00:00Z
  REQUIRE(pruned);
  CHECK(pruned->measurements_deleted > 0);
  require_counts_match(fixture);

  // Renormalize rebuilds every row.
  auto renormalized = fixture.buffer().renormalize(fixture.config());
  REQUIRE(renormalized);
  require_counts_match(fixture);

  // Another connection sees the same.
  fixture.reopen();
  require_counts_match(fixture);
}

TEST_CASE("buffer status: a version 1 database with data migrates with its counts",
          "[buffer][status]") {
  TempDir dir;
  const auto path = dir.file("buffer.db");
  {
    // A version 1 buffer as the first release wrote it, with rows.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const std::string setup = std::string(sql::kCreatePragmas) + sql::kSchemaV1 +
                              "INSERT INTO meta VALUES ('buffer_id', "
                              "'0b3f4c9e-8d1a-4f2b-9c3d-1e2f3a4b5c6d');"
                              "INSERT INTO raw_messages (received_ms, topic, payload, qos, "
                              "retained, dup) VALUES (1, 't', x'00', 1, 0, 0), "
                              "(2, 't', x'01', 1, 0, 0), (3, 't', x'02', 1, 0, 0);"
                              "INSERT INTO series VALUES (1, 'm1', 'energy', 'kWh', NULL, NULL);"
                              "INSERT INTO measurements (series_id, timestamp_ms, value, event_id, "
                              "delta, flags, revision, synced_revision, raw_seq, "
                              "first_received_ms) VALUES "
                              "(1, 10, '1', x'01', NULL, 1, 1, 0, 1, 1), "
                              "(1, 20, '2', x'02', '1', 0, 2, 2, 2, 2), "
                              "(1, 30, '3', x'03', '1', 6, 2, 1, 3, 3);"
                              "PRAGMA user_version = 1;";
    char* error = nullptr;
    REQUIRE(sqlite3_exec(db, setup.c_str(), nullptr, nullptr, &error) == SQLITE_OK);
    sqlite3_close(db);
  }
  BufferConfig config;
  config.path = path;
  config.durability = Durability::normal;
  auto opened = Buffer::open(config);
  REQUIRE(opened);
  auto status = (*opened)->status();
  REQUIRE(status);
  CHECK(status->schema_version == kSchemaVersion);
  const auto scanned = scan(path);
  CHECK(scanned.raw == 3);
  CHECK(status->raw_messages == 3);
  CHECK(status->measurements == 3);
  CHECK(status->unsynced == 2);
  CHECK(status->flag_counts == scanned.flags);
  CHECK(status->oldest_unsynced_received_ms == std::optional<std::int64_t>(1));
}

TEST_CASE("buffer: the disk budget counts the WAL file until a truncating checkpoint empties it",
          "[buffer][status]") {
  BufferFixture fixture;
  for (int minute = 0; minute < 2000; ++minute) {
    fixture.append(seed_payload("m1", format_timestamp(1717236000000LL + minute * 60000LL),
                                "energy", std::to_string(100 + minute), "kWh"));
  }
  fixture.normalize();
  const auto wal = fixture.dir().file("buffer.db") + "-wal";
  const auto wal_bytes = static_cast<std::int64_t>(std::filesystem::file_size(wal));
  REQUIRE(wal_bytes > 0);
  auto before = fixture.buffer().used_bytes();
  REQUIRE(before);
  // A plain checkpoint empties the WAL for reuse but keeps the file's size.
  REQUIRE(fixture.buffer().checkpoint());
  CHECK(static_cast<std::int64_t>(std::filesystem::file_size(wal)) == wal_bytes);
  auto truncated = fixture.buffer().checkpoint_truncate();
  REQUIRE(truncated);
  CHECK(*truncated);
  CHECK(std::filesystem::file_size(wal) == 0);
  auto after = fixture.buffer().used_bytes();
  REQUIRE(after);
  CHECK(*after == *before - wal_bytes);
  CHECK(fixture.buffer().status()->measurements == 2000);
}
