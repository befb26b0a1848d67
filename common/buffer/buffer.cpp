#include "common/buffer/buffer.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <set>

#include "common/buffer/buffer_state.hpp"
#include "common/buffer/inbox.hpp"
#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/normalize/timestamp.hpp"

namespace meter {
namespace {

std::string make_uuid_v4() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no random bytes for a UUID");
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string uuid;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) uuid += '-';
    uuid += kDigits[bytes[i] >> 4];
    uuid += kDigits[bytes[i] & 0x0f];
  }
  return uuid;
}

}  // namespace

NormalizeStats& NormalizeStats::operator+=(const NormalizeStats& other) {
  messages += other.messages;
  new_measurements += other.new_measurements;
  duplicates += other.duplicates;
  revised += other.revised;
  decode_errors += other.decode_errors;
  ignored += other.ignored;
  for (const auto& [mapping, count] : other.no_reading_by_mapping) {
    no_reading_by_mapping[mapping] += count;
  }
  return *this;
}

Buffer::Buffer() = default;
Buffer::~Buffer() = default;

const std::string& Buffer::path() const { return db_->path(); }

Result<std::unique_ptr<Buffer>> Buffer::open(const BufferConfig& config) {
  std::unique_ptr<Buffer> buffer(new Buffer());
  auto opened = guarded([&]() -> Status {
    buffer->db_ = std::make_unique<sqlite::Database>(config.path);
    auto& db = *buffer->db_;
    // Before anything else: a database from a newer version must not be touched.
    std::int64_t version = 0;
    {
      auto version_statement = db.prepare(sql::kGetUserVersion);
      version_statement.step();
      version = version_statement.column_int(0);
    }
    if (version > kSchemaVersion) {
      return Error{config.path + ": the buffer's schema version " + std::to_string(version) +
                   " is newer than this meter-agent supports (" + std::to_string(kSchemaVersion) +
                   "); upgrade meter-agent or point buffer.path at another file"};
    }
    if (version == 0) db.exec(sql::kCreatePragmas);
    db.exec(config.durability == Durability::power_loss ? "PRAGMA synchronous = FULL"
                                                        : "PRAGMA synchronous = NORMAL");
    std::string journal_mode;
    {
      auto journal = db.prepare("PRAGMA journal_mode = WAL");
      journal.step();
      journal_mode = journal.column_text(0);
    }
    if (journal_mode != "wal") {
      return Error{config.path + ": cannot switch the buffer to WAL mode (journal_mode is " +
                   journal_mode + ")"};
    }
    if (config.max_size_bytes != 0) {
      buffer->wal_autocheckpoint_pages_ =
          std::clamp<std::int64_t>(config.max_size_bytes / 16 / 1024, 256, 10000);
    }
    return buffer->migrate();
  });
  if (!opened) return opened.error();
  return buffer;
}

Status Buffer::migrate() {
  auto& db = *db_;
  auto read_version = [&] {
    auto version_statement = db.prepare(sql::kGetUserVersion);
    version_statement.step();
    return version_statement.column_int(0);
  };
  // A current database needs no write lock to open: `status` must open it
  // while the daemon writes (a normalization batch holds the lock).
  auto has_index = [&](const char* query) {
    auto index = db.prepare(query);
    index.step();
    return index.column_int(0) > 0;
  };
  if (read_version() == kSchemaVersion && has_index(sql::kHasRawSeqIndex) &&
      has_index(sql::kHasOperatorIndex)) {
    return load_identity();
  }
  sqlite::Transaction transaction(db);
  std::int64_t version = read_version();
  if (version == 0) {
    db.exec(sql::kSchemaV1);
    auto put = db.prepare(sql::kPutMeta);
    put.bind(1, std::string_view("buffer_id")).bind(2, make_uuid_v4()).run();
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    put.bind(1, std::string_view("created_at")).bind(2, format_timestamp(now_ms)).run();
    db.exec("PRAGMA user_version = 1");
    version = 1;
  }
  // Later schema versions add their forward migrations here, one step each.
  if (version == 1) {  // the uplink's sync state (sql.hpp, kMigrateV2)
    db.exec(sql::kMigrateV2);
    db.exec("PRAGMA user_version = 2");
    version = 2;
  }
  if (version == 2) {  // counts for status kept by triggers (sql.hpp, kMigrateV3)
    db.exec(sql::kMigrateV3);
    db.exec("PRAGMA user_version = 3");
    version = 3;
  }
  if (version == 3) {  // measurements.delta_from_ms (sql.hpp, kMigrateV4)
    db.exec(sql::kMigrateV4);
    db.exec("PRAGMA user_version = 4");
    version = 4;
  }
  if (version == 4) {  // local-only series (sql.hpp, kMigrateV5)
    db.exec(sql::kMigrateV5);
    db.exec("PRAGMA user_version = 5");
    version = 5;
  }
  if (version == 5) {  // the series rules' state at the anchor (sql.hpp, kMigrateV6)
    db.exec(sql::kMigrateV6);
    db.exec("PRAGMA user_version = 6");
  }
  db.exec(sql::kCreateRawSeqIndex);
  db.exec(sql::kCreateOperatorIndex);
  transaction.commit();
  return load_identity();
}

Status Buffer::load_identity() {
  auto& db = *db_;
  auto get = db.prepare(sql::kGetMeta);
  get.bind(1, std::string_view("buffer_id"));
  if (!get.step()) return Error{db.path() + ": buffer has no identity (meta.buffer_id missing)"};
  buffer_id_ = get.column_text(0);
  statements_ = std::make_unique<Statements>(db);
  return Ok{};
}

std::int64_t Buffer::insert_raw(const RawMessage& message) {
  auto& statement = statements_->append_raw;
  statement.bind(1, message.received_ms)
      .bind(2, std::string_view(message.topic))
      .bind_blob(3, message.payload.data(), message.payload.size())
      .bind(4, message.qos)
      .bind(5, message.retained ? 1 : 0)
      .bind(6, message.dup ? 1 : 0);
  statement.run();
  return db_->last_insert_rowid();
}

Result<std::int64_t> Buffer::append_raw_batch(const std::vector<RawMessage>& messages) {
  return guarded([&]() -> Result<std::int64_t> {
    sqlite::Transaction transaction(*db_);
    std::int64_t last = 0;
    for (const auto& message : messages) last = insert_raw(message);
    transaction.commit();
    return last;
  });
}

Status Buffer::for_each_measurement(const std::function<void(const Measurement&)>& visit) {
  return guarded([&]() -> Status {
    auto statement = db_->prepare(sql::kExportMeasurements);
    // Rows come ordered by device, metric and timestamp; equal timestamps are
    // put in value order here (SQL would compare the decimal texts as strings).
    std::vector<std::pair<Decimal, Measurement>> run;
    auto flush = [&] {
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& entry : run) visit(entry.second);
      run.clear();
    };
    while (statement.step()) {
      Measurement m;
      m.device_id = statement.column_text(0);
      m.metric_type = statement.column_text(1);
      m.unit = statement.column_text(2);
      m.timestamp_ms = statement.column_int(3);
      m.value = statement.column_text(4);
      m.event_id = hex_of_blob(statement.column_blob(5));
      m.delta = statement.column_optional_text(6);
      m.flags = static_cast<FlagSet>(statement.column_int(7));
      m.revision = statement.column_int(8);
      m.synced_revision = statement.column_int(9);
      m.raw_seq = statement.column_int(10);
      m.first_received_ms = statement.column_int(11);
      m.delta_from_ms = statement.column_optional_int(12);
      if (!run.empty()) {
        const auto& last = run.back().second;
        if (last.device_id != m.device_id || last.metric_type != m.metric_type ||
            last.timestamp_ms != m.timestamp_ms) {
          flush();
        }
      }
      auto value = Decimal::parse(m.value);
      run.emplace_back(value ? *value : Decimal(), std::move(m));
    }
    flush();
    return Ok{};
  });
}

Status Buffer::set_local_only_metrics(const Config& config) {
  std::set<std::string> wanted;
  for (const auto& [name, metric] : config.metrics) {
    if (metric.role != MetricRole::none) wanted.insert(name);
  }
  return guarded([&]() -> Status {
    auto& db = *db_;
    // Read first: the daemon and every offline command call this on start,
    // and an unchanged list must not take the write lock.
    std::set<std::string> stored;
    {
      auto list = db.prepare(sql::kLocalOnlyMetrics);
      while (list.step()) stored.insert(list.column_text(0));
    }
    if (stored == wanted) return Ok{};
    sqlite::Transaction transaction(db);
    db.exec(sql::kClearLocalOnlyMetrics);
    auto add = db.prepare(sql::kAddLocalOnlyMetric);
    for (const std::string& name : wanted) add.bind(1, std::string_view(name)).run();
    db.exec(sql::kApplyLocalOnlyMetrics);
    bump_generation();
    transaction.commit();
    return Ok{};
  });
}

Status Buffer::for_each_raw_outcome(const std::function<void(const RawOutcome&)>& visit) {
  return guarded([&]() -> Status {
    auto statement = db_->prepare(sql::kRawOutcomes);
    while (statement.step()) {
      visit(
          RawOutcome{statement.column_int(0), statement.column_text(1), statement.column_text(2)});
    }
    return Ok{};
  });
}

Result<std::vector<RawOutcome>> Buffer::latest_raw_outcomes(const std::string& kind, int limit) {
  return guarded([&]() -> Result<std::vector<RawOutcome>> {
    auto statement = db_->prepare(sql::kLatestRawOutcomes);
    statement.bind(1, std::string_view(kind)).bind(2, limit);
    std::vector<RawOutcome> outcomes;
    while (statement.step()) {
      outcomes.push_back(
          RawOutcome{statement.column_int(0), statement.column_text(1), statement.column_text(2)});
    }
    std::reverse(outcomes.begin(), outcomes.end());
    return outcomes;
  });
}

Result<std::vector<RawOutcomeGroup>> Buffer::recent_outcome_groups(const std::string& kind,
                                                                   int recent, int groups) {
  return guarded([&]() -> Result<std::vector<RawOutcomeGroup>> {
    auto statement = db_->prepare(sql::kRecentOutcomeGroups);
    statement.bind(1, std::string_view(kind)).bind(2, recent).bind(3, groups);
    std::vector<RawOutcomeGroup> found;
    while (statement.step()) {
      found.push_back(RawOutcomeGroup{statement.column_text(0), statement.column_text(1),
                                      statement.column_int(2), statement.column_int(3)});
    }
    return found;
  });
}

Result<BufferStatus> Buffer::status() {
  return guarded([&]() -> Result<BufferStatus> {
    BufferStatus status;
    status.path = db_->path();
    status.buffer_id = buffer_id_;
    status.schema_version = kSchemaVersion;
    auto raw = db_->prepare(sql::kCountRaw);
    raw.step();
    status.raw_messages = raw.column_int(0);
    status.last_seq = raw.column_int(1);
    auto counter = db_->prepare(sql::kGetCounter);
    counter.bind(1, std::string_view("normalized_through_seq"));
    if (counter.step()) status.normalized_through_seq = counter.column_int(0);
    counter.reset();
    counter.bind(1, std::string_view("duplicates"));
    if (counter.step()) status.duplicates = counter.column_int(0);
    auto outcomes = db_->prepare(sql::kCountOutcomes);
    while (outcomes.step()) {
      const auto kind = outcomes.column_text(0);
      if (kind == "decode_error") status.decode_errors = outcomes.column_int(1);
      if (kind == "ignored") status.ignored = outcomes.column_int(1);
    }
    auto series = db_->prepare(sql::kCountSeries);
    series.step();
    status.series = series.column_int(0);
    auto by_flags = db_->prepare(sql::kCountByFlags);
    while (by_flags.step()) {
      const auto flags = static_cast<FlagSet>(by_flags.column_int(0));
      const auto count = by_flags.column_int(1);
      status.measurements += count;
      for (auto name : flag_names(flags)) status.flag_counts[std::string(name)] += count;
    }
    auto unsynced = db_->prepare(sql::kUnsyncedSummary);
    unsynced.step();
    status.unsynced = unsynced.column_int(0);
    if (!unsynced.column_is_null(1)) status.oldest_unsynced_received_ms = unsynced.column_int(1);
    status.database_bytes = file_size(db_->path());
    status.wal_bytes = file_size(db_->path() + "-wal");
    counter.reset();
    counter.bind(1, std::string_view("inbox_segment"));
    InboxPosition inbox;
    if (counter.step()) inbox.segment = counter.column_int(0);
    counter.reset();
    counter.bind(1, std::string_view("inbox_offset"));
    if (counter.step()) inbox.offset = counter.column_int(0);
    status.inbox_bytes = inbox_pending_bytes(db_->path(), inbox);
    return status;
  });
}

std::int64_t keep_for_series_rules(const Config& config) {
  std::size_t window = 0;
  for (const auto& [name, metric] : config.metrics) {
    if (metric.kind == MetricKind::counter) window = std::max(window, metric.glitch_window);
  }
  return static_cast<std::int64_t>(window) + 1;
}

namespace {

std::string history_text(const std::vector<std::int64_t>& history) {
  std::string text;
  for (const auto timestamp : history) {
    if (!text.empty()) text += ',';
    text += std::to_string(timestamp);
  }
  return text;
}

}  // namespace

std::vector<std::int64_t> parse_anchor_history(std::string_view text) {
  std::vector<std::int64_t> history;
  std::size_t begin = 0;
  while (begin < text.size()) {
    auto end = text.find(',', begin);
    if (end == std::string_view::npos) end = text.size();
    std::int64_t value = 0;
    const auto* first = text.data() + begin;
    const auto* last = text.data() + end;
    if (std::from_chars(first, last, value).ptr == last) history.push_back(value);
    begin = end + 1;
  }
  return history;
}

Result<PruneStats> Buffer::prune_measurements(const PruneScope& scope) {
  return guarded([&]() -> Result<PruneStats> {
    PruneStats stats;
    sqlite::Transaction transaction(*db_);
    // Per series, the pruned rows in series order: the newest becomes the
    // anchor (readings at or before it are beyond retention); the last good
    // one among them and their timestamps become the scan's state where the
    // kept readings begin (docs/QUALITY.md), so the oldest kept reading keeps
    // its delta, and renormalize finds the same state.
    struct Pruned {
      SeriesKey key;
      std::string text;
      FlagSet flags = 0;
    };
    std::map<std::int64_t, std::vector<Pruned>> pruned_by_series;
    {
      const bool bounded = scope.through_seq != std::numeric_limits<std::int64_t>::max();
      auto candidates =
          db_->prepare(bounded ? sql::kPruneCandidatesThroughSeq : sql::kPruneCandidates);
      auto remove = db_->prepare(sql::kDeleteMeasurement);
      candidates.bind(1, scope.before_ms)
          .bind(2, scope.through_seq)
          .bind(3, std::max<std::int64_t>(scope.keep_newest_measurements, 1) - 1);
      std::vector<std::int64_t> ids;
      while (candidates.step()) {
        ids.push_back(candidates.column_int(0));
        auto text = candidates.column_text(3);
        auto value = Decimal::parse(text);
        if (!value) continue;  // stored values are canonical; cannot happen
        pruned_by_series[candidates.column_int(1)].push_back(
            Pruned{SeriesKey{candidates.column_int(2), std::move(*value)}, std::move(text),
                   static_cast<FlagSet>(candidates.column_int(4))});
      }
      for (auto id : ids) remove.bind(1, id).run();
      stats.measurements_deleted = static_cast<std::int64_t>(ids.size());
    }
    auto set_anchor = db_->prepare(sql::kSetAnchor);
    auto find_anchor = db_->prepare(sql::kGetAnchor);
    for (auto& [series_id, rows] : pruned_by_series) {
      std::sort(rows.begin(), rows.end(),
                [](const Pruned& a, const Pruned& b) { return series_before(a.key, b.key); });
      // The old anchor and its state, kept when it is newer.
      find_anchor.bind(1, series_id);
      std::optional<SeriesKey> old_anchor;
      std::optional<std::pair<std::int64_t, std::string>> good;
      std::vector<std::int64_t> history;
      if (find_anchor.step() && !find_anchor.column_is_null(0)) {
        auto old_value = Decimal::parse(find_anchor.column_text(1));
        if (old_value) old_anchor = SeriesKey{find_anchor.column_int(0), std::move(*old_value)};
        if (!find_anchor.column_is_null(2)) {
          good = std::pair{find_anchor.column_int(2), find_anchor.column_text(3)};
        } else if (old_anchor) {
          good = std::pair{old_anchor->timestamp_ms, old_anchor->value.text()};
        }
        if (!find_anchor.column_is_null(4))
          history = parse_anchor_history(find_anchor.column_text(4));
      }
      find_anchor.reset();
      const Pruned& newest = rows.back();
      if (old_anchor && !series_before(*old_anchor, newest.key)) continue;
      for (const auto& row : rows) {
        if (old_anchor && !series_before(*old_anchor, row.key)) continue;
        if (history.empty() || history.back() < row.key.timestamp_ms) {
          history.push_back(row.key.timestamp_ms);
        }
        if (!has_flag(row.flags, Flag::glitch) && !has_flag(row.flags, Flag::beyond_retention)) {
          good = std::pair{row.key.timestamp_ms, row.text};
        }
      }
      if (history.size() > kLearnedIntervals + 1) {
        history.erase(history.begin(),
                      history.end() - static_cast<std::ptrdiff_t>(kLearnedIntervals + 1));
      }
      set_anchor.bind(1, series_id).bind(2, newest.key.timestamp_ms).bind(3, newest.text);
      if (good) {
        set_anchor.bind(4, good->first).bind(5, std::string_view(good->second));
      } else {
        set_anchor.bind_null(4).bind_null(5);
      }
      set_anchor.bind(6, std::string_view(history_text(history))).run();
    }
    bump_generation();
    transaction.commit();
    series_.clear();  // anchors changed
    device_restarts_.clear();
    return stats;
  });
}

Status Buffer::checkpoint() {
  return guarded([&]() -> Status {
    db_->exec(sql::kCheckpoint);
    return Ok{};
  });
}

Result<bool> Buffer::checkpoint_truncate() {
  return guarded([&]() -> Result<bool> {
    auto statement = db_->prepare(sql::kCheckpointTruncate);
    statement.step();
    return statement.column_int(0) == 0;  // 1: blocked by another connection
  });
}

Result<std::int64_t> Buffer::used_bytes() {
  return guarded([&]() -> Result<std::int64_t> {
    auto statement = db_->prepare(sql::kUsedBytes);
    statement.step();
    return statement.column_int(0) * statement.column_int(1) + file_size(db_->path() + "-wal");
  });
}

// A batch touches about one index page per series; a page cache that holds
// them all, and WAL checkpoints every ~10 MiB instead of after every batch,
// halve the bytes written per event (docs/BENCHMARKS.md). Under a disk budget
// the WAL (which counts) checkpoints at 1/16 of the budget if that is less.
void Buffer::tune_for_normalization() {
  if (tuned_for_normalization_) return;
  db_->exec(sql::kTuneForNormalization);
  db_->exec(std::string(sql::kSetWalAutocheckpoint) + std::to_string(wal_autocheckpoint_pages_));
  tuned_for_normalization_ = true;
}

Status Buffer::set_cache_kib(std::int64_t kib) {
  return guarded([&]() -> Status {
    tune_for_normalization();
    db_->exec(std::string(sql::kSetCacheKib) + std::to_string(kib));
    return Ok{};
  });
}

Status Buffer::set_max_page_count(std::int64_t pages) {
  return guarded([&]() -> Status {
    auto statement = db_->prepare(std::string(sql::kSetMaxPageCount) + std::to_string(pages));
    while (statement.step()) {
    }
    return Ok{};
  });
}

}  // namespace meter
