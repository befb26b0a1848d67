// Schema versions 4 and 5 (sql.hpp kMigrateV4, kMigrateV5): a populated
// version 3 buffer migrates forward keeping every row; measurements carry
// delta_from_ms to the uplink; the series of a metric with a role are local
// only (stored, never uploaded as measurements, never unsynced, prunable).
#include <catch2/catch.hpp>
#include <string>

#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using namespace meter::test;

namespace {

// kSeedConfig's metrics end before `mappings:`: put the uptime metric there.
std::string role_config() {
  std::string yaml = kSeedConfig;
  const std::string metric =
      "  uptime:\n"
      "    kind: gauge\n"
      "    unit: s\n"
      "    role: uptime_seconds\n";
  yaml.insert(yaml.find("mappings:"), metric);
  return yaml;
}

std::int64_t scalar(sqlite::Database& db, const std::string& query) {
  auto statement = db.prepare(query);
  REQUIRE(statement.step());
  return statement.column_int(0);
}

void append_readings(BufferFixture& f, const std::string& metric, const std::string& unit,
                     int count) {
  for (int i = 0; i < count; ++i) {
    f.append(seed_payload("m1", "2024-01-01T0" + std::to_string(i) + ":00:00Z", metric,
                          std::to_string(100 + i), unit));
  }
}

UplinkBatch select_all(Buffer& buffer) {
  auto batch = buffer.select_unsynced(SyncLimits{1'000'000, std::size_t{1} << 30});
  REQUIRE(batch);
  return *batch;
}

}  // namespace

TEST_CASE("a populated version 3 buffer migrates to versions 4, 5 and 6 keeping its rows",
          "[buffer][migration]") {
  TempDir dir;
  const auto path = dir.file("v3.db");
  {
    // A version 3 buffer as the release before these migrations left it.
    sqlite::Database db(path);
    db.exec(sql::kCreatePragmas);
    db.exec(sql::kSchemaV1);
    db.exec(sql::kMigrateV2);
    db.exec(sql::kMigrateV3);
    db.exec("INSERT INTO meta VALUES ('buffer_id', '6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90')");
    db.exec(
        "INSERT INTO raw_messages (received_ms, topic, payload, qos, retained, dup) "
        "VALUES (1, 't', x'00', 1, 0, 0), (2, 't', x'01', 1, 0, 0)");
    db.exec(
        "INSERT INTO series (id, device_id, metric_type, unit) VALUES (1, 'm1', 'energy', "
        "'kWh')");
    db.exec(
        "INSERT INTO measurements (series_id, timestamp_ms, value, event_id, delta, flags, "
        "revision, synced_revision, raw_seq, first_received_ms) VALUES "
        "(1, 10, '1', x'01', NULL, 1, 1, 1, 1, 1), (1, 20, '2', x'02', '1', 0, 1, 0, 2, 2)");
    db.exec("PRAGMA user_version = 3");
  }
  BufferConfig config;
  config.path = path;
  config.durability = Durability::normal;
  {
    auto opened = Buffer::open(config);
    REQUIRE(opened);
    Buffer& buffer = **opened;
    CHECK(buffer.buffer_id() == "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90");
    auto status = buffer.status();
    REQUIRE(status);
    CHECK(status->schema_version == kSchemaVersion);
    CHECK(status->raw_messages == 2);
    CHECK(status->measurements == 2);
    CHECK(status->unsynced == 1);
    // The unsynced measurement is still sent, without a delta_from (none recorded before).
    auto batch = buffer.select_unsynced(SyncLimits{});
    REQUIRE(batch);
    REQUIRE(batch->measurements.size() == 1);
    CHECK(batch->measurements[0].measurement.value == "2");
    CHECK(batch->measurements[0].measurement.delta == std::optional<std::string>("1"));
    CHECK_FALSE(batch->measurements[0].measurement.delta_from_ms.has_value());
  }
  sqlite::Database db(path);
  CHECK(scalar(db, "PRAGMA user_version") == kSchemaVersion);
  // Version 6: the series rules' state at the anchor, empty until a prune.
  CHECK(scalar(db,
               "SELECT count(*) FROM series WHERE anchor_good_ts IS NULL AND "
               "anchor_good_value IS NULL AND anchor_history IS NULL") == 1);
  // Made on open whatever the version: the operator events' partial index.
  CHECK(scalar(db, "SELECT count(*) FROM sqlite_master WHERE name = 'raw_messages_operator'") == 1);
  CHECK(scalar(db, "SELECT count(*) FROM measurements WHERE delta_from_ms IS NULL") == 2);
  CHECK(scalar(db, "SELECT count(*) FROM series WHERE local_only = 0") == 1);
  CHECK(scalar(db, "SELECT count(*) FROM local_only_metrics") == 0);
}

TEST_CASE("delta_from_ms travels from the buffer to the export and the uplink",
          "[buffer][migration]") {
  BufferFixture f;
  append_readings(f, "energy", "kWh", 2);
  f.normalize();
  {
    // What the series engine records (common/buffer/normalizer.cpp binds it).
    sqlite::Database db(f.dir().file("buffer.db"));
    db.exec("UPDATE measurements SET delta_from_ms = 1704067200000 WHERE delta IS NOT NULL");
  }
  const Measurement second = f.at("m1", "energy", "2024-01-01T01:00:00.000Z");
  CHECK(second.delta_from_ms == std::optional<std::int64_t>(1704067200000));
  CHECK_FALSE(f.at("m1", "energy", "2024-01-01T00:00:00.000Z").delta_from_ms.has_value());
  const UplinkBatch batch = select_all(f.buffer());
  REQUIRE(batch.measurements.size() == 2);
  CHECK_FALSE(batch.measurements[0].measurement.delta_from_ms.has_value());
  CHECK(batch.measurements[1].measurement.delta_from_ms ==
        std::optional<std::int64_t>(1704067200000));
}

TEST_CASE("the series of a metric with a role are stored but never uploaded or unsynced",
          "[buffer][local_only]") {
  BufferFixture f(role_config());
  append_readings(f, "energy", "kWh", 3);
  append_readings(f, "uptime", "s", 3);
  f.normalize();
  CHECK(f.measurements().size() == 6);  // stored, for the series rules

  // Only the energy measurements wait for the central; the raw messages all do.
  auto status = f.buffer().status();
  REQUIRE(status);
  CHECK(status->unsynced == 3);
  auto sync = f.buffer().sync_status();
  REQUIRE(sync);
  CHECK(sync->measurements_waiting == 3);
  const UplinkBatch batch = select_all(f.buffer());
  CHECK(batch.raw_events.size() == 6);
  REQUIRE(batch.measurements.size() == 3);
  for (const auto& m : batch.measurements) CHECK(m.measurement.metric_type == "energy");

  // Once the central confirmed everything sent, pruning treats the local
  // series like a confirmed one (keeping its newest reading, the anchor).
  REQUIRE(f.buffer().apply_ingest_response(batch, answer_all(batch, RecordOutcome::confirmed), 0));
  auto pruned = f.buffer().prune_measurements(1704067200000 + 10 * 3600000LL);
  REQUIRE(pruned);
  CHECK(pruned->measurements_deleted == 4);  // two of each series

  // renormalize rebuilds every reading from the raw log; the uptime ones
  // stay local, nothing of them to send.
  REQUIRE(f.buffer().renormalize(f.config()));
  CHECK(f.measurements().size() == 6);
  const UplinkBatch after = select_all(f.buffer());
  CHECK(f.buffer().status()->unsynced == static_cast<std::int64_t>(after.measurements.size()));
  for (const auto& m : after.measurements) CHECK(m.measurement.metric_type == "energy");
}

TEST_CASE("a metric that gains a role stops uploading, one that loses it sends its series",
          "[buffer][local_only]") {
  BufferFixture f(role_config());
  {
    // First without the role: uptime is an ordinary gauge.
    Config plain = f.config();
    plain.metrics.at("uptime").role = MetricRole::none;
    append_readings(f, "uptime", "s", 2);
    REQUIRE(f.buffer().set_local_only_metrics(plain));
    REQUIRE(f.buffer().normalize_all(plain));
    CHECK(f.buffer().status()->unsynced == 2);
  }
  // The reload with the role: waiting uptime measurements have nothing to send.
  REQUIRE(f.buffer().set_local_only_metrics(f.config()));
  CHECK(f.buffer().status()->unsynced == 0);
  CHECK(select_all(f.buffer()).measurements.empty());
  // A new series of the metric is local from its first row.
  f.append(seed_payload("m2", "2024-01-01T00:00:00Z", "uptime", "5", "s"));
  f.normalize();
  CHECK(f.measurements().size() == 3);
  CHECK(f.buffer().status()->unsynced == 0);

  // Without the role again: every uptime measurement is sent (the central
  // deduplicates what it already has).
  Config plain = f.config();
  plain.metrics.at("uptime").role = MetricRole::none;
  REQUIRE(f.buffer().set_local_only_metrics(plain));
  CHECK(f.buffer().status()->unsynced == 3);
  CHECK(select_all(f.buffer()).measurements.size() == 3);
}
