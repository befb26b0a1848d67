// The buffer's sync state (common/buffer/sync.cpp): what is selected for
// upload, what a response confirms or quarantines, requeue, pruning.
#include <catch2/catch.hpp>
#include <set>

#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/normalize/decimal.hpp"
#include "common/uplink/wire_format.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using namespace meter::test;

namespace {

std::string reading(const std::string& ts, const std::string& value,
                    const std::string& device = "m1") {
  return seed_payload(device, ts, "energy", value, "kWh");
}

UplinkBatch select(Buffer& buffer, SyncLimits limits = {}) {
  auto batch = buffer.select_unsynced(limits);
  REQUIRE(batch);
  return std::move(*batch);
}

// `count` (at most 10) m1 readings an hour apart from 2024-01-01T00:00Z: 1, 2, ...
void append_hourly(BufferFixture& f, int count) {
  for (int i = 0; i < count; ++i) {
    f.append(reading("2024-01-01T0" + std::to_string(i) + ":00:00Z", std::to_string(i + 1)));
  }
}

SyncStatus sync_status(Buffer& buffer) {
  auto status = buffer.sync_status();
  REQUIRE(status);
  return *status;
}

}  // namespace

TEST_CASE("an old buffer migrates to the sync schema and keeps its rows", "[buffer_sync]") {
  TempDir dir;
  const auto path = dir.file("v1.db");
  {
    sqlite::Database db(path);
    db.exec(sql::kCreatePragmas);
    db.exec(sql::kSchemaV1);
    db.exec("INSERT INTO meta VALUES ('buffer_id', '6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90')");
    db.exec(
        "INSERT INTO raw_messages (received_ms, topic, payload, qos, retained, dup) "
        "VALUES (1, 't', x'00', 1, 0, 0)");
    db.exec("PRAGMA user_version = 1");
  }
  BufferConfig config;
  config.path = path;
  auto buffer = Buffer::open(config);
  REQUIRE(buffer);
  auto status = (*buffer)->sync_status();
  REQUIRE(status);
  CHECK(status->raw_synced_through_seq == 0);
  CHECK((*buffer)->status()->raw_messages == 1);
  CHECK((*buffer)->buffer_id() == "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90");
}

TEST_CASE("only normalized raw messages and unsynced revisions are selected, within the limits",
          "[buffer_sync]") {
  BufferFixture f;
  append_hourly(f, 10);
  CHECK(select(f.buffer()).empty());  // nothing normalized yet
  f.normalize();
  auto batch = select(f.buffer(), SyncLimits{4, 1 << 20});
  CHECK(batch.raw_events.size() == 4);
  CHECK(batch.measurements.size() == 4);
  CHECK(batch.raw_events.front().seq == 1);
  CHECK(batch.measurements.front().measurement.revision == 1);
  // A byte bound smaller than one record still lets one through.
  auto tiny = select(f.buffer(), SyncLimits{100, 10});
  CHECK(tiny.raw_events.size() == 1);
  CHECK(tiny.measurements.size() == 1);
  auto all = select(f.buffer());
  CHECK(all.raw_events.size() == 10);
  CHECK(all.measurements.size() == 10);
  CHECK(sync_status(f.buffer()).waiting() == 20);
}

TEST_CASE(
    "a batch selected behind one in flight holds none of its records, and a limit says "
    "more is waiting",
    "[buffer_sync]") {
  BufferFixture f;
  append_hourly(f, 10);
  f.normalize();
  auto first = select(f.buffer(), SyncLimits{4, 1 << 20});
  CHECK(first.limited);
  CHECK(first.raw_run_from == 0);
  CHECK(first.through.raw_seq == 4);
  CHECK(first.through.measurement_id == first.measurements.back().row_id);
  auto second = f.buffer().select_unsynced(SyncLimits{4, 1 << 20}, first.through);
  REQUIRE(second);
  CHECK(second->raw_run_from == 4);
  REQUIRE(second->raw_events.size() == 4);
  CHECK(second->raw_events.front().seq == 5);
  REQUIRE(second->measurements.size() == 4);
  CHECK(second->measurements.front().row_id > first.measurements.back().row_id);
  auto third = f.buffer().select_unsynced(SyncLimits{4, 1 << 20}, second->through);
  REQUIRE(third);
  CHECK(third->raw_events.size() == 2);
  CHECK(third->measurements.size() == 2);
  CHECK_FALSE(third->limited);  // exactly what was left: nothing more
  auto none = f.buffer().select_unsynced(SyncLimits{4, 1 << 20}, third->through);
  REQUIRE(none);
  CHECK(none->empty());
  // Exactly max_records left is not "limited" either.
  CHECK_FALSE(select(f.buffer(), SyncLimits{10, 1 << 20}).limited);
}

TEST_CASE(
    "answers applied out of order, or behind a failed batch, never move the raw watermark "
    "over an unconfirmed raw event",
    "[buffer_sync]") {
  BufferFixture f;
  append_hourly(f, 6);
  f.normalize();
  auto first = select(f.buffer(), SyncLimits{3, 1 << 20});
  auto selected = f.buffer().select_unsynced(SyncLimits{3, 1 << 20}, first.through);
  REQUIRE(selected);
  auto second = std::move(*selected);
  SECTION("the second answered first: its measurements count, the watermark waits") {
    auto applied =
        f.buffer().apply_ingest_response(second, answer_all(second, RecordOutcome::confirmed), 1);
    REQUIRE(applied);
    CHECK(applied->measurements_confirmed == 3);
    CHECK(sync_status(f.buffer()).raw_synced_through_seq == 0);
    REQUIRE(
        f.buffer().apply_ingest_response(first, answer_all(first, RecordOutcome::confirmed), 2));
    CHECK(sync_status(f.buffer()).raw_synced_through_seq == 3);
    // seq 4-6 are sent again (the central answers duplicate); nothing is skipped.
    auto again = select(f.buffer());
    REQUIRE(again.raw_events.size() == 3);
    CHECK(again.raw_events.front().seq == 4);
    CHECK(again.measurements.empty());
  }
  SECTION("the first failed (no answer): the second cannot move the watermark past it") {
    REQUIRE(
        f.buffer().apply_ingest_response(second, answer_all(second, RecordOutcome::confirmed), 1));
    CHECK(sync_status(f.buffer()).raw_synced_through_seq == 0);
    auto again = select(f.buffer());
    CHECK(again.raw_events.size() == 6);
    CHECK(again.measurements.size() == 3);  // only the first batch's
  }
  SECTION("in order, both move it") {
    REQUIRE(
        f.buffer().apply_ingest_response(first, answer_all(first, RecordOutcome::confirmed), 1));
    REQUIRE(
        f.buffer().apply_ingest_response(second, answer_all(second, RecordOutcome::confirmed), 2));
    CHECK(sync_status(f.buffer()).raw_synced_through_seq == 6);
    CHECK(select(f.buffer()).empty());
  }
}

TEST_CASE("a response marks exactly the records and revisions it confirms", "[buffer_sync]") {
  BufferFixture f;
  f.append(reading("2024-01-01T01:00:00Z", "1"));
  f.append(reading("2024-01-01T03:00:00Z", "3"));
  f.normalize();
  auto batch = select(f.buffer());
  REQUIRE(batch.raw_events.size() == 2);
  REQUIRE(batch.measurements.size() == 2);
  // Raw 1 confirmed, raw 2 missing; measurement 0 confirmed, 1 missing.
  IngestResponse response = answer_all(batch, RecordOutcome::missing);
  response.raw_events[0].outcome = RecordOutcome::confirmed;
  response.measurements[0].outcome = RecordOutcome::confirmed;
  // Meanwhile an out-of-order reading raises the revision of the later one.
  f.append(reading("2024-01-01T02:00:00Z", "2"));
  f.normalize();
  auto applied = f.buffer().apply_ingest_response(batch, response, 1000);
  REQUIRE(applied);
  CHECK(applied->raw_confirmed == 1);
  CHECK(applied->measurements_confirmed == 1);
  CHECK(applied->missing == 2);
  auto status = sync_status(f.buffer());
  CHECK(status.raw_synced_through_seq == 1);
  CHECK(status.raw_waiting == 2);           // seq 2 (missing) and 3 (new)
  CHECK(status.measurements_waiting == 2);  // 03:00 (missing and revised) and 02:00 (new)
  auto next = select(f.buffer());
  CHECK(next.raw_events.front().seq == 2);
  bool revised_sent = false;
  for (const auto& m : next.measurements) {
    if (m.measurement.value == "3") {
      CHECK(m.measurement.revision == 2);  // the revision after the out-of-order arrival
      revised_sent = true;
    }
  }
  CHECK(revised_sent);
  // Confirming an older revision than the row has leaves it unsynced.
  UplinkBatch stale = batch;  // revision 1 of "3"
  IngestResponse stale_ok = answer_all(stale, RecordOutcome::confirmed);
  REQUIRE(f.buffer().apply_ingest_response(stale, stale_ok, 2000));
  CHECK(f.at("m1", "energy", "2024-01-01T03:00:00.000Z").synced_revision == 1);
  CHECK(f.at("m1", "energy", "2024-01-01T03:00:00.000Z").revision == 2);
  REQUIRE(f.buffer().apply_ingest_response(next, answer_all(next, RecordOutcome::confirmed), 3000));
  CHECK(sync_status(f.buffer()).waiting() == 0);
  CHECK(select(f.buffer()).empty());
}

TEST_CASE(
    "rejected records are quarantined with their reason, never block the rest, and requeue "
    "releases them",
    "[buffer_sync]") {
  BufferFixture f;
  for (int i = 1; i <= 3; ++i) {
    f.append(reading("2024-01-01T0" + std::to_string(i) + ":00:00Z", std::to_string(i)));
  }
  f.normalize();
  auto batch = select(f.buffer());
  IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
  response.raw_events[1] = RecordResult{RecordOutcome::rejected, "too_long", "topic too long"};
  response.measurements[2] = RecordResult{RecordOutcome::rejected, "wrong_unit", "kWh only"};
  auto applied = f.buffer().apply_ingest_response(batch, response, 5000);
  REQUIRE(applied);
  CHECK(applied->raw_rejected == 1);
  CHECK(applied->measurements_rejected == 1);
  auto status = sync_status(f.buffer());
  CHECK(status.raw_synced_through_seq == 3);  // the rejected one does not hold the rest back
  CHECK(status.waiting() == 0);
  CHECK(status.quarantined == 2);
  CHECK(status.quarantined_by_reason["too_long"] == 1);
  CHECK(status.quarantined_by_reason["wrong_unit"] == 1);
  CHECK(select(f.buffer()).empty());  // never retried blindly
  auto latest = f.buffer().latest_rejections(10);
  REQUIRE(latest);
  REQUIRE(latest->size() == 2);
  CHECK(latest->at(0).rejected_ms == 5000);

  // requeue by reason releases only those.
  auto released = f.buffer().requeue(std::string("wrong_unit"));
  REQUIRE(released);
  CHECK(*released == 1);
  auto again = select(f.buffer());
  CHECK(again.raw_events.empty());
  REQUIRE(again.measurements.size() == 1);
  CHECK(again.measurements[0].measurement.value == "3");
  CHECK(sync_status(f.buffer()).requeued == 1);
  REQUIRE(
      f.buffer().apply_ingest_response(again, answer_all(again, RecordOutcome::confirmed), 6000));
  CHECK(sync_status(f.buffer()).quarantined == 1);
  CHECK(sync_status(f.buffer()).requeued == 0);

  // requeue of everything releases the raw one; rejected again, it is quarantined again.
  CHECK(*f.buffer().requeue(std::nullopt) == 1);
  auto raw_again = select(f.buffer());
  REQUIRE(raw_again.raw_events.size() == 1);
  CHECK(raw_again.raw_events[0].seq == 2);
  CHECK(sync_status(f.buffer()).raw_waiting == 1);
  REQUIRE(f.buffer().apply_ingest_response(raw_again,
                                           answer_all(raw_again, RecordOutcome::rejected), 7000));
  CHECK(sync_status(f.buffer()).quarantined == 1);
  CHECK(select(f.buffer()).empty());
}

TEST_CASE(
    "an answer for a row that is no longer the one sent (renumbered) or for an older revision "
    "neither clears nor records a rejection",
    "[buffer_sync]") {
  BufferFixture f;
  f.append(reading("2024-01-01T01:00:00Z", "1"));
  f.append(reading("2024-01-01T02:00:00Z", "2"));
  f.normalize();
  const auto batch = select(f.buffer());
  REQUIRE(batch.measurements.size() == 2);
  IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
  response.measurements[0] = RecordResult{RecordOutcome::rejected, "wrong_unit", "kWh only"};
  REQUIRE(f.buffer().apply_ingest_response(batch, response, 5000));
  REQUIRE(sync_status(f.buffer()).quarantined == 1);

  // A late answer naming row 0's id with another row's event_id (as after a
  // renumbering): confirming it must not clear row 0's rejection...
  UplinkBatch renumbered;
  renumbered.measurements.push_back(batch.measurements[0]);
  renumbered.measurements[0].measurement.event_id = batch.measurements[1].measurement.event_id;
  REQUIRE(f.buffer().apply_ingest_response(renumbered,
                                           answer_all(renumbered, RecordOutcome::confirmed), 6000));
  CHECK(sync_status(f.buffer()).quarantined == 1);
  // ...and rejecting it must not record a rejection against row 0.
  IngestResponse other;
  other.measurements.push_back(RecordResult{RecordOutcome::rejected, "other_reason", ""});
  REQUIRE(f.buffer().apply_ingest_response(renumbered, other, 7000));
  auto latest = f.buffer().latest_rejections(10);
  REQUIRE(latest);
  REQUIRE(latest->size() == 1);
  CHECK(latest->at(0).reason == "wrong_unit");

  // A confirmation of an older revision than the one rejected leaves the rejection.
  UplinkBatch older;
  older.measurements.push_back(batch.measurements[0]);
  older.measurements[0].measurement.revision = 0;
  REQUIRE(
      f.buffer().apply_ingest_response(older, answer_all(older, RecordOutcome::confirmed), 8000));
  CHECK(sync_status(f.buffer()).quarantined == 1);
  // The same revision does clear it.
  UplinkBatch same;
  same.measurements.push_back(batch.measurements[0]);
  REQUIRE(f.buffer().apply_ingest_response(same, answer_all(same, RecordOutcome::confirmed), 9000));
  CHECK(sync_status(f.buffer()).quarantined == 0);
}

TEST_CASE(
    "pruning deletes only confirmed records, keeps each series' newest, and deltas stay "
    "exact",
    "[buffer_sync]") {
  BufferFixture f;
  const std::int64_t day = 86400000;
  const std::int64_t received = 1704067200000;  // 2024-01-01
  f.append(reading("2024-01-01T00:00:00Z", "10"), received);
  f.append(reading("2024-01-02T00:00:00Z", "15"), received + day);
  f.append(reading("2024-01-03T00:00:00Z", "20", "m2"), received + 2 * day);
  f.append(reading("2024-01-04T00:00:00Z", "30"), received + 3 * day);
  f.normalize();
  // Confirm everything except the newest m1 reading.
  auto batch = select(f.buffer());
  IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
  for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
    if (batch.measurements[i].measurement.value == "15") {
      response.measurements[i].outcome = RecordOutcome::missing;  // stays unsynced
    }
  }
  REQUIRE(f.buffer().apply_ingest_response(batch, response, 0));
  auto pruned = f.buffer().prune_synced(received + 10 * day);
  REQUIRE(pruned);
  // m1@01 (synced) goes; m1@02 is unsynced; m1@04 is the newest of m1; m2@03 the newest of m2.
  CHECK(pruned->measurements_deleted == 1);
  CHECK(pruned->raw_deleted == 0);  // the redelivery window keeps recent raw messages
  auto all = f.measurements();
  REQUIRE(all.size() == 3);
  // An out-of-order reading before the pruned one is flagged beyond_retention.
  f.append(reading("2023-12-31T00:00:00Z", "5"), received + 4 * day);
  f.normalize();
  CHECK(has_flag(f.at("m1", "energy", "2023-12-31T00:00:00.000Z").flags, Flag::beyond_retention));
  CHECK(f.at("m1", "energy", "2024-01-02T00:00:00.000Z").delta == std::optional<std::string>("5"));
}

TEST_CASE("pruning raw messages keeps unconfirmed, quarantined, recent and still-needed ones",
          "[buffer_sync]") {
  BufferFixture f;
  const std::int64_t received = 1704067200000;
  for (int i = 1; i <= 6; ++i) {
    f.append(reading("2024-01-0" + std::to_string(i) + "T00:00:00Z", std::to_string(i * 10)),
             received + i);
  }
  f.normalize();
  auto batch = select(f.buffer());
  IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
  response.raw_events[1] = RecordResult{RecordOutcome::rejected, "too_long", ""};  // seq 2
  response.raw_events[4] = RecordResult{RecordOutcome::missing, "", ""};           // seq 5
  response.measurements[2].outcome = RecordOutcome::missing;  // from raw seq 3: still unsynced
  REQUIRE(f.buffer().apply_ingest_response(batch, response, 0));
  // Watermark 4 (seq 5 unanswered); the unsynced measurement from seq 3 keeps
  // raw 3 and later; seq 2 is quarantined: only seq 1 may go.
  auto pruned = f.buffer().prune_synced(received + 1000, 1);
  REQUIRE(pruned);
  CHECK(pruned->raw_deleted == 1);
  CHECK(f.buffer().status()->raw_messages == 5);
  // Nothing newer than the cutoff goes.
  REQUIRE(f.buffer().apply_ingest_response(
      select(f.buffer()), answer_all(select(f.buffer()), RecordOutcome::confirmed), 0));
  CHECK(f.buffer().prune_synced(received, 1)->raw_deleted == 0);
  // Once everything is confirmed: all but the quarantined one and the newest.
  CHECK(f.buffer().prune_synced(received + 1000, 1)->raw_deleted == 3);
  CHECK(f.buffer().status()->raw_messages == 2);
}

TEST_CASE(
    "readings stamped with the gateway clock while it was not synchronized get "
    "clock_unsynced",
    "[buffer_sync]") {
  BufferFixture f;
  const std::int64_t t0 = 1735689600000;
  REQUIRE(f.buffer().record_clock_state(false, t0 + 1000, t0 + 1000));
  REQUIRE(f.buffer().record_clock_state(false, t0 + 1500, t0 + 1500));  // still: no new period
  REQUIRE(f.buffer().record_clock_state(true, 0, t0 + 5000));
  const auto no_ts = [](const std::string& device) {
    return seed_payload(device, std::nullopt, "energy", "1", "kWh");
  };
  f.append(no_ts("before"), t0);                                           // before the period
  f.append(no_ts("during"), t0 + 3000);                                    // inside it
  f.append(no_ts("after"), t0 + 6000);                                     // after it
  f.append(reading("2025-01-01T00:00:03Z", "1", "own-clock"), t0 + 3000);  // the meter's own time
  f.normalize();
  auto flags_of = [&](const std::string& device) {
    for (const auto& m : f.measurements()) {
      if (m.device_id == device) return m.flags;
    }
    FAIL("no measurement of " << device);
    return FlagSet{0};
  };
  CHECK_FALSE(has_flag(flags_of("before"), Flag::clock_unsynced));
  CHECK(has_flag(flags_of("during"), Flag::clock_unsynced));
  CHECK(has_flag(flags_of("during"), Flag::gateway_timestamp));
  CHECK_FALSE(has_flag(flags_of("after"), Flag::clock_unsynced));
  CHECK_FALSE(has_flag(flags_of("own-clock"), Flag::clock_unsynced));
  // An open period (not synchronized since) covers everything after it.
  REQUIRE(f.buffer().record_clock_state(false, t0 + 7000, t0 + 7000));
  f.append(no_ts("later"), t0 + 9000);
  f.normalize();
  CHECK(has_flag(flags_of("later"), Flag::clock_unsynced));
}

TEST_CASE("a confirmation for a row id that now holds another measurement marks nothing",
          "[buffer_sync]") {
  BufferFixture f;
  f.append(reading("2024-01-01T01:00:00Z", "1"));
  f.normalize();
  auto batch = select(f.buffer());
  REQUIRE(batch.measurements.size() == 1);
  // As if renormalize had given this row id to another event.
  batch.measurements[0].measurement.event_id = std::string(64, 'a');
  REQUIRE(f.buffer().apply_ingest_response(batch, answer_all(batch, RecordOutcome::confirmed), 0));
  CHECK(sync_status(f.buffer()).measurements_waiting == 1);
  CHECK(f.measurements().at(0).synced_revision == 0);
}

TEST_CASE("renormalize keeps quarantined measurements quarantined unless their content changes",
          "[buffer_sync]") {
  BufferFixture f;
  f.append(reading("2024-01-01T01:00:00Z", "0"));
  f.append(reading("2024-01-01T02:00:00Z", "5"));
  f.append(reading("2024-01-01T03:00:00Z", "5000"));
  f.normalize();
  auto batch = select(f.buffer());
  REQUIRE(batch.measurements.size() == 3);
  IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
  response.measurements[1] = RecordResult{RecordOutcome::rejected, "refused", "value 5"};
  response.measurements[2] = RecordResult{RecordOutcome::rejected, "refused", "value 5000"};
  REQUIRE(f.buffer().apply_ingest_response(batch, response, 1000));
  REQUIRE(select(f.buffer()).empty());

  // Nothing changed: nothing is sent again.
  REQUIRE(f.buffer().renormalize(f.config()));
  CHECK(select(f.buffer()).empty());
  CHECK(sync_status(f.buffer()).waiting() == 0);
  CHECK(sync_status(f.buffer()).quarantined == 2);

  // A lower jump threshold flags the 5000 reading: its new revision is sent,
  // the unchanged one stays quarantined.
  f.config().metrics["energy"].jump_threshold = *Decimal::parse("1000");
  REQUIRE(f.buffer().renormalize(f.config()));
  auto revised = select(f.buffer());
  REQUIRE(revised.measurements.size() == 1);
  CHECK(revised.measurements[0].measurement.value == "5000");
  CHECK(revised.measurements[0].measurement.revision == 2);

  // requeue still releases the unchanged one.
  CHECK(*f.buffer().requeue(std::nullopt) == 2);
  CHECK(select(f.buffer()).measurements.size() == 2);
}

TEST_CASE("renormalize renumbers rows: rejections move with their measurements", "[buffer_sync]") {
  // Status, confirmations and requeue find a rejection by its row id.
  BufferFixture f;
  f.append(reading("2024-01-01T01:00:00Z", "1"));  // seq 1: row 1
  f.normalize();
  f.config().metrics["energy"].unit = "Wh";
  f.append(reading("2024-01-01T02:00:00Z", "2"));        // seq 2: refused, m1 is in kWh
  f.append(reading("2024-01-01T01:00:00Z", "7", "m2"));  // seq 3: a new series in Wh, row 2
  f.append(reading("2024-01-01T01:00:00Z", "8", "m3"));  // seq 4: row 3
  f.normalize();
  auto batch = select(f.buffer());
  REQUIRE(batch.measurements.size() == 3);
  IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
  response.measurements[0] = RecordResult{RecordOutcome::rejected, "wrong_unit", "kWh"};
  response.measurements[1] = RecordResult{RecordOutcome::rejected, "unknown_device", "m2"};
  response.measurements[2] = RecordResult{RecordOutcome::rejected, "unknown_device", "m3"};
  REQUIRE(f.buffer().apply_ingest_response(batch, response, 1000));
  REQUIRE(sync_status(f.buffer()).quarantined == 3);

  // Rebuilt in Wh: m1@01 is a new event ("1000"), seq 2 now gives m1@02, so
  // m2 moves from row 2 to row 3 and m3 from row 3 to row 4 (row 3 changes
  // hands between two rejections).
  REQUIRE(f.buffer().renormalize(f.config()));
  auto status = sync_status(f.buffer());
  CHECK(status.quarantined == 2);  // m1's old event is gone, and its rejection with it
  CHECK(status.quarantined_by_reason["unknown_device"] == 2);
  CHECK(status.quarantined_by_reason.count("wrong_unit") == 0);
  auto m1 = select(f.buffer());
  REQUIRE(m1.measurements.size() == 2);  // m2 and m3 stay quarantined
  for (const auto& sent : m1.measurements) CHECK(sent.measurement.device_id == "m1");

  // Confirming m1's rows (rows 1 and 2) leaves the other rejections alone.
  REQUIRE(f.buffer().apply_ingest_response(m1, answer_all(m1, RecordOutcome::confirmed), 2000));
  CHECK(sync_status(f.buffer()).quarantined == 2);
  auto latest = f.buffer().latest_rejections(10);
  REQUIRE(latest);
  REQUIRE(latest->size() == 2);
  std::set<std::int64_t> rejected_rows;
  for (const auto& rejection : *latest) {
    CHECK(rejection.reason == "unknown_device");
    rejected_rows.insert(rejection.ref);
  }

  // requeue releases m2 and m3 themselves, under the row ids their rejections name.
  CHECK(*f.buffer().requeue(std::string("unknown_device")) == 2);
  auto released = select(f.buffer());
  REQUIRE(released.measurements.size() == 2);
  std::set<std::int64_t> released_rows;
  for (const auto& sent : released.measurements) {
    CHECK(sent.measurement.device_id != "m1");
    released_rows.insert(sent.row_id);
  }
  CHECK(released_rows == rejected_rows);
  REQUIRE(f.buffer().apply_ingest_response(released, answer_all(released, RecordOutcome::confirmed),
                                           3000));
  status = sync_status(f.buffer());
  CHECK(status.quarantined == 0);
  CHECK(status.requeued == 0);
  CHECK(status.waiting() == 0);
}

namespace {

// A reading padded to ~560 bytes, as real meter payloads are (METERS.md).
std::string padded_reading(int step, int meter) {
  auto json = seed_payload("m" + std::to_string(meter),
                           format_timestamp(1704067200000 + std::int64_t{step} * 60000), "energy",
                           std::to_string(1000 + step), "kWh");
  json.insert(json.size() - 1, ",\"firmware_status\":\"" + std::string(480, 'x') + "\"");
  return json;
}

// Appends `steps` readings of each of `meters` meters (received in order),
// normalizes them and confirms the first `confirm` raw messages and their
// measurements.
void fill_and_confirm(BufferFixture& f, int steps, int meters, std::int64_t confirm) {
  const std::int64_t received = 1735689600000;
  for (int step = 0; step < steps; ++step) {
    for (int meter = 0; meter < meters; ++meter) {
      f.append(padded_reading(step, meter), received + step * meters + meter);
    }
  }
  f.normalize();
  for (;;) {
    auto batch = select(f.buffer());
    if (batch.empty()) break;
    IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
    bool beyond = false;
    for (std::size_t i = 0; i < batch.raw_events.size(); ++i) {
      if (batch.raw_events[i].seq > confirm) {
        response.raw_events[i].outcome = RecordOutcome::missing;
        beyond = true;
      }
    }
    for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
      if (batch.measurements[i].measurement.raw_seq > confirm) {
        response.measurements[i].outcome = RecordOutcome::missing;
        beyond = true;
      }
    }
    REQUIRE(f.buffer().apply_ingest_response(batch, response, 0));
    if (beyond) break;
  }
}

// The raw log's (first seq, last seq, count), read from the file.
struct RawRange {
  std::int64_t first = 0, last = 0, count = 0;
};
RawRange raw_range(BufferFixture& f) {
  sqlite::Database db(f.dir().file("buffer.db"));
  auto range = db.prepare("SELECT min(seq), max(seq), count(*) FROM raw_messages");
  range.step();
  return RawRange{range.column_int(0), range.column_int(1), range.column_int(2)};
}

}  // namespace

TEST_CASE("pruning for a disk budget deletes confirmed data oldest first, whatever its age",
          "[buffer_sync][budget]") {
  BufferFixture f;
  fill_and_confirm(f, 200, 10, 2000);  // 2,000 readings, all confirmed
  const auto before = f.buffer().used_bytes();
  REQUIRE(before);
  const std::int64_t target = *before / 2;
  auto pruned = f.buffer().prune_to_size(target, 100);
  REQUIRE(pruned);
  CHECK(*f.buffer().used_bytes() <= target);
  CHECK(pruned->raw_deleted > 0);
  CHECK(pruned->measurements_deleted > 0);
  // The oldest went, the newest stayed: what is left is one run of seqs that
  // ends at the newest, and it holds at least the redelivery window.
  const auto raw = raw_range(f);
  CHECK(raw.last == 2000);
  CHECK(raw.count == raw.last - raw.first + 1);
  CHECK(raw.count >= 100);
  CHECK(raw.count == 2000 - pruned->raw_deleted);
  // Measurements: the newest of each series is kept, and deltas after the
  // pruned ones stay exact.
  const auto left = f.measurements();
  CHECK(static_cast<std::int64_t>(left.size()) == 2000 - pruned->measurements_deleted);
  for (int meter = 0; meter < 10; ++meter) {
    CHECK(f.at("m" + std::to_string(meter), "energy", format_timestamp(1704067200000 + 199 * 60000))
              .delta == std::optional<std::string>("1"));
  }
  f.append(padded_reading(200, 0));
  f.normalize();
  CHECK(f.at("m0", "energy", format_timestamp(1704067200000 + 200 * 60000)).delta ==
        std::optional<std::string>("1"));
}

TEST_CASE("pruning for a disk budget never deletes what the central has not confirmed",
          "[buffer_sync][budget]") {
  BufferFixture f;
  fill_and_confirm(f, 100, 10, 400);             // 1,000 readings, the first 400 confirmed
  auto pruned = f.buffer().prune_to_size(0, 1);  // a target it cannot reach
  REQUIRE(pruned);
  CHECK(pruned->raw_deleted == 400);  // up to the first one an unsynced measurement came from
  // 400 confirmed measurements, less the newest of each series among them: no
  // series has an unconfirmed reading older than a confirmed one here.
  CHECK(pruned->measurements_deleted == 400);
  CHECK(f.buffer().status()->unsynced == 600);
  CHECK(f.buffer().status()->measurements == 600);
  CHECK(raw_range(f).first == 401);
  // Once the rest is confirmed, a second prune can go further.
  fill_and_confirm(f, 0, 10, 1000);
  pruned = f.buffer().prune_to_size(0, 1);
  REQUIRE(pruned);
  CHECK(pruned->raw_deleted == 600 - 1);
  CHECK(f.buffer().status()->measurements == 10);  // the newest of each series
}

TEST_CASE("the redelivery window is bounded in bytes", "[buffer_sync][budget]") {
  BufferFixture f;
  for (int i = 0; i < 50; ++i) f.append(padded_reading(i, 0));
  const auto size =
      static_cast<std::int64_t>(std::string("meters/m1").size() + padded_reading(0, 0).size());
  CHECK(*f.buffer().redelivery_window(10 * size) == 10);
  CHECK(*f.buffer().redelivery_window(10 * size + size / 2) == 10);
  CHECK(*f.buffer().redelivery_window(1000 * size) == 50);  // all there is
  CHECK(*f.buffer().redelivery_window(0) == 1);             // never less than the newest
}

TEST_CASE("a quarantined measurement keeps its raw message but holds back no other pruning",
          "[buffer_sync][budget]") {
  BufferFixture f;
  fill_and_confirm(f, 10, 10, 0);  // 100 readings, none confirmed yet
  // Everything confirmed but the measurement from raw message 5: quarantined.
  for (;;) {
    auto batch = select(f.buffer());
    if (batch.empty()) break;
    IngestResponse response = answer_all(batch, RecordOutcome::confirmed);
    for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
      if (batch.measurements[i].measurement.raw_seq == 5) {
        response.measurements[i] = RecordResult{RecordOutcome::rejected, "value_out_of_range", ""};
      }
    }
    REQUIRE(f.buffer().apply_ingest_response(batch, response, 0));
  }
  REQUIRE(sync_status(f.buffer()).quarantined == 1);
  // By age, and for a disk budget: every confirmed raw message but the
  // quarantined measurement's own and the newest.
  auto pruned = f.buffer().prune_synced(std::numeric_limits<std::int64_t>::max() - 1, 1);
  REQUIRE(pruned);
  CHECK(pruned->raw_deleted == 100 - 2);
  sqlite::Database db(f.dir().file("buffer.db"));
  auto left = db.prepare("SELECT seq FROM raw_messages ORDER BY seq");
  REQUIRE(left.step());
  CHECK(left.column_int(0) == 5);  // renormalize can still rebuild it
  REQUIRE(left.step());
  CHECK(left.column_int(0) == 100);
  CHECK_FALSE(left.step());

  BufferFixture budget;
  fill_and_confirm(budget, 100, 10, 1000);
  {
    // A quarantined measurement from the first raw message.
    sqlite::Database raw(budget.dir().file("buffer.db"));
    raw.exec(
        "UPDATE measurements SET synced_revision = 0, quarantined_revision = revision "
        "WHERE raw_seq = 1");
  }
  auto for_budget = budget.buffer().prune_to_size(0, 1);
  REQUIRE(for_budget);
  CHECK(for_budget->raw_deleted == 1000 - 2);
}

TEST_CASE("pruning for a disk budget reads the oldest measurements through an index",
          "[buffer_sync][budget]") {
  BufferFixture f;
  fill_and_confirm(f, 2, 2, 4);  // opening the buffer made the index
  sqlite::Database db(f.dir().file("buffer.db"));
  auto plan_of = [&](const char* query) {
    auto plan = db.prepare(std::string("EXPLAIN QUERY PLAN ") + query);
    plan.bind(1, std::int64_t{1000}).bind(2, std::int64_t{10});
    std::string text;
    while (plan.step()) text += plan.column_text(3) + "\n";
    return text;
  };
  const auto bounded = plan_of(sql::kPruneCandidatesThroughSeq);
  CAPTURE(bounded);
  CHECK(bounded.find("SEARCH m USING INDEX measurements_raw_seq (raw_seq<?)") != std::string::npos);
  CHECK(bounded.find("SCAN m") == std::string::npos);
  // The rows of each series (newest timestamp) through the identity index.
  CHECK(bounded.find("SEARCH t USING COVERING INDEX measurements_identity (series_id=?)") !=
        std::string::npos);
}

TEST_CASE("a late rejection of an older revision leaves the newer rejection alone",
          "[buffer_sync]") {
  BufferFixture f;
  f.append(reading("2024-01-01T01:00:00Z", "1"));
  f.normalize();
  auto batch = select(f.buffer());
  REQUIRE(batch.measurements.size() == 1);
  // Revision 2 is what the row holds now; it was rejected.
  {
    sqlite::Database db(f.dir().file("buffer.db"));
    db.exec("UPDATE measurements SET revision = 2");
  }
  UplinkBatch newer = batch;
  newer.raw_events.clear();
  newer.measurements[0].measurement.revision = 2;
  UplinkBatch older = newer;
  older.measurements[0].measurement.revision = 1;
  REQUIRE(f.buffer().apply_ingest_response(
      newer, IngestResponse{{}, {RecordResult{RecordOutcome::rejected, "wrong_unit", ""}}}, 5000));
  // The answer to revision 1, late: rejected too, then confirmed.
  REQUIRE(f.buffer().apply_ingest_response(
      older, IngestResponse{{}, {RecordResult{RecordOutcome::rejected, "old_reason", ""}}}, 6000));
  REQUIRE(
      f.buffer().apply_ingest_response(older, answer_all(older, RecordOutcome::confirmed), 7000));
  auto latest = f.buffer().latest_rejections(10);
  REQUIRE(latest);
  REQUIRE(latest->size() == 1);
  CHECK(latest->at(0).revision == 2);
  CHECK(latest->at(0).reason == "wrong_unit");
  // So `requeue` still finds it and releases it.
  CHECK(*f.buffer().requeue(std::nullopt) == 1);
  CHECK(select(f.buffer()).measurements.size() == 1);
}
