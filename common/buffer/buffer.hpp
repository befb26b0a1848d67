// The SQLite buffer: the append-only raw log, the normalized measurements and
// their sync state, in one database file (WAL). One Buffer is one connection;
// the daemon opens one for the acknowledge path and one for normalization.
// All SQL lives in sql.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/buffer/inbox.hpp"
#include "common/buffer/redelivery.hpp"
#include "common/config/config.hpp"
#include "common/model/flags.hpp"
#include "common/model/measurement.hpp"
#include "common/model/raw_message.hpp"
#include "common/model/sync.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/normalize/operator_event.hpp"
#include "common/util/result.hpp"

namespace meter {

namespace sqlite {
class Database;
}

// 2: the uplink's sync state; 3: status counts; 4: measurements.delta_from_ms;
// 5: local-only series (sql.hpp has each migration).
inline constexpr int kSchemaVersion = 6;

// How many raw messages before a redelivery (MQTT DUP) are searched for its
// original. Redeliveries follow a reconnect within the broker's in-flight
// window, which is far smaller.
inline constexpr std::int64_t kRedeliveryWindow = 50000;

// What one normalization pass did.
struct SeriesRevision;

struct NormalizeStats {
  std::int64_t messages = 0;          // raw messages processed
  std::int64_t new_measurements = 0;  // distinct events stored
  std::int64_t duplicates = 0;        // readings whose event was already stored
  std::int64_t revised = 0;           // stored measurements whose delta or flags changed
  std::int64_t decode_errors = 0;     // messages (or readings) that could not be decoded
  std::int64_t ignored = 0;           // non-readings and retained messages without a timestamp
  // Messages that gave no reading (ignored or a decode error), by
  // MappingConfig::label() ("" for a topic no mapping takes): a silently
  // ignored meter shows up here (/metrics).
  std::map<std::string, std::int64_t, std::less<>> no_reading_by_mapping;

  NormalizeStats& operator+=(const NormalizeStats& other);
};

struct BufferStatus {
  std::string path;
  std::string buffer_id;
  int schema_version = 0;
  std::int64_t raw_messages = 0;
  std::int64_t last_seq = 0;
  std::int64_t normalized_through_seq = 0;  // raw messages up to here are normalized
  std::int64_t decode_errors = 0;
  std::int64_t ignored = 0;
  std::int64_t duplicates = 0;
  std::int64_t series = 0;
  std::int64_t measurements = 0;
  std::int64_t unsynced =
      0;  // measurements whose current revision the central side has not confirmed
  std::optional<std::int64_t> oldest_unsynced_received_ms;
  std::map<std::string, std::int64_t> flag_counts;  // flag name -> measurements carrying it
  std::int64_t database_bytes = 0;
  std::int64_t wal_bytes = 0;
  // Acknowledged messages still in the inbox, not yet in the raw log (bytes).
  std::int64_t inbox_bytes = 0;
};

// What one move from the inbox into the raw log did.
struct AbsorbStats {
  std::int64_t messages = 0;
  std::int64_t bytes = 0;
  std::int64_t last_seq = 0;          // the raw log's newest seq after the move (0: none moved)
  InboxPosition position;             // how far the raw log has absorbed the inbox now
  std::vector<std::string> damaged;   // segments kept as `.damaged`, and why
  std::vector<std::string> problems;  // segments that could not be retired
};

struct PruneStats {
  std::int64_t measurements_deleted = 0;
  std::int64_t raw_deleted = 0;  // prune_synced only

  PruneStats& operator+=(const PruneStats& other) {
    measurements_deleted += other.measurements_deleted;
    raw_deleted += other.raw_deleted;
    return *this;
  }
};

// What Buffer::prune_synced may delete of the confirmed data: measurements
// stamped before `before_ms` and stored from raw messages up to `through_seq`;
// raw messages received before `before_ms`, up to `through_seq`, except the
// newest `keep_newest_raw` (the redelivery window).
struct PruneScope {
  std::int64_t before_ms = std::numeric_limits<std::int64_t>::max();
  std::int64_t through_seq = std::numeric_limits<std::int64_t>::max();
  std::int64_t keep_newest_raw = kRedeliveryWindow;
  // The newest measurements of each series that stay whatever their age:
  // the series rules may still revise them (keep_for_series_rules).
  std::int64_t keep_newest_measurements = 1;
};

// How many of a series' newest measurements pruning keeps for the series
// rules: the longest glitch window and the reading before it.
std::int64_t keep_for_series_rules(const Config& config);

// The anchor's timestamps as stored (series.anchor_history).
std::vector<std::int64_t> parse_anchor_history(std::string_view text);

// The operator events of the raw log (common/buffer/operator_events.cpp).
struct OperatorEventLog {
  std::vector<OperatorEvent> records;  // every readable one, in seq order
  std::vector<std::string> problems;   // "seq N: why" for a payload that cannot be read
};

// What recording an operator event did.
struct OperatorEventWrite {
  bool written = false;  // false: the latest record of its identity already says the same
  std::int64_t seq = 0;  // the new record's, or the one that already says it
};

// ---- The uplink's view (common/buffer/sync.cpp) ----
// How big one upload may get. Each array is bounded by `max_records`; the
// bytes (uncompressed JSON, estimated) are shared, half reserved for each.
struct SyncLimits {
  std::size_t max_records = 1000;
  std::size_t max_bytes = 4 * 1024 * 1024;
  // Measurements carrying any of these flags are left waiting, not selected
  // (what a central speaking an older protocol cannot accept).
  FlagSet held_flags = 0;
};

// What applying one response did.
struct SyncResult {
  std::int64_t raw_confirmed = 0;
  std::int64_t raw_rejected = 0;
  std::int64_t measurements_confirmed = 0;
  std::int64_t measurements_rejected = 0;
  std::int64_t missing = 0;  // no matching outcome: sent again later
};

// A record the central refused, with its reason.
struct Rejection {
  std::string kind;      // "raw" | "measurement"
  std::int64_t ref = 0;  // raw seq, or the measurement's row id
  std::int64_t revision = 0;
  std::string reason;
  std::string detail;
  std::int64_t rejected_ms = 0;
  bool requeued = false;  // released by `requeue`, waiting to be sent again
};

struct SyncStatus {
  std::int64_t raw_synced_through_seq = 0;
  std::int64_t raw_waiting = 0;           // normalized raw messages not yet confirmed
  std::int64_t measurements_waiting = 0;  // unsynced revisions, quarantined ones excluded
  std::optional<std::int64_t> oldest_waiting_received_ms;
  std::int64_t quarantined = 0;  // records refused by the central and not requeued
  std::int64_t requeued = 0;     // released by `requeue`, not yet confirmed
  std::map<std::string, std::int64_t> quarantined_by_reason;

  std::int64_t waiting() const { return raw_waiting + measurements_waiting; }
};

class Buffer {
 public:
  // Opens (creating if needed) and migrates the database. A database written
  // by a newer meter-agent is refused with the versions named.
  static Result<std::unique_ptr<Buffer>> open(const BufferConfig& config);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const std::string& buffer_id() const { return buffer_id_; }
  const std::string& path() const;

  // Appends many in one transaction (offline import); all or nothing.
  Result<std::int64_t> append_raw_batch(const std::vector<RawMessage>& messages);

  // Moves up to `max_messages` acknowledged messages from the inbox
  // (common/buffer/inbox.hpp) into the raw log, in one transaction that also stores
  // how far it got; then retires the segments read to their end. With
  // `writer_active` the newest segment may still grow (the daemon's writer).
  Result<AbsorbStats> absorb_inbox(std::size_t max_messages, bool writer_active);
  // How far the raw log has absorbed the inbox.
  Result<InboxPosition> inbox_position();

  // Normalizes up to `max_messages` raw messages not yet normalized, in one
  // transaction that also stores the progress.
  Result<NormalizeStats> normalize_pending(const Config& config, std::size_t max_messages);
  // normalize_pending until nothing is pending.
  Result<NormalizeStats> normalize_all(const Config& config);

  // Rebuilds every measurement from the raw log under `config`, in one
  // transaction. A measurement whose delta or flags come out different gets a
  // higher revision (so the uplink sends it again); an unchanged one keeps its
  // revision and sync state, a quarantine and its rejection included. Running
  // it twice changes nothing the second time.
  Result<NormalizeStats> renormalize(const Config& config);

  // Makes the series of metrics with a role (restart evidence) local only:
  // stored for the series rules, never uploaded as measurements, never
  // unsynced (their raw messages are uploaded as usual). Call it with every
  // config the buffer normalizes under, before normalizing (start, reload,
  // the offline commands); it writes only when the list changed. A series
  // whose metric lost its role is sent whole.
  Status set_local_only_metrics(const Config& config);

  // ---- Operator events (common/buffer/operator_events.cpp) ----
  // Appends `event` to the raw log (topic kOperatorTopic, qos 0) unless the
  // latest record of its identity already says the same (idempotent), in one
  // write transaction: safe beside the daemon (see the .cpp). A withdrawal
  // of an identity never recorded is an error.
  Result<OperatorEventWrite> record_operator_event(const OperatorEvent& event,
                                                   std::int64_t received_ms);
  Result<OperatorEventLog> operator_event_log();
  // The events in force for one series: the latest record of each identity,
  // withdrawn ones left out, by `at`.
  Result<std::vector<OperatorEvent>> operator_events(std::string_view device_id,
                                                     std::string_view metric_type);

  // Every measurement in export order: device_id, metric_type, timestamp, value.
  Status for_each_measurement(const std::function<void(const Measurement&)>& visit);
  Status for_each_raw_outcome(const std::function<void(const RawOutcome&)>& visit);
  // The newest `limit` outcomes of one kind, oldest first.
  Result<std::vector<RawOutcome>> latest_raw_outcomes(const std::string& kind, int limit);
  // The newest `recent` outcomes of one kind grouped by topic and reason, at
  // most `groups` of them, the group with the newest message first.
  Result<std::vector<RawOutcomeGroup>> recent_outcome_groups(const std::string& kind, int recent,
                                                             int groups);
  Result<BufferStatus> status();

  // Deletes measurements the central side has confirmed whose timestamp is
  // older than `cutoff_ms`, keeping the newest of each series. Each series
  // remembers its newest deleted reading (its anchor) so later deltas stay
  // exact; a reading at or before the anchor gets beyond_retention.
  Result<PruneStats> prune_measurements(std::int64_t cutoff_ms) {
    return prune_measurements(PruneScope{cutoff_ms});
  }
  // The same within `scope` (its before_ms and through_seq).
  Result<PruneStats> prune_measurements(const PruneScope& scope);

  // ---- The uplink (common/buffer/sync.cpp) ----
  // The next upload: normalized raw messages after the watermark (and the ones
  // `requeue` released), and measurements whose current revision is neither
  // confirmed nor quarantined, within `limits`. With `after` (a batch still in
  // flight ended there), only what comes after it, requeued ones excluded.
  Result<UplinkBatch> select_unsynced(const SyncLimits& limits,
                                      std::optional<SyncCursor> after = std::nullopt);
  // Records, in one transaction, exactly what a 200 response confirmed (per
  // record and revision) and what it rejected (quarantined with the reason).
  // The raw watermark moves only if the batch's run of raw events starts right
  // at it; responses may therefore be applied in any order, and one that
  // follows a failed batch still confirms its measurements (its raw events
  // are sent again: harmless).
  Result<SyncResult> apply_ingest_response(const UplinkBatch& batch, const IngestResponse& response,
                                           std::int64_t now_ms);
  Result<SyncStatus> sync_status();
  // How many measurements wait with one of `flags` (held: SyncLimits::held_flags).
  Result<std::int64_t> count_waiting_with_flags(FlagSet flags);
  // The newest `limit` rejections, newest first.
  Result<std::vector<Rejection>> latest_rejections(int limit);
  // Releases quarantined records (all, or those rejected for `reason`) to be
  // sent again; returns how many.
  Result<std::int64_t> requeue(const std::optional<std::string>& reason);
  // prune_measurements, then raw messages that are confirmed, normalized, not
  // quarantined, received before `cutoff_ms`, older than every raw message an
  // unsynced measurement came from, outside the redelivery window, and not the
  // newest. `keep_newest_raw`: raw messages kept whatever their state (the
  // redelivery window; smaller in tests).
  Result<PruneStats> prune_synced(std::int64_t cutoff_ms,
                                  std::int64_t keep_newest_raw = kRedeliveryWindow) {
    return prune_synced(
        PruneScope{cutoff_ms, std::numeric_limits<std::int64_t>::max(), keep_newest_raw});
  }
  Result<PruneStats> prune_synced(const PruneScope& scope);
  // For a disk budget: prunes confirmed data, the oldest stored first (by raw
  // seq, whatever its age), until used_bytes() is at most `target_bytes` or
  // nothing confirmed is left to prune. Unconfirmed data, the newest reading
  // of each series, quarantined raw messages and the newest `keep_newest_raw`
  // raw messages are kept. Truncates the WAL after pruning (it counts too).
  Result<PruneStats> prune_to_size(std::int64_t target_bytes, std::int64_t keep_newest_raw,
                                   std::int64_t keep_newest_measurements = 1);
  // How many of the newest raw messages the redelivery window keeps when it
  // may hold at most `max_bytes` of topics and payloads (and kRedeliveryWindow
  // messages): with a small disk budget and big payloads, fewer.
  Result<std::int64_t> redelivery_window(std::int64_t max_bytes);
  // Bytes the data takes: pages in use plus the WAL (what the disk budget
  // counts; pruning lowers it although the file keeps its size).
  Result<std::int64_t> used_bytes();
  // Clock trust: records whether the gateway clock is known to be
  // synchronized. A reading later normalized with a receive time between
  // `since_ms` (the last time it was known good) and the time it was seen
  // synchronized again gets clock_unsynced.
  Status record_clock_state(bool synchronized, std::int64_t since_ms, std::int64_t now_ms);

  // The uplink's last success, error and the like, kept for `status` (meta
  // keys "uplink.<name>"), written in one transaction.
  Status put_uplink_state(const std::map<std::string, std::string>& values);
  Result<std::map<std::string, std::string>> uplink_state();

  Status checkpoint();
  // A checkpoint that also truncates the WAL file to nothing (after a plain
  // one the file keeps its largest size, which the disk budget counts). Waits
  // for readers and writers on other connections like a write does; false if
  // they kept it from completing.
  Result<bool> checkpoint_truncate();

  // SQLite's max_page_count caps the database size: the daemon's test seam
  // for a full disk (a write beyond it fails with SQLITE_FULL).
  Status set_max_page_count(std::int64_t pages);
  // The page cache's size. Normalization sets 16 MiB for its batches; the
  // daemon shrinks it when idle (SQLite frees the pages above it).
  Status set_cache_kib(std::int64_t kib);

 private:
  struct Statements;
  struct CachedSeries;
  Buffer();

  Status migrate();
  Status load_identity();
  // Adds one message to the raw log (in the caller's transaction, or on its
  // own); returns its seq.
  std::int64_t insert_raw(const RawMessage& message);
  NormalizeStats normalize_batch(const Config& config, std::size_t max_messages);
  NormalizeStats normalize_batch_in_transaction(const Config& config, std::size_t max_messages);
  void normalize_message(const Config& config, std::int64_t seq, const RawMessage& message,
                         std::int64_t received_ms, NormalizeStats& stats);
  bool store_reading(const Config& config, const MetricConfig& metric, const Reading& reading,
                     std::int64_t raw_seq, NormalizeStats& stats);
  CachedSeries& cached_series(const Reading& reading);
  // The cached series, or nullptr when the buffer has none with this name.
  CachedSeries* existing_series(const std::string& device_id, const std::string& metric_type);
  // The series rules' boundaries (docs/QUALITY.md): the operator's
  // replacements of the series and its device's restarts.
  void load_boundaries(const Config& config, CachedSeries& series);
  // The instants a device restarted, from its restart-evidence series.
  const std::vector<std::int64_t>& device_restarts(const Config& config,
                                                   const std::string& device_id);
  std::vector<std::int64_t> read_device_restarts(const Config& config,
                                                 const std::string& device_id);
  // Judges a series again from `from_ms` with its boundaries reloaded.
  void rejudge_series(const Config& config, CachedSeries& series, std::int64_t from_ms,
                      NormalizeStats& stats);
  void apply_revisions(const std::vector<SeriesRevision>& revisions, NormalizeStats& stats);
  void normalize_operator_event(const Config& config, std::int64_t seq, const RawMessage& message,
                                NormalizeStats& stats);
  void record_outcome(std::int64_t seq, const char* kind, const std::string& reason);
  // The receive time a raw message's readings take: its own, or for a
  // redelivery the original's. Adds the message to the redelivery index.
  std::int64_t effective_received_ms(std::int64_t seq, const RawMessage& message);
  void load_redelivery_index(std::int64_t through_seq);
  // Inside a write transaction: clears the series cache if another connection
  // changed the series since it was built.
  void check_series_cache();
  // Inside a write transaction that changes measurements or series.
  void bump_generation();

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<Statements> statements_;
  std::unordered_map<std::string, std::unique_ptr<CachedSeries>> series_;
  // device_id -> restart instants (device_restarts), cached with series_.
  std::unordered_map<std::string, std::vector<std::int64_t>> device_restarts_;
  std::string buffer_id_;
  // The generation this connection's series cache was built at (see
  // kBumpGeneration); another connection's commit makes it stale.
  std::int64_t cache_generation_ = -1;
  bool tuned_for_normalization_ = false;
  std::int64_t wal_autocheckpoint_pages_ = 10000;  // 1 KiB pages
  void tune_for_normalization();
  RedeliveryIndex redeliveries_{kRedeliveryWindow};
  // Clock-unsynced periods (from, to], loaded for each normalization batch.
  std::vector<std::pair<std::int64_t, std::int64_t>> clock_unsynced_;
};

}  // namespace meter
