// Every SQL statement of the buffer, in one place. Statements are prepared once
// per connection (buffer.cpp). The schema is versioned with PRAGMA user_version
// and only ever migrated forward.
#pragma once

namespace meter::sql {

// Pages of 1 KiB: a per-message commit writes at least one page to the WAL, so
// smaller pages mean fewer bytes written per acknowledged message (measured in
// docs/BENCHMARKS.md). Only takes effect before the first table exists.
inline constexpr const char* kCreatePragmas = "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;";

// Connection settings (Buffer::tune_for_normalization, set_max_page_count); the
// number is appended.
inline constexpr const char* kSetWalAutocheckpoint = "PRAGMA wal_autocheckpoint = ";
inline constexpr const char* kSetMaxPageCount = "PRAGMA max_page_count = ";
// Buffer::checkpoint, and checkpoint_truncate (which also empties the WAL file:
// it keeps its largest size otherwise, and the disk budget counts it).
inline constexpr const char* kCheckpoint = "PRAGMA wal_checkpoint(PASSIVE)";
inline constexpr const char* kCheckpointTruncate = "PRAGMA wal_checkpoint(TRUNCATE)";
// Buffer::used_bytes: pages in use (deleted rows free pages for reuse; the
// file does not shrink).
inline constexpr const char* kUsedBytes =
    "SELECT (SELECT page_count FROM pragma_page_count()) - "
    "(SELECT freelist_count FROM pragma_freelist_count()), "
    "(SELECT page_size FROM pragma_page_size())";
// Buffer::set_cache_kib: the page cache's size in KiB (negative: KiB, not pages).
inline constexpr const char* kSetCacheKib = "PRAGMA cache_size = -";

// The connection that normalizes: a 16 MiB page cache (a batch touches about
// one index leaf per series) and checkpoints every 10,000 pages.
inline constexpr const char* kTuneForNormalization =
    "PRAGMA cache_size = -16384;";  // and wal_autocheckpoint (Buffer::tune_for_normalization)

// Schema version 1.
//
// raw_messages: append-only; a row is never updated. seq is the rowid; it is
// never reused because pruning never deletes the newest row (docs/ARCHITECTURE.md).
// series: one row per (device_id, metric_type); anchor_* is the newest reading
// pruned away, so deltas after it stay exact.
// measurements: one row per distinct event. Identity is (series_id,
// timestamp_ms, value), which is exactly what event_id hashes, so dedup needs
// no index on the random event_id; that index also serves the series order.
inline constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE raw_messages (
  seq         INTEGER PRIMARY KEY,
  received_ms INTEGER NOT NULL,
  topic       TEXT NOT NULL,
  payload     BLOB NOT NULL,
  qos         INTEGER NOT NULL,
  retained    INTEGER NOT NULL,
  dup         INTEGER NOT NULL
);
CREATE TABLE raw_outcomes (
  seq    INTEGER PRIMARY KEY,
  kind   TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE series (
  id           INTEGER PRIMARY KEY,
  device_id    TEXT NOT NULL,
  metric_type  TEXT NOT NULL,
  unit         TEXT NOT NULL,
  anchor_ts    INTEGER,
  anchor_value TEXT,
  UNIQUE (device_id, metric_type)
);
CREATE TABLE measurements (
  id                INTEGER PRIMARY KEY,
  series_id         INTEGER NOT NULL REFERENCES series(id),
  timestamp_ms      INTEGER NOT NULL,
  value             TEXT NOT NULL,
  event_id          BLOB NOT NULL,
  delta             TEXT,
  flags             INTEGER NOT NULL,
  revision          INTEGER NOT NULL,
  synced_revision   INTEGER NOT NULL DEFAULT 0,
  raw_seq           INTEGER NOT NULL,
  first_received_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX measurements_identity ON measurements (series_id, timestamp_ms, value);
CREATE INDEX measurements_unsynced ON measurements (id) WHERE synced_revision < revision;
INSERT INTO counters (name, value) VALUES
  ('normalized_through_seq', 0), ('duplicates', 0), ('generation', 0);
)sql";

inline constexpr const char* kGetUserVersion = "PRAGMA user_version";
inline constexpr const char* kGetMeta = "SELECT value FROM meta WHERE key = ?1";
inline constexpr const char* kPutMeta = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)";
inline constexpr const char* kGetCounter = "SELECT value FROM counters WHERE name = ?1";
inline constexpr const char* kAddCounter = "UPDATE counters SET value = value + ?2 WHERE name = ?1";
inline constexpr const char* kSetCounter = "UPDATE counters SET value = ?2 WHERE name = ?1";
// Counters added after schema version 1 (inbox_segment, inbox_offset: how far
// the raw log has absorbed the inbox) are created on first write.
inline constexpr const char* kPutCounter =
    "INSERT INTO counters (name, value) VALUES (?1, ?2) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value";
// Every transaction that changes measurements or series bumps the generation,
// so a connection can tell whether its in-memory series cache is still true.
inline constexpr const char* kBumpGeneration =
    "INSERT INTO counters (name, value) VALUES ('generation', 1) "
    "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value";

inline constexpr const char* kAppendRaw =
    "INSERT INTO raw_messages (received_ms, topic, payload, qos, retained, dup) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
inline constexpr const char* kRawAfter =
    "SELECT seq, received_ms, topic, payload, qos, retained, dup FROM raw_messages "
    "WHERE seq > ?1 ORDER BY seq LIMIT ?2";
// The redelivery index (common/buffer/redelivery.hpp) is loaded from the raw log's
// tail and confirms a candidate's content by seq.
inline constexpr const char* kRawContentRange =
    "SELECT seq, received_ms, topic, payload, qos, dup FROM raw_messages "
    "WHERE seq > ?1 AND seq <= ?2 ORDER BY seq";
inline constexpr const char* kRawContent =
    "SELECT topic, payload, qos FROM raw_messages WHERE seq = ?1";
inline constexpr const char* kRecordOutcome =
    "INSERT OR REPLACE INTO raw_outcomes (seq, kind, reason) VALUES (?1, ?2, ?3)";

// One series' readings in series order, by name (restart evidence).
inline constexpr const char* kSeriesReadings =
    "SELECT m.timestamp_ms, m.value FROM measurements m JOIN series s ON s.id = m.series_id "
    "WHERE s.device_id = ?1 AND s.metric_type = ?2 ORDER BY m.timestamp_ms, m.id";
// The devices whose id extends ?1 with '/': every id in ['D/', 'D0') ('0' follows
// '/' in byte order), found through the series' UNIQUE (device_id, metric_type).
inline constexpr const char* kComponentDevices =
    "SELECT DISTINCT device_id FROM series WHERE device_id >= ?1 || '/' AND device_id < ?1 || '0' "
    "ORDER BY device_id";
inline constexpr const char* kFindSeries =
    "SELECT id, unit, anchor_ts, anchor_value, anchor_good_ts, anchor_good_value, anchor_history "
    "FROM series WHERE device_id = ?1 AND metric_type = ?2";
// A series of a metric with a role (restart evidence) is local only from its
// first row on (schema version 5, kMigrateV5).
inline constexpr const char* kInsertSeries =
    "INSERT INTO series (device_id, metric_type, unit, local_only) VALUES (?1, ?2, ?3, "
    "EXISTS (SELECT 1 FROM local_only_metrics WHERE metric_type = ?2))";
inline constexpr const char* kSeriesTailTimestamp =
    "SELECT max(timestamp_ms) FROM measurements WHERE series_id = ?1";
// The ?3 nearest rows of a series before / after a timestamp, nearest first
// (StoredNeighbourhood completes the farthest timestamp's group).
inline constexpr const char* kMeasurementsBefore =
    "SELECT id, value, delta, flags, first_received_ms, delta_from_ms, timestamp_ms "
    "FROM measurements WHERE series_id = ?1 AND timestamp_ms < ?2 "
    "ORDER BY timestamp_ms DESC LIMIT ?3";
inline constexpr const char* kMeasurementsAfter =
    "SELECT id, value, delta, flags, first_received_ms, delta_from_ms, timestamp_ms "
    "FROM measurements WHERE series_id = ?1 AND timestamp_ms > ?2 "
    "ORDER BY timestamp_ms ASC LIMIT ?3";
inline constexpr const char* kMeasurementsAt =
    "SELECT id, value, delta, flags, first_received_ms, delta_from_ms FROM measurements "
    "WHERE series_id = ?1 AND timestamp_ms = ?2";
// ?9 / ?6: delta_from_ms (schema version 4), the series engine's. A
// measurement of a local-only series (schema version 5) is born, and stays,
// with nothing to send: synced_revision = revision, so it never waits in the
// unsynced index, never counts as unsynced and prunes like a confirmed one.
// The series' row is one lookup by primary key inside the same statement.
inline constexpr const char* kInsertMeasurement =
    "INSERT INTO measurements (series_id, timestamp_ms, value, event_id, delta, flags, revision, "
    "synced_revision, raw_seq, first_received_ms, delta_from_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
    "1, (SELECT local_only FROM series WHERE id = ?1), ?7, ?8, ?9)";
inline constexpr const char* kReviseMeasurement =
    "UPDATE measurements SET delta = ?2, flags = ?3, first_received_ms = ?4, "
    "revision = revision + ?5, delta_from_ms = ?6, "
    "synced_revision = CASE WHEN (SELECT local_only FROM series WHERE id = measurements.series_id) "
    "THEN revision + ?5 ELSE synced_revision END WHERE id = ?1";

inline constexpr const char* kExportMeasurements =
    "SELECT s.device_id, s.metric_type, s.unit, m.timestamp_ms, m.value, m.event_id, m.delta, "
    "m.flags, m.revision, m.synced_revision, m.raw_seq, m.first_received_ms, m.delta_from_ms "
    "FROM series s JOIN measurements m ON m.series_id = s.id "
    "ORDER BY s.device_id, s.metric_type, m.timestamp_ms";
inline constexpr const char* kRawOutcomes =
    "SELECT seq, kind, reason FROM raw_outcomes ORDER BY seq";
inline constexpr const char* kLatestRawOutcomes =
    "SELECT seq, kind, reason FROM raw_outcomes WHERE kind = ?1 ORDER BY seq DESC LIMIT ?2";
// The newest ?2 outcomes of kind ?1, grouped by topic and reason, newest group first.
inline constexpr const char* kRecentOutcomeGroups =
    "SELECT r.topic, o.reason, count(*), max(o.seq) FROM "
    "(SELECT seq, reason FROM raw_outcomes WHERE kind = ?1 ORDER BY seq DESC LIMIT ?2) o "
    "JOIN raw_messages r ON r.seq = o.seq GROUP BY r.topic, o.reason ORDER BY max(o.seq) DESC "
    "LIMIT ?3";

// Renormalize: keep the old rows aside, rebuild, then carry revisions and sync
// state over by identity. The rebuild numbers rows afresh, so the rejections of
// measurements (ref = measurements.id) are kept aside with their row's identity
// too.
inline constexpr const char* kRenormalizeBegin = R"sql(
CREATE TEMP TABLE previous_measurements AS
  SELECT series_id, timestamp_ms, value, delta, flags, revision, synced_revision,
         quarantined_revision, delta_from_ms FROM measurements;
CREATE UNIQUE INDEX temp.previous_identity ON previous_measurements (series_id, timestamp_ms, value);
CREATE TEMP TABLE previous_rejected AS
  SELECT r.ref AS old_id, m.series_id, m.timestamp_ms, m.value
  FROM rejections r JOIN measurements m ON m.id = r.ref WHERE r.kind = 'measurement';
DELETE FROM measurements;
DELETE FROM raw_outcomes;
UPDATE series SET unit = '';
UPDATE counters SET value = 0 WHERE name IN ('normalized_through_seq', 'duplicates');
)sql";
// Unchanged content keeps its revision and sync state (confirmed or
// quarantined); changed content goes one revision above what was there (so it
// is sent again, as a new revision is after a rejection).
//
// Each rejection of a measurement is moved to the row id its measurement has
// now: first to the id negated, so that no two rejections share (kind, ref)
// while some are moved and others not yet (row ids are positive); a rejection
// whose measurement no longer exists (its value changed with the config) goes,
// since nothing is left for it to hold back or for requeue to release.
inline constexpr const char* kRenormalizeCarryOver = R"sql(
UPDATE measurements SET
  revision = CASE
    WHEN p.delta IS measurements.delta AND p.flags = measurements.flags
      AND p.delta_from_ms IS measurements.delta_from_ms THEN p.revision
    ELSE p.revision + 1 END,
  synced_revision = p.synced_revision,
  quarantined_revision = p.quarantined_revision
FROM previous_measurements AS p
WHERE p.series_id = measurements.series_id AND p.timestamp_ms = measurements.timestamp_ms
  AND p.value = measurements.value;
UPDATE rejections SET ref = -m.id
FROM previous_rejected AS p
  JOIN measurements AS m ON m.series_id = p.series_id AND m.timestamp_ms = p.timestamp_ms
    AND m.value = p.value
WHERE rejections.kind = 'measurement' AND rejections.ref = p.old_id;
DELETE FROM rejections WHERE kind = 'measurement' AND ref > 0;
UPDATE rejections SET ref = -ref WHERE kind = 'measurement';
DROP TABLE temp.previous_measurements;
DROP TABLE temp.previous_rejected;
UPDATE measurements SET synced_revision = revision
WHERE synced_revision < revision AND series_id IN (SELECT id FROM series WHERE local_only = 1);
)sql";
inline constexpr const char* kUpdateSeriesUnit = "UPDATE series SET unit = ?2 WHERE id = ?1";

// Prune: per series, synced rows stamped before ?1 and stored from raw
// messages up to seq ?2, except the newest ?3 + 1 rows (the series rules may
// still revise them: keep_for_series_rules). Two forms of one query: by age
// alone (?2 unbounded: every row is looked at, as a table scan, the cheapest
// way to), and for a disk budget (?2 bounds it: the index measurements_raw_seq
// reads only the rows of the oldest raw messages, not every measurement each
// round; docs/BENCHMARKS.md).
inline constexpr const char* kPruneCandidates = R"sql(
SELECT m.id, m.series_id, m.timestamp_ms, m.value, m.flags FROM measurements m NOT INDEXED
WHERE m.timestamp_ms < ?1 AND m.raw_seq <= ?2 AND m.synced_revision >= m.revision
  AND m.timestamp_ms < (SELECT t.timestamp_ms FROM measurements t WHERE t.series_id = m.series_id
                        ORDER BY t.timestamp_ms DESC LIMIT 1 OFFSET ?3)
)sql";
inline constexpr const char* kPruneCandidatesThroughSeq = R"sql(
SELECT m.id, m.series_id, m.timestamp_ms, m.value, m.flags FROM measurements m
  INDEXED BY measurements_raw_seq
WHERE m.raw_seq <= ?2 AND m.timestamp_ms < ?1 AND m.synced_revision >= m.revision
  AND m.timestamp_ms < (SELECT t.timestamp_ms FROM measurements t WHERE t.series_id = m.series_id
                        ORDER BY t.timestamp_ms DESC LIMIT 1 OFFSET ?3)
)sql";
// The index kPruneCandidatesThroughSeq reads. Made when a buffer opens if it
// is missing (an index only: no schema version of its own, no data moved).
inline constexpr const char* kHasRawSeqIndex =
    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'measurements_raw_seq'";
inline constexpr const char* kCreateRawSeqIndex =
    "CREATE INDEX IF NOT EXISTS measurements_raw_seq ON measurements (raw_seq)";
inline constexpr const char* kDeleteMeasurement = "DELETE FROM measurements WHERE id = ?1";
inline constexpr const char* kGetAnchor =
    "SELECT anchor_ts, anchor_value, anchor_good_ts, anchor_good_value, anchor_history "
    "FROM series WHERE id = ?1";
inline constexpr const char* kSetAnchor =
    "UPDATE series SET anchor_ts = ?2, anchor_value = ?3, anchor_good_ts = ?4, "
    "anchor_good_value = ?5, anchor_history = ?6 WHERE id = ?1";

// Schema version 6: the series rules' state where the kept readings begin
// (docs/QUALITY.md): the last good reading pruned (anchor_good_*) and the
// timestamps before it the gap rule learns from (anchor_history, decimal
// milliseconds joined by ','). Pruning sets them with the anchor; renormalize
// keeps them, so the oldest kept reading keeps its delta.
inline constexpr const char* kMigrateV6 = R"sql(
ALTER TABLE series ADD COLUMN anchor_good_ts INTEGER;
ALTER TABLE series ADD COLUMN anchor_good_value TEXT;
ALTER TABLE series ADD COLUMN anchor_history TEXT;
)sql";

// Schema version 4: the timestamp of the reading a delta is measured from (the
// series' last good reading; NULL when the delta is), uploaded as delta_from
// (protocol version 2) and carried in revisions like delta and flags.
inline constexpr const char* kMigrateV4 =
    "ALTER TABLE measurements ADD COLUMN delta_from_ms INTEGER";

// Schema version 5: series the central never receives as measurements (the
// readings of a metric with a role, restart evidence the series rules use;
// their raw messages are uploaded as usual). local_only_metrics is the
// config's list of such metrics (Buffer::set_local_only_metrics); a new series
// takes its local_only from it (kInsertSeries), and its measurements are kept
// with synced_revision = revision (kInsertMeasurement).
inline constexpr const char* kMigrateV5 = R"sql(
ALTER TABLE series ADD COLUMN local_only INTEGER NOT NULL DEFAULT 0;
CREATE TABLE local_only_metrics (
  metric_type TEXT PRIMARY KEY
) WITHOUT ROWID;
)sql";
// The operator events (common/normalize/operator_event.hpp) are raw messages
// of one reserved topic; this partial index finds them without scanning the
// raw log (it costs an insert only the comparison). Made when a buffer opens
// if it is missing: an index only, no schema version of its own, no data moved.
inline constexpr const char* kHasOperatorIndex =
    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'raw_messages_operator'";
inline constexpr const char* kCreateOperatorIndex =
    "CREATE INDEX IF NOT EXISTS raw_messages_operator ON raw_messages (seq) "
    "WHERE topic = '$meter-agent/operator'";
// The WHERE repeats the index's condition word for word (with a parameter
// SQLite could not use the partial index).
inline constexpr const char* kOperatorEvents =
    "SELECT seq, payload FROM raw_messages WHERE topic = '$meter-agent/operator' ORDER BY seq";

inline constexpr const char* kLocalOnlyMetrics = "SELECT metric_type FROM local_only_metrics";
inline constexpr const char* kClearLocalOnlyMetrics = "DELETE FROM local_only_metrics";
inline constexpr const char* kAddLocalOnlyMetric =
    "INSERT OR IGNORE INTO local_only_metrics (metric_type) VALUES (?1)";
// After the list changed: series that are no longer local only send their
// measurements (all of them: the central deduplicates what it has), then every
// series takes its state from the list, then the local-only series have
// nothing to send.
inline constexpr const char* kApplyLocalOnlyMetrics = R"sql(
UPDATE measurements SET synced_revision = 0 WHERE series_id IN
  (SELECT id FROM series WHERE local_only = 1
     AND metric_type NOT IN (SELECT metric_type FROM local_only_metrics));
UPDATE series SET local_only = (metric_type IN (SELECT metric_type FROM local_only_metrics))
WHERE local_only <> (metric_type IN (SELECT metric_type FROM local_only_metrics));
UPDATE measurements SET synced_revision = revision
WHERE synced_revision < revision AND series_id IN (SELECT id FROM series WHERE local_only = 1);
)sql";

// Status reads counts the triggers of schema version 3 keep (kMigrateV3): a
// status must not scan tables of millions of rows (the daemon refreshes it for
// /metrics while it works).
inline constexpr const char* kCountRaw =
    "SELECT coalesce((SELECT value FROM counters WHERE name = 'raw_messages'), 0), "
    "coalesce((SELECT max(seq) FROM raw_messages), 0)";
inline constexpr const char* kCountOutcomes =
    "SELECT kind, count(*) FROM raw_outcomes GROUP BY kind";
inline constexpr const char* kCountSeries = "SELECT count(*) FROM series";
inline constexpr const char* kCountByFlags =
    "SELECT flags, measurements FROM flag_counts WHERE measurements > 0";
// The count, and the receive time of the unsynced measurement stored first
// (through the partial index: no scan).
inline constexpr const char* kUnsyncedSummary =
    "SELECT coalesce((SELECT value FROM counters WHERE name = 'unsynced'), 0), "
    "(SELECT first_received_ms FROM measurements WHERE synced_revision < revision "
    "ORDER BY id LIMIT 1)";

// Schema version 3: the counts a status shows, kept by triggers in the same
// transaction as every change (whichever code path makes it), filled once
// from the tables here.
inline constexpr const char* kMigrateV3 = R"sql(
CREATE TABLE flag_counts (
  flags        INTEGER PRIMARY KEY,
  measurements INTEGER NOT NULL
);
INSERT INTO flag_counts (flags, measurements) SELECT flags, count(*) FROM measurements GROUP BY flags;
INSERT OR REPLACE INTO counters (name, value) SELECT 'raw_messages', count(*) FROM raw_messages;
INSERT OR REPLACE INTO counters (name, value)
  SELECT 'unsynced', count(*) FROM measurements WHERE synced_revision < revision;
CREATE TRIGGER raw_messages_counted_in AFTER INSERT ON raw_messages BEGIN
  UPDATE counters SET value = value + 1 WHERE name = 'raw_messages';
END;
CREATE TRIGGER raw_messages_counted_out AFTER DELETE ON raw_messages BEGIN
  UPDATE counters SET value = value - 1 WHERE name = 'raw_messages';
END;
CREATE TRIGGER measurements_counted_in AFTER INSERT ON measurements BEGIN
  INSERT OR IGNORE INTO flag_counts (flags, measurements) VALUES (new.flags, 0);
  UPDATE flag_counts SET measurements = measurements + 1 WHERE flags = new.flags;
  UPDATE counters SET value = value + (new.synced_revision < new.revision) WHERE name = 'unsynced';
END;
CREATE TRIGGER measurements_counted_out AFTER DELETE ON measurements BEGIN
  UPDATE flag_counts SET measurements = measurements - 1 WHERE flags = old.flags;
  UPDATE counters SET value = value - (old.synced_revision < old.revision) WHERE name = 'unsynced';
END;
CREATE TRIGGER measurements_flags_counted AFTER UPDATE OF flags ON measurements
WHEN old.flags <> new.flags BEGIN
  UPDATE flag_counts SET measurements = measurements - 1 WHERE flags = old.flags;
  INSERT OR IGNORE INTO flag_counts (flags, measurements) VALUES (new.flags, 0);
  UPDATE flag_counts SET measurements = measurements + 1 WHERE flags = new.flags;
END;
CREATE TRIGGER measurements_sync_counted AFTER UPDATE OF revision, synced_revision ON measurements
WHEN (old.synced_revision < old.revision) <> (new.synced_revision < new.revision) BEGIN
  UPDATE counters
     SET value = value + (new.synced_revision < new.revision) - (old.synced_revision < old.revision)
   WHERE name = 'unsynced';
END;
)sql";

}  // namespace meter::sql

// ---- The uplink's sync state (common/buffer/sync.cpp) ----------------------
namespace meter::sql {

// Schema version 2: what the central side confirmed and refused.
//
// Raw messages stay append-only: the uplink sends them in seq order, so their
// sync state is one watermark, counters.raw_synced_through_seq (every seq at
// or below it was confirmed or quarantined). measurements.quarantined_revision
// is the highest revision the central rejected; a rejected record is not sent
// again until `requeue` (or a new revision). rejections keeps the central's
// reason for every quarantined record (kind 'raw': ref is the seq; kind
// 'measurement': ref is measurements.id).
inline constexpr const char* kMigrateV2 = R"sql(
ALTER TABLE measurements ADD COLUMN quarantined_revision INTEGER NOT NULL DEFAULT 0;
CREATE TABLE rejections (
  kind        TEXT NOT NULL,
  ref         INTEGER NOT NULL,
  revision    INTEGER NOT NULL,
  reason      TEXT NOT NULL,
  detail      TEXT NOT NULL,
  rejected_ms INTEGER NOT NULL,
  requeued    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (kind, ref)
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('raw_synced_through_seq', 0);
CREATE TABLE clock_unsynced (
  from_ms INTEGER NOT NULL,
  to_ms   INTEGER
);
)sql";

// Clock trust: periods (gateway clock, ms) during which the gateway clock was
// not known to be synchronized; to_ms NULL while it still is not. A reading
// stamped with the receive time inside one gets clock_unsynced.
inline constexpr const char* kClockOpenPeriods =
    "SELECT count(*) FROM clock_unsynced WHERE to_ms IS NULL";
inline constexpr const char* kClockOpenPeriod =
    "INSERT INTO clock_unsynced (from_ms, to_ms) VALUES (?1, NULL)";
inline constexpr const char* kClockClosePeriod =
    "UPDATE clock_unsynced SET to_ms = max(from_ms, ?1) WHERE to_ms IS NULL";
inline constexpr const char* kClockPeriods =
    "SELECT from_ms, coalesce(to_ms, 9223372036854775807) FROM clock_unsynced";

// Raw messages after the watermark that the normalizer has finished with (so
// their decode outcome is known), in seq order.
inline constexpr const char* kSyncRawAfter =
    "SELECT r.seq, r.received_ms, r.topic, r.payload, r.qos, r.retained, r.dup, o.kind, o.reason "
    "FROM raw_messages r LEFT JOIN raw_outcomes o ON o.seq = r.seq "
    "WHERE r.seq > ?1 AND r.seq <= ?2 ORDER BY r.seq LIMIT ?3";
// Quarantined raw messages that `requeue` released.
inline constexpr const char* kSyncRawRequeued =
    "SELECT r.seq, r.received_ms, r.topic, r.payload, r.qos, r.retained, r.dup, o.kind, o.reason "
    "FROM rejections q JOIN raw_messages r ON r.seq = q.ref "
    "LEFT JOIN raw_outcomes o ON o.seq = r.seq "
    "WHERE q.kind = 'raw' AND q.requeued = 1 ORDER BY r.seq LIMIT ?1";
// Measurements whose current revision is neither confirmed nor refused (the
// partial index measurements_unsynced serves this: its condition is part of
// the WHERE).
inline constexpr const char* kSyncMeasurements =
    "SELECT m.id, s.device_id, s.metric_type, s.unit, m.timestamp_ms, m.value, m.event_id, "
    "m.delta, m.flags, m.revision, m.raw_seq, m.first_received_ms, m.delta_from_ms "
    "FROM measurements m JOIN series s ON s.id = m.series_id "
    "WHERE m.synced_revision < m.revision AND m.quarantined_revision < m.revision "
    "AND s.local_only = 0 AND (m.flags & ?3) = 0 AND m.id > ?1 ORDER BY m.id LIMIT ?2";
// Measurements waiting that carry one of the flags ?1 (held while the central
// speaks protocol version 1).
inline constexpr const char* kSyncMeasurementsHeld =
    "SELECT count(*) FROM measurements "
    "WHERE synced_revision < revision AND quarantined_revision < revision AND (flags & ?1) <> 0";
// Only upward, and never beyond the revision the row has (a revision raised
// while the batch was in flight stays unsynced). The event_id guards against a
// row id that renormalize gave to another measurement meanwhile.
inline constexpr const char* kSyncMarkMeasurement =
    "UPDATE measurements SET synced_revision = max(synced_revision, ?2) "
    "WHERE id = ?1 AND ?2 <= revision AND event_id = ?3";
inline constexpr const char* kSyncQuarantineMeasurement =
    "UPDATE measurements SET quarantined_revision = max(quarantined_revision, ?2) "
    "WHERE id = ?1 AND ?2 <= revision AND event_id = ?3";
// A late answer rejecting an older revision than the one already rejected
// leaves the newer rejection as it is (else a confirmation of that older
// revision would then clear it, leaving the newer one quarantined with no
// rejection that `status` shows or `requeue` releases).
inline constexpr const char* kSyncRecordRejection =
    "INSERT INTO rejections (kind, ref, revision, reason, detail, rejected_ms, requeued) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0) "
    "ON CONFLICT (kind, ref) DO UPDATE SET revision = excluded.revision, "
    "reason = excluded.reason, detail = excluded.detail, rejected_ms = excluded.rejected_ms, "
    "requeued = 0 WHERE excluded.revision >= rejections.revision";
// A confirmation clears a rejection of the same or an older revision (raw: 0).
inline constexpr const char* kSyncClearRejection =
    "DELETE FROM rejections WHERE kind = ?1 AND ref = ?2 AND revision <= ?3";
inline constexpr const char* kSyncSetRawWatermark =
    "UPDATE counters SET value = max(value, ?1) WHERE name = 'raw_synced_through_seq'";

// Status: what waits, what is quarantined.
inline constexpr const char* kSyncRawWaiting =
    "SELECT count(*) FROM raw_messages WHERE seq > ?1 AND seq <= ?2";
inline constexpr const char* kSyncOldestRawWaiting =
    "SELECT received_ms FROM raw_messages WHERE seq > ?1 ORDER BY seq LIMIT 1";
inline constexpr const char* kSyncMeasurementsWaiting =
    "SELECT count(*), min(first_received_ms) FROM measurements "
    "WHERE synced_revision < revision AND quarantined_revision < revision";
inline constexpr const char* kSyncRejectionCounts =
    "SELECT kind, reason, requeued, count(*) FROM rejections GROUP BY kind, reason, requeued";
inline constexpr const char* kSyncLatestRejections =
    "SELECT kind, ref, revision, reason, detail, rejected_ms, requeued FROM rejections "
    "ORDER BY rejected_ms DESC, kind, ref LIMIT ?1";

// requeue: release quarantined records (all, or those with one reason).
inline constexpr const char* kRequeueMeasurements =
    "UPDATE measurements SET quarantined_revision = 0 WHERE id IN "
    "(SELECT ref FROM rejections WHERE kind = 'measurement' AND requeued = 0 "
    "AND (?1 IS NULL OR reason = ?1))";
inline constexpr const char* kRequeueRejections =
    "UPDATE rejections SET requeued = 1 WHERE requeued = 0 AND (?1 IS NULL OR reason = ?1)";

// Pruning raw messages: confirmed (at or below the watermark), normalized, not
// quarantined, older than the cutoff, below the first raw message an unsynced
// measurement waiting for the central came from (so renormalize can still
// rebuild every unsynced measurement), not the raw message of a quarantined
// measurement, and never the newest row (seq must not be reused). A
// quarantined measurement keeps its own raw message only: it may wait for
// `requeue` for ever, and must not hold back the pruning of everything after
// it (under a disk budget that stopped the acknowledgements for good).
inline constexpr const char* kSyncMinUnsyncedRawSeq =
    "SELECT min(raw_seq) FROM measurements "
    "WHERE synced_revision < revision AND quarantined_revision < revision";
inline constexpr const char* kSyncPruneRaw = R"sql(
DELETE FROM raw_messages
WHERE seq <= ?1 AND received_ms < ?2
  AND seq < (SELECT max(seq) FROM raw_messages)
  AND seq NOT IN (SELECT ref FROM rejections WHERE kind = 'raw')
  AND seq NOT IN (SELECT raw_seq FROM measurements WHERE synced_revision < revision)
  AND topic <> '$meter-agent/operator'
)sql";
inline constexpr const char* kUplinkState =
    "SELECT key, value FROM meta WHERE key >= 'uplink.' AND key < 'uplink/'";
// Pruning for the disk budget (Buffer::prune_to_size): the raw log's seq range,
// and the sizes of its newest messages (the redelivery window in bytes).
inline constexpr const char* kRawSeqRange = "SELECT min(seq), max(seq) FROM raw_messages";
inline constexpr const char* kNewestRawSizes =
    "SELECT length(topic) + length(payload) FROM raw_messages ORDER BY seq DESC LIMIT ?1";
inline constexpr const char* kSyncPruneRawOutcomes =
    "DELETE FROM raw_outcomes WHERE seq <= ?1 AND seq NOT IN (SELECT seq FROM raw_messages)";

}  // namespace meter::sql
