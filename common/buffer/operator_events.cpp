// The buffer's side of the operator events (common/normalize/operator_event.hpp):
// recording one in the raw log, and reading them back.
//
// Why recording is safe while the daemon runs: a raw message's seq is its
// rowid, which SQLite assigns as one more than the largest rowid when the
// row is inserted, and only a connection that holds the database's single
// write lock can insert. record_operator_event takes that lock first
// (sqlite::Transaction is BEGIN IMMEDIATE; the connection waits up to
// 10 s for the daemon's transaction in progress to commit, and the daemon lets
// it go before its next one: sqlite.cpp, Database::begin_write), so
// its row gets the next seq after every row the daemon committed and none
// the daemon commits later. The daemon's normalizer reads the raw log by
// seq after its own progress, inside its own write transaction, so it sees
// the new row as it sees any other: once, in order. The check for an
// identical record and the insert are in the same transaction, so two
// commands racing each other cannot both write.
#include <string_view>
#include <utility>

#include "common/buffer/buffer.hpp"
#include "common/buffer/buffer_state.hpp"
#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/normalize/timestamp.hpp"

namespace meter {
namespace {

OperatorEventLog read_log(sqlite::Database& db) {
  OperatorEventLog log;
  auto rows = db.prepare(sql::kOperatorEvents);
  while (rows.step()) {
    const std::int64_t seq = rows.column_int(0);
    auto event = parse_operator_event(rows.column_blob(1));
    if (!event) {
      // Kept in the raw log (and uploaded) as it is; never used.
      log.problems.push_back("seq " + std::to_string(seq) + ": " + event.error().message);
      continue;
    }
    event->seq = seq;
    log.records.push_back(std::move(*event));
  }
  return log;
}

}  // namespace

Result<OperatorEventWrite> Buffer::record_operator_event(const OperatorEvent& event,
                                                         std::int64_t received_ms) {
  return guarded([&]() -> Result<OperatorEventWrite> {
    sqlite::Transaction transaction(*db_);
    const std::string identity = event.identity();
    const OperatorEvent* latest = nullptr;
    const OperatorEventLog log = read_log(*db_);
    for (const OperatorEvent& record : log.records) {
      if (record.identity() == identity) latest = &record;  // seq order: the last wins
    }
    if (latest != nullptr && latest->same_content(event)) {
      return OperatorEventWrite{false, latest->seq};
    }
    if (event.withdrawn && (latest == nullptr || latest->withdrawn)) {
      return Error{"no meter replacement of " + event.device_id + " " + event.metric_type + " at " +
                   format_timestamp(event.at_ms) + " is recorded; nothing to withdraw"};
    }
    RawMessage message;
    message.received_ms = received_ms;
    message.topic = std::string(kOperatorTopic);
    message.payload = encode_operator_event(event);
    message.qos = 0;
    message.retained = false;
    message.dup = false;
    const std::int64_t seq = insert_raw(message);
    transaction.commit();
    return OperatorEventWrite{true, seq};
  });
}

Result<OperatorEventLog> Buffer::operator_event_log() {
  return guarded([&]() -> Result<OperatorEventLog> { return read_log(*db_); });
}

Result<std::vector<OperatorEvent>> Buffer::operator_events(std::string_view device_id,
                                                           std::string_view metric_type) {
  return guarded([&]() -> Result<std::vector<OperatorEvent>> {
    std::vector<OperatorEvent> in_force;
    for (OperatorEvent& event : latest_operator_events(read_log(*db_).records)) {
      if (event.withdrawn || event.device_id != device_id || event.metric_type != metric_type) {
        continue;
      }
      in_force.push_back(std::move(event));
    }
    return in_force;
  });
}

}  // namespace meter
