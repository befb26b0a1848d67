// The uplink's side of the buffer: which records wait for the central, and
// what its responses confirmed or refused. SQL in sql.hpp ("The
// uplink's sync state").

#include <algorithm>

#include "common/buffer/buffer.hpp"
#include "common/buffer/buffer_state.hpp"
#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/normalize/event_id.hpp"
#include "common/uplink/wire_format.hpp"

namespace meter {
namespace {

// The 32 bytes the measurements table stores for a lowercase hex event_id
// (empty if it is not one: then it matches no row).
std::string blob_of_hex(const std::string& hex) {
  const auto id = event_id_of_hex(hex);
  return id ? std::string(id->begin(), id->end()) : std::string();
}

UplinkRawEvent read_raw(const sqlite::Statement& row) {
  UplinkRawEvent raw;
  raw.seq = row.column_int(0);
  raw.message.received_ms = row.column_int(1);
  raw.message.topic = row.column_text(2);
  raw.message.payload = row.column_blob(3);
  raw.message.qos = static_cast<int>(row.column_int(4));
  raw.message.retained = row.column_int(5) != 0;
  raw.message.dup = row.column_int(6) != 0;
  if (!row.column_is_null(7)) {
    const auto kind = row.column_text(7);
    const auto reason = row.column_text(8);
    raw.decode_error = kind == "decode_error" ? reason : kind + ": " + reason;
  }
  return raw;
}

// A read transaction (BEGIN DEFERRED): a consistent snapshot that takes no
// write lock, so the normalizer is never kept waiting by a read.
class ReadTransaction {
 public:
  explicit ReadTransaction(sqlite::Database& db) : db_(db) { db_.exec("BEGIN"); }
  ~ReadTransaction() {
    try {
      db_.exec("COMMIT");
    } catch (...) {
      // Nothing was written; a failed COMMIT of a read leaves nothing behind.
    }
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  sqlite::Database& db_;
};

}  // namespace

Result<UplinkBatch> Buffer::select_unsynced(const SyncLimits& limits,
                                            std::optional<SyncCursor> after) {
  return guarded([&]() -> Result<UplinkBatch> {
    auto& db = *db_;
    UplinkBatch batch;
    // One read transaction: the watermark, the rows and the counters agree.
    ReadTransaction transaction(db);
    const auto watermark = read_counter(db, "raw_synced_through_seq");
    const auto normalized = read_counter(db, "normalized_through_seq");
    const std::size_t half_bytes = std::max<std::size_t>(limits.max_bytes / 2, 1);
    std::size_t bytes = 0;
    auto take_raw = [&](sqlite::Statement& rows) {
      while (rows.step()) {
        if (batch.raw_events.size() >= limits.max_records) {
          batch.limited = true;
          break;
        }
        auto raw = read_raw(rows);
        const auto size = estimated_size(raw);
        if (!batch.raw_events.empty() && bytes + size > half_bytes) {
          batch.limited = true;
          break;
        }
        bytes += size;
        batch.raw_events.push_back(std::move(raw));
      }
    };
    // Requeued ones first (they are below the watermark, so a batch selected
    // behind one in flight leaves them to the next fresh start).
    if (!after) {
      auto requeued = db.prepare(sql::kSyncRawRequeued);
      requeued.bind(1, static_cast<std::int64_t>(limits.max_records) + 1);
      take_raw(requeued);
    }
    // The watermark's run must stay contiguous, so it is only read when the
    // requeued ones left room.
    batch.raw_run_from = std::max(watermark, after ? after->raw_seq : 0);
    batch.through.raw_seq = batch.raw_run_from;
    if (!batch.limited) {
      const auto requeued = batch.raw_events.size();
      auto rows = db.prepare(sql::kSyncRawAfter);
      rows.bind(1, batch.raw_run_from)
          .bind(2, normalized)
          .bind(3, static_cast<std::int64_t>(limits.max_records - requeued) + 1);
      take_raw(rows);
      if (batch.raw_events.size() > requeued) batch.through.raw_seq = batch.raw_events.back().seq;
    }
    std::size_t measurement_bytes = 0;
    const std::size_t measurement_budget = limits.max_bytes > bytes ? limits.max_bytes - bytes : 1;
    batch.through.measurement_id = after ? after->measurement_id : 0;
    auto rows = db.prepare(sql::kSyncMeasurements);
    rows.bind(1, batch.through.measurement_id)
        .bind(2, static_cast<std::int64_t>(limits.max_records) + 1)
        .bind(3, static_cast<std::int64_t>(limits.held_flags));
    while (rows.step()) {
      if (batch.measurements.size() >= limits.max_records) {
        batch.limited = true;
        break;
      }
      UplinkMeasurement record;
      record.row_id = rows.column_int(0);
      auto& m = record.measurement;
      m.device_id = rows.column_text(1);
      m.metric_type = rows.column_text(2);
      m.unit = rows.column_text(3);
      m.timestamp_ms = rows.column_int(4);
      m.value = rows.column_text(5);
      m.event_id = hex_of_blob(rows.column_blob(6));
      m.delta = rows.column_optional_text(7);
      m.flags = static_cast<FlagSet>(rows.column_int(8));
      m.revision = rows.column_int(9);
      m.raw_seq = rows.column_int(10);
      m.first_received_ms = rows.column_int(11);
      m.delta_from_ms = rows.column_optional_int(12);
      const auto size = estimated_size(record);
      if (!batch.measurements.empty() && measurement_bytes + size > measurement_budget) {
        batch.limited = true;
        break;
      }
      measurement_bytes += size;
      batch.through.measurement_id = record.row_id;
      batch.measurements.push_back(std::move(record));
    }
    return batch;
  });
}

Result<SyncResult> Buffer::apply_ingest_response(const UplinkBatch& batch,
                                                 const IngestResponse& response,
                                                 std::int64_t now_ms) {
  return guarded([&]() -> Result<SyncResult> {
    if (response.raw_events.size() != batch.raw_events.size() ||
        response.measurements.size() != batch.measurements.size()) {
      return Error{"internal error: a response that does not belong to its batch"};
    }
    auto& db = *db_;
    SyncResult result;
    sqlite::Transaction transaction(db);
    const auto watermark = read_counter(db, "raw_synced_through_seq");
    auto record_rejection = db.prepare(sql::kSyncRecordRejection);
    auto clear_rejection = db.prepare(sql::kSyncClearRejection);
    auto reject = [&](const char* kind, std::int64_t ref, std::int64_t revision,
                      const RecordResult& outcome) {
      record_rejection.bind(1, std::string_view(kind))
          .bind(2, ref)
          .bind(3, revision)
          .bind(4, std::string_view(outcome.reason))
          .bind(5, std::string_view(outcome.detail))
          .bind(6, now_ms)
          .run();
    };
    // Raw: the run after the watermark advances it as far as every record up
    // to there has an outcome; a requeued one (below it) clears its rejection.
    // A run that does not start at the watermark (a batch selected behind one
    // still in flight, whose own run then failed) cannot move it: its raw
    // events are sent again.
    std::int64_t new_watermark = watermark;
    bool contiguous = batch.raw_run_from == watermark;
    for (std::size_t i = 0; i < batch.raw_events.size(); ++i) {
      const auto seq = batch.raw_events[i].seq;
      const auto& outcome = response.raw_events[i];
      if (outcome.outcome == RecordOutcome::missing) {
        ++result.missing;
        if (seq > watermark) contiguous = false;
        continue;
      }
      if (outcome.outcome == RecordOutcome::confirmed) {
        ++result.raw_confirmed;
        if (seq <= watermark) {
          clear_rejection.bind(1, std::string_view("raw")).bind(2, seq).bind(3, 0).run();
        }
      } else {
        ++result.raw_rejected;
        reject("raw", seq, 0, outcome);
      }
      if (seq > watermark && contiguous) new_watermark = seq;
    }
    if (new_watermark > watermark) {
      db.prepare(sql::kSyncSetRawWatermark).bind(1, new_watermark).run();
    }
    auto mark = db.prepare(sql::kSyncMarkMeasurement);
    auto quarantine = db.prepare(sql::kSyncQuarantineMeasurement);
    for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
      const auto& sent = batch.measurements[i];
      const auto& outcome = response.measurements[i];
      switch (outcome.outcome) {
        case RecordOutcome::confirmed:
          ++result.measurements_confirmed;
          {
            const auto id = blob_of_hex(sent.measurement.event_id);
            mark.bind(1, sent.row_id)
                .bind(2, sent.measurement.revision)
                .bind_blob(3, id.data(), id.size())
                .run();
          }
          // Only if the row is still the one sent (a renormalize renumbers
          // rows): else another row's rejection would go.
          if (db.changes() > 0) {
            clear_rejection.bind(1, std::string_view("measurement"))
                .bind(2, sent.row_id)
                .bind(3, sent.measurement.revision)
                .run();
          }
          break;
        case RecordOutcome::rejected:
          ++result.measurements_rejected;
          {
            const auto id = blob_of_hex(sent.measurement.event_id);
            quarantine.bind(1, sent.row_id)
                .bind(2, sent.measurement.revision)
                .bind_blob(3, id.data(), id.size())
                .run();
          }
          // The same: a renumbered row is sent again, and judged again.
          if (db.changes() > 0)
            reject("measurement", sent.row_id, sent.measurement.revision, outcome);
          break;
        case RecordOutcome::missing:
          ++result.missing;
          break;
      }
    }
    transaction.commit();
    return result;
  });
}

Result<std::int64_t> Buffer::count_waiting_with_flags(FlagSet flags) {
  return guarded([&]() -> Result<std::int64_t> {
    auto count = db_->prepare(sql::kSyncMeasurementsHeld);
    count.bind(1, static_cast<std::int64_t>(flags));
    count.step();
    return count.column_int(0);
  });
}

Result<SyncStatus> Buffer::sync_status() {
  return guarded([&]() -> Result<SyncStatus> {
    auto& db = *db_;
    SyncStatus status;
    ReadTransaction transaction(db);
    status.raw_synced_through_seq = read_counter(db, "raw_synced_through_seq");
    const auto normalized = read_counter(db, "normalized_through_seq");
    {
      auto waiting = db.prepare(sql::kSyncRawWaiting);
      waiting.bind(1, status.raw_synced_through_seq).bind(2, normalized);
      waiting.step();
      status.raw_waiting = waiting.column_int(0);
      auto oldest = db.prepare(sql::kSyncOldestRawWaiting);
      oldest.bind(1, status.raw_synced_through_seq);
      if (oldest.step()) status.oldest_waiting_received_ms = oldest.column_int(0);
    }
    {
      auto waiting = db.prepare(sql::kSyncMeasurementsWaiting);
      waiting.step();
      status.measurements_waiting = waiting.column_int(0);
      if (!waiting.column_is_null(1)) {
        const auto oldest = waiting.column_int(1);
        if (!status.oldest_waiting_received_ms || oldest < *status.oldest_waiting_received_ms) {
          status.oldest_waiting_received_ms = oldest;
        }
      }
    }
    auto counts = db.prepare(sql::kSyncRejectionCounts);
    while (counts.step()) {
      const auto count = counts.column_int(3);
      if (counts.column_int(2) != 0) {
        status.requeued += count;
        if (counts.column_text(0) == "raw") status.raw_waiting += count;
        continue;
      }
      status.quarantined += count;
      status.quarantined_by_reason[counts.column_text(1)] += count;
    }
    return status;
  });
}

Result<std::vector<Rejection>> Buffer::latest_rejections(int limit) {
  return guarded([&]() -> Result<std::vector<Rejection>> {
    auto rows = db_->prepare(sql::kSyncLatestRejections);
    rows.bind(1, limit);
    std::vector<Rejection> out;
    while (rows.step()) {
      out.push_back(Rejection{rows.column_text(0), rows.column_int(1), rows.column_int(2),
                              rows.column_text(3), rows.column_text(4), rows.column_int(5),
                              rows.column_int(6) != 0});
    }
    return out;
  });
}

Result<std::int64_t> Buffer::requeue(const std::optional<std::string>& reason) {
  return guarded([&]() -> Result<std::int64_t> {
    auto& db = *db_;
    sqlite::Transaction transaction(db);
    auto measurements = db.prepare(sql::kRequeueMeasurements);
    auto rejections = db.prepare(sql::kRequeueRejections);
    if (reason) {
      measurements.bind(1, std::string_view(*reason));
      rejections.bind(1, std::string_view(*reason));
    } else {
      measurements.bind_null(1);
      rejections.bind_null(1);
    }
    measurements.run();
    rejections.run();
    const std::int64_t released = db.changes();
    transaction.commit();
    return released;
  });
}

Result<PruneStats> Buffer::prune_synced(const PruneScope& scope) {
  auto pruned = prune_measurements(scope);
  if (!pruned) return pruned;
  return guarded([&]() -> Result<PruneStats> {
    auto& db = *db_;
    PruneStats stats = *pruned;
    sqlite::Transaction transaction(db);
    std::int64_t bound = std::min({scope.through_seq, read_counter(db, "raw_synced_through_seq"),
                                   read_counter(db, "normalized_through_seq")});
    {
      auto min_unsynced = db.prepare(sql::kSyncMinUnsyncedRawSeq);
      if (min_unsynced.step() && !min_unsynced.column_is_null(0)) {
        bound = std::min(bound, min_unsynced.column_int(0) - 1);
      }
      auto last = db.prepare(sql::kCountRaw);
      last.step();
      bound =
          std::min(bound, last.column_int(1) - std::max<std::int64_t>(scope.keep_newest_raw, 1));
    }
    if (bound > 0) {
      db.prepare(sql::kSyncPruneRaw).bind(1, bound).bind(2, scope.before_ms).run();
      stats.raw_deleted = db.changes();
      db.prepare(sql::kSyncPruneRawOutcomes).bind(1, bound).run();
    }
    transaction.commit();
    return stats;
  });
}

Result<PruneStats> Buffer::prune_to_size(std::int64_t target_bytes, std::int64_t keep_newest_raw,
                                         std::int64_t keep_newest_measurements) {
  PruneStats total;
  // Each round prunes a share of the raw log's seq range, the oldest first:
  // the share of the bytes above the target (and a margin: not every byte of
  // a pruned row comes back as a free page), doubled each round that falls short.
  double share = 0;
  for (int round = 0; round < 8; ++round) {
    auto used = used_bytes();
    if (!used) return used.error();
    if (*used <= target_bytes) break;
    const double needed = static_cast<double>(*used - target_bytes) / static_cast<double>(*used);
    share = std::min(1.0, std::max(share * 2, needed * 1.25 + 0.01));
    auto range = guarded([&]() -> Result<std::pair<std::int64_t, std::int64_t>> {
      auto statement = db_->prepare(sql::kRawSeqRange);
      statement.step();
      if (statement.column_is_null(0)) return std::pair<std::int64_t, std::int64_t>{0, 0};
      return std::pair{statement.column_int(0), statement.column_int(1)};
    });
    if (!range) return range.error();
    const auto [first, last] = *range;
    PruneScope scope;
    scope.keep_newest_raw = keep_newest_raw;
    scope.keep_newest_measurements = keep_newest_measurements;
    if (share < 1.0) {
      scope.through_seq =
          first + static_cast<std::int64_t>(share * static_cast<double>(last - first));
    }
    auto pruned = prune_synced(scope);
    if (!pruned) return pruned;
    total += *pruned;
    if (auto truncated = checkpoint_truncate(); !truncated) return truncated.error();
    if (share >= 1.0) break;  // everything prunable is gone
  }
  return total;
}

Result<std::int64_t> Buffer::redelivery_window(std::int64_t max_bytes) {
  return guarded([&]() -> Result<std::int64_t> {
    auto sizes = db_->prepare(sql::kNewestRawSizes);
    sizes.bind(1, kRedeliveryWindow);
    std::int64_t messages = 0;
    std::int64_t bytes = 0;
    while (sizes.step()) {
      bytes += sizes.column_int(0);
      if (bytes > max_bytes) break;
      ++messages;
    }
    return std::max<std::int64_t>(messages, 1);
  });
}

Status Buffer::record_clock_state(bool synchronized, std::int64_t since_ms, std::int64_t now_ms) {
  return guarded([&]() -> Status {
    auto& db = *db_;
    auto open = db.prepare(sql::kClockOpenPeriods);
    open.step();
    const bool is_open = open.column_int(0) > 0;
    open.reset();
    if (synchronized == !is_open) return Ok{};  // nothing changes
    sqlite::Transaction transaction(db);
    if (synchronized) {
      db.prepare(sql::kClockClosePeriod).bind(1, now_ms).run();
    } else {
      db.prepare(sql::kClockOpenPeriod).bind(1, since_ms).run();
    }
    transaction.commit();
    return Ok{};
  });
}

Status Buffer::put_uplink_state(const std::map<std::string, std::string>& values) {
  return guarded([&]() -> Status {
    sqlite::Transaction transaction(*db_);
    auto put = db_->prepare(sql::kPutMeta);
    for (const auto& [key, value] : values) {
      put.bind(1, std::string_view("uplink." + key)).bind(2, std::string_view(value)).run();
    }
    transaction.commit();
    return Ok{};
  });
}

Result<std::map<std::string, std::string>> Buffer::uplink_state() {
  return guarded([&]() -> Result<std::map<std::string, std::string>> {
    std::map<std::string, std::string> values;
    auto rows = db_->prepare(sql::kUplinkState);
    while (rows.step()) values[rows.column_text(0).substr(7)] = rows.column_text(1);
    return values;
  });
}

}  // namespace meter
