#include "common/buffer/buffer.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

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
  if (read_version() == kSchemaVersion) return load_identity();
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
  }
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

Result<PruneStats> Buffer::prune_measurements(const PruneScope& scope) {
  return guarded([&]() -> Result<PruneStats> {
    PruneStats stats;
    sqlite::Transaction transaction(*db_);
    struct Anchor {
      std::int64_t timestamp_ms = 0;
      Decimal value;
      std::string text;
    };
    std::map<std::int64_t, Anchor> anchors;
    {
      auto candidates = db_->prepare(sql::kPruneCandidates);
      auto remove = db_->prepare(sql::kDeleteMeasurement);
      candidates.bind(1, scope.before_ms).bind(2, scope.through_seq);
      std::vector<std::int64_t> ids;
      while (candidates.step()) {
        ids.push_back(candidates.column_int(0));
        const auto series_id = candidates.column_int(1);
        const auto ts = candidates.column_int(2);
        auto text = candidates.column_text(3);
        auto value = Decimal::parse(text);
        if (!value) continue;  // stored values are canonical; cannot happen
        auto found = anchors.find(series_id);
        if (found == anchors.end() ||
            series_before(SeriesKey{found->second.timestamp_ms, found->second.value},
                          SeriesKey{ts, *value})) {
          anchors[series_id] = Anchor{ts, *value, text};
        }
      }
      for (auto id : ids) remove.bind(1, id).run();
      stats.measurements_deleted = static_cast<std::int64_t>(ids.size());
    }
    auto set_anchor = db_->prepare(sql::kSetAnchor);
    auto find_anchor = db_->prepare(sql::kGetAnchor);
    for (const auto& [series_id, anchor] : anchors) {
      // Keep the newer of the old and the new anchor.
      find_anchor.bind(1, series_id);
      bool keep_old = false;
      if (find_anchor.step() && !find_anchor.column_is_null(0)) {
        auto old_value = Decimal::parse(find_anchor.column_text(1));
        keep_old = old_value && !series_before(SeriesKey{find_anchor.column_int(0), *old_value},
                                               SeriesKey{anchor.timestamp_ms, anchor.value});
      }
      find_anchor.reset();
      if (!keep_old) {
        set_anchor.bind(1, series_id).bind(2, anchor.timestamp_ms).bind(3, anchor.text).run();
      }
    }
    bump_generation();
    transaction.commit();
    series_.clear();  // anchors changed
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
