// Operator events in the raw log (common/buffer/operator_events.cpp): written
// once per content, the latest record of an identity in force, never pruned,
// and written safely beside another connection that appends (the daemon).
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "support/buffer_fixture.hpp"
#include "support/raw_appender.hpp"

using namespace meter;
using namespace meter::test;

namespace {

std::int64_t ms(const char* timestamp) {
  return parse_timestamp(timestamp, TimestampFormat::rfc3339)->ms;
}

OperatorEvent replacement(const char* at = "2024-03-01T12:00:00Z") {
  OperatorEvent event;
  event.device_id = "m1";
  event.metric_type = "energy";
  event.at_ms = ms(at);
  event.new_initial = Decimal::parse("0.5").value();
  event.recorded_ms = ms("2024-03-02T08:00:00Z");
  return event;
}

OperatorEventWrite record(BufferFixture& f, const OperatorEvent& event) {
  auto written = f.buffer().record_operator_event(event, ms("2024-03-02T08:00:00Z"));
  if (!written) FAIL(written.error().message);
  return *written;
}

std::int64_t scalar(sqlite::Database& db, const std::string& query) {
  auto statement = db.prepare(query);
  REQUIRE(statement.step());
  return statement.column_int(0);
}

}  // namespace

TEST_CASE("an operator event is written once per content, the latest of an identity wins",
          "[buffer][operator_events]") {
  BufferFixture f;
  f.append(seed_payload("m1", "2024-03-01T11:00:00Z", "energy", "100", "kWh"));
  const auto first = record(f, replacement());
  CHECK(first.written);
  CHECK(first.seq == 2);
  // The same command again (another recorded_at): nothing written.
  OperatorEvent again = replacement();
  again.recorded_ms += 60000;
  const auto repeat = record(f, again);
  CHECK_FALSE(repeat.written);
  CHECK(repeat.seq == 2);

  // A corrected value is a new record of the same identity, and wins.
  OperatorEvent corrected = replacement();
  corrected.new_initial = Decimal::parse("0.75").value();
  CHECK(record(f, corrected).seq == 3);
  auto in_force = f.buffer().operator_events("m1", "energy");
  REQUIRE(in_force);
  REQUIRE(in_force->size() == 1);
  CHECK(in_force->front().new_initial == Decimal::parse("0.75").value());
  CHECK(in_force->front().seq == 3);

  // Withdrawn: no longer in force, but every record stays in the raw log.
  OperatorEvent withdrawal = replacement();
  withdrawal.withdrawn = true;
  withdrawal.new_initial.reset();
  CHECK(record(f, withdrawal).seq == 4);
  CHECK_FALSE(record(f, withdrawal).written);
  in_force = f.buffer().operator_events("m1", "energy");
  REQUIRE(in_force);
  CHECK(in_force->empty());
  auto log = f.buffer().operator_event_log();
  REQUIRE(log);
  CHECK(log->records.size() == 3);
  CHECK(log->problems.empty());
  CHECK(f.buffer().status()->raw_messages == 4);

  // A withdrawal of what was never recorded is refused, nothing written.
  OperatorEvent unknown = replacement("2024-05-01T00:00:00Z");
  unknown.withdrawn = true;
  auto refused = f.buffer().record_operator_event(unknown, 0);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message ==
        "no meter replacement of m1 energy at 2024-05-01T00:00:00.000Z is recorded; nothing to "
        "withdraw");
  CHECK(f.buffer().status()->raw_messages == 4);

  // Other series are not concerned.
  CHECK(f.buffer().operator_events("m2", "energy")->empty());
  CHECK(f.buffer().operator_events("m1", "power")->empty());
}

TEST_CASE("operator events are never pruned, whatever their age", "[buffer][operator_events]") {
  BufferFixture f;
  record(f, replacement());
  for (int i = 0; i < 3; ++i) {
    f.append(seed_payload("m1", "2024-03-01T1" + std::to_string(i) + ":00:00Z", "energy",
                          std::to_string(100 + i), "kWh"));
  }
  f.normalize();
  f.confirm_measurements([](const Measurement&) { return true; });
  // Confirm the raw log too, then prune everything prunable.
  auto batch = f.buffer().select_unsynced(SyncLimits{1000, std::size_t{1} << 30});
  REQUIRE(batch);
  REQUIRE(
      f.buffer().apply_ingest_response(*batch, answer_all(*batch, RecordOutcome::confirmed), 0));
  auto pruned = f.buffer().prune_synced(std::numeric_limits<std::int64_t>::max(), 0);
  REQUIRE(pruned);
  CHECK(pruned->raw_deleted == 2);  // seq 2 and 3; 4 is the newest
  auto log = f.buffer().operator_event_log();
  REQUIRE(log);
  REQUIRE(log->records.size() == 1);
  CHECK(log->records[0].seq == 1);
}

// [daemon]: a second thread writes beside it, as the daemon does; qemu-user (the
// arm64 package test) hangs on threads, so these run with the process tests.
TEST_CASE("an operator event waits for another connection's write and takes the next seq",
          "[buffer][operator_events][daemon]") {
  BufferFixture f;
  f.append(seed_payload("m1", "2024-03-01T11:00:00Z", "energy", "100", "kWh"));
  // The daemon's side: its own connection, in the middle of a transaction.
  sqlite::Database daemon(f.config().buffer.path);
  daemon.exec("BEGIN IMMEDIATE");
  daemon.exec(
      "INSERT INTO raw_messages (received_ms, topic, payload, qos, retained, dup) "
      "VALUES (1, 'meters/m1', x'7b7d', 1, 0, 0)");
  // The command, on a connection of its own like the CLI's: it cannot write
  // before the daemon's transaction ends, whenever it gets there.
  BufferConfig config = f.config().buffer;
  auto command = std::async(std::launch::async, [config]() -> Result<OperatorEventWrite> {
    auto buffer = Buffer::open(config);
    if (!buffer) return buffer.error();
    return (*buffer)->record_operator_event(replacement(), 0);
  });
  daemon.exec("COMMIT");
  auto written = command.get();
  REQUIRE(written);
  CHECK(written->written);
  CHECK(written->seq == 3);  // after the daemon's row 2, never in its place
  CHECK(scalar(daemon, "SELECT count(DISTINCT seq) FROM raw_messages") == 3);
}

TEST_CASE("operator events recorded while a writer appends keep every row and seq",
          "[buffer][operator_events][daemon]") {
  BufferFixture f;
  f.append(seed_payload("m1", "2024-03-01T00:00:00Z", "energy", "100", "kWh"));
  constexpr int kAppends = 300;
  constexpr int kEvents = 20;
  // A daemon-like writer committing message by message on its own connection.
  auto writer = std::async(std::launch::async, [config = f.config().buffer] {
    testing::RawAppender appender(config);
    for (int i = 0; i < kAppends; ++i) {
      RawMessage message;
      message.topic = "meters/m1";
      message.payload = "{}";
      message.received_ms = i;
      if (!appender.append(message)) return false;
    }
    return true;
  });
  BufferConfig config = f.config().buffer;
  auto buffer = Buffer::open(config);
  REQUIRE(buffer);
  for (int i = 0; i < kEvents; ++i) {
    OperatorEvent event = replacement();
    event.at_ms += i * 3600000LL;
    auto written = (*buffer)->record_operator_event(event, 0);
    REQUIRE(written);
    CHECK(written->written);
  }
  REQUIRE(writer.get());
  sqlite::Database db(config.path);
  CHECK(scalar(db, "SELECT count(*) FROM raw_messages") == 1 + kAppends + kEvents);
  CHECK(scalar(db, "SELECT max(seq) FROM raw_messages") == 1 + kAppends + kEvents);
  CHECK(scalar(db, "SELECT count(*) FROM raw_messages WHERE topic = '$meter-agent/operator'") ==
        kEvents);
  auto log = (*buffer)->operator_event_log();
  REQUIRE(log);
  CHECK(log->records.size() == kEvents);
}

TEST_CASE("operator events are recorded while another connection commits back to back",
          "[buffer][operator_events][daemon]") {
  BufferFixture f;
  f.append(seed_payload("m1", "2024-03-01T00:00:00Z", "energy", "100", "kWh"));
  // The daemon draining a backlog on a slow machine: transaction after
  // transaction, each holding the write lock for a while (the loop stands for
  // a batch's work), free only for the moment between COMMIT and the next
  // BEGIN. Polling for the lock alone (SQLite's busy timeout) finds it taken
  // every time and gives up after 10 s with "database is locked".
  std::atomic<bool> stop{false};
  std::promise<void> writing;
  auto written_once = writing.get_future();
  // The promise moves into the writer: if it throws, the wait below ends too.
  auto daemon = std::async(std::launch::async, [path = f.config().buffer.path, &stop,
                                                writing = std::move(writing)]() mutable {
    sqlite::Database db(path);
    int commits = 0;
    while (!stop) {
      if (commits == 1) writing.set_value();
      sqlite::Transaction transaction(db);
      db.exec(
          "INSERT INTO raw_messages (received_ms, topic, payload, qos, retained, dup) "
          "VALUES (1, 'meters/m1', x'7b7d', 1, 0, 0)");
      // Busy, not asleep: a sleeping writer's wake-ups can fall in step with
      // the waiter's own timed attempts and hand it the gaps.
      const auto work_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
      while (std::chrono::steady_clock::now() < work_until) {
      }
      transaction.commit();
      ++commits;
    }
    return commits;
  });
  // Stops the writer however this test ends (a failed REQUIRE too): the
  // future's destructor, which runs after this, waits for it.
  struct StopWriter {
    std::atomic<bool>& stop;
    ~StopWriter() { stop = true; }
  } stop_writer{stop};
  written_once.wait();  // its first commit is in: it writes from now on
  constexpr int kEvents = 3;
  {
    auto buffer = Buffer::open(f.config().buffer);
    REQUIRE(buffer);
    for (int i = 0; i < kEvents; ++i) {
      OperatorEvent event = replacement();
      event.at_ms += i * 3600000LL;
      auto written = (*buffer)->record_operator_event(event, 0);
      if (!written) FAIL("event " << i << ": " << written.error().message);
      CHECK(written->written);
    }
  }
  stop = true;
  const int commits = daemon.get();
  sqlite::Database db(f.config().buffer.path);
  CHECK(scalar(db, "SELECT count(*) FROM raw_messages") == 1 + commits + kEvents);
  CHECK(scalar(db, "SELECT count(DISTINCT seq) FROM raw_messages") == 1 + commits + kEvents);
  CHECK(scalar(db, "SELECT count(*) FROM raw_messages WHERE topic = '$meter-agent/operator'") ==
        kEvents);
}
