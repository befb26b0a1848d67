// The normalization stage of the buffer: raw log -> decode -> canonicalize ->
// series rules -> measurements, in batches, each one transaction that also
// stores how far it got. A crash anywhere rolls the batch back whole, and the
// next pass redoes it: nothing lost, nothing doubled.
#include <algorithm>
#include <map>

#include "common/buffer/buffer.hpp"
#include "common/buffer/buffer_state.hpp"
#include "common/decode/decode.hpp"
#include "common/decode/mapping.hpp"
#include "common/normalize/canonicalize.hpp"

namespace meter {
namespace {

struct StoredRow {
  std::int64_t id = 0;
  SeriesKey key;
  std::string value_text;
  std::optional<std::string> delta;
  FlagSet flags = 0;
  std::int64_t first_received_ms = 0;
};

std::vector<StoredRow> rows_at(sqlite::Statement& statement, std::int64_t series_id,
                               std::int64_t timestamp_ms) {
  std::vector<StoredRow> rows;
  statement.bind(1, series_id).bind(2, timestamp_ms);
  while (statement.step()) {
    StoredRow row;
    row.id = statement.column_int(0);
    row.value_text = statement.column_text(1);
    auto value = Decimal::parse(row.value_text);
    if (!value) throw std::runtime_error("stored value '" + row.value_text + "' is not canonical");
    row.key = SeriesKey{timestamp_ms, std::move(*value)};
    row.delta = statement.column_optional_text(2);
    row.flags = static_cast<FlagSet>(statement.column_int(3));
    row.first_received_ms = statement.column_int(4);
    rows.push_back(std::move(row));
  }
  statement.reset();
  std::sort(rows.begin(), rows.end(),
            [](const StoredRow& a, const StoredRow& b) { return a.key.value < b.key.value; });
  return rows;
}

std::optional<std::int64_t> optional_int(sqlite::Statement& statement) {
  std::optional<std::int64_t> result;
  if (statement.step() && !statement.column_is_null(0)) result = statement.column_int(0);
  statement.reset();
  return result;
}

std::optional<std::string> delta_text(const std::optional<Decimal>& delta) {
  if (!delta) return std::nullopt;
  return delta->text();
}

FlagSet future_flag(std::int64_t timestamp_ms, std::int64_t received_ms, std::int64_t tolerance) {
  return timestamp_ms > received_ms && timestamp_ms - received_ms > tolerance
             ? flag_bit(Flag::future_timestamp)
             : 0;
}

}  // namespace

Result<NormalizeStats> Buffer::normalize_pending(const Config& config, std::size_t max_messages) {
  auto result = guarded([&]() -> Result<NormalizeStats> {
    tune_for_normalization();
    // Build the redelivery index before taking the write lock: it reads only
    // the append-only raw log, and a cold load reads up to a window of rows.
    statements_->get_counter.bind(1, std::string_view("normalized_through_seq"));
    const std::int64_t progress = optional_int(statements_->get_counter).value_or(0);
    if (redeliveries_.through_seq() != progress) load_redelivery_index(progress);
    return normalize_batch(config, max_messages);
  });
  if (!result) series_.clear();  // the cache may hold rows of the rolled-back batch
  return result;
}

Result<NormalizeStats> Buffer::normalize_all(const Config& config) {
  NormalizeStats total;
  for (;;) {
    auto batch = normalize_pending(config, config.normalize.batch_size);
    if (!batch) return batch.error();
    total += *batch;
    if (batch->messages == 0) return total;
  }
}

Result<NormalizeStats> Buffer::renormalize(const Config& config) {
  series_.clear();
  auto result = guarded([&]() -> Result<NormalizeStats> {
    sqlite::Transaction transaction(*db_);
    db_->exec(sql::kRenormalizeBegin);
    NormalizeStats total;
    for (;;) {
      auto batch = normalize_batch_in_transaction(config, config.normalize.batch_size);
      total += batch;
      if (batch.messages == 0) break;
    }
    db_->exec(sql::kRenormalizeCarryOver);
    transaction.commit();
    return total;
  });
  series_.clear();
  return result;
}

NormalizeStats Buffer::normalize_batch(const Config& config, std::size_t max_messages) {
  sqlite::Transaction transaction(*db_);
  auto stats = normalize_batch_in_transaction(config, max_messages);
  transaction.commit();
  return stats;
}

void Buffer::check_series_cache() {
  statements_->get_counter.bind(1, std::string_view("generation"));
  const std::int64_t generation = optional_int(statements_->get_counter).value_or(0);
  if (generation != cache_generation_) series_.clear();
  cache_generation_ = generation;
}

void Buffer::bump_generation() {
  auto& bump = statements_->bump_generation;
  bump.step();
  cache_generation_ = bump.column_int(0);
  bump.reset();
}

NormalizeStats Buffer::normalize_batch_in_transaction(const Config& config,
                                                      std::size_t max_messages) {
  auto& s = *statements_;
  check_series_cache();
  s.get_counter.bind(1, std::string_view("normalized_through_seq"));
  const std::int64_t progress = optional_int(s.get_counter).value_or(0);

  std::vector<std::pair<std::int64_t, RawMessage>> batch;
  s.raw_after.bind(1, progress).bind(2, static_cast<std::int64_t>(max_messages));
  while (s.raw_after.step()) {
    RawMessage message;
    message.received_ms = s.raw_after.column_int(1);
    message.topic = s.raw_after.column_text(2);
    message.payload = s.raw_after.column_blob(3);
    message.qos = static_cast<int>(s.raw_after.column_int(4));
    message.retained = s.raw_after.column_int(5) != 0;
    message.dup = s.raw_after.column_int(6) != 0;
    batch.emplace_back(s.raw_after.column_int(0), std::move(message));
  }
  s.raw_after.reset();

  if (redeliveries_.through_seq() != progress) load_redelivery_index(progress);
  clock_unsynced_.clear();
  if (!batch.empty()) {
    auto periods = db_->prepare(sql::kClockPeriods);
    while (periods.step())
      clock_unsynced_.emplace_back(periods.column_int(0), periods.column_int(1));
  }
  NormalizeStats stats;
  for (const auto& [seq, message] : batch) {
    normalize_message(config, seq, message, effective_received_ms(seq, message), stats);
    ++stats.messages;
  }
  if (!batch.empty()) {
    s.add_counter.bind(1, std::string_view("normalized_through_seq"))
        .bind(2, batch.back().first - progress)
        .run();
    s.add_counter.bind(1, std::string_view("duplicates")).bind(2, stats.duplicates).run();
    bump_generation();
  }
  return stats;
}

void Buffer::record_outcome(std::int64_t seq, const char* kind, const std::string& reason) {
  statements_->record_outcome.bind(1, seq)
      .bind(2, std::string_view(kind))
      .bind(3, std::string_view(reason))
      .run();
}

void Buffer::load_redelivery_index(std::int64_t through_seq) {
  redeliveries_.clear();
  auto& range = statements_->raw_content_range;
  range.bind(1, through_seq - redeliveries_.window()).bind(2, through_seq);
  while (range.step()) {
    const std::string topic = range.column_text(2);
    const std::string payload = range.column_blob(3);
    const auto qos = static_cast<int>(range.column_int(4));
    redeliveries_.add(range.column_int(0), RedeliveryIndex::content_hash(topic, payload, qos),
                      range.column_int(1), range.column_int(5) != 0);
  }
  range.reset();
}

std::int64_t Buffer::effective_received_ms(std::int64_t seq, const RawMessage& message) {
  const auto hash = RedeliveryIndex::content_hash(message.topic, message.payload, message.qos);
  std::int64_t received_ms = message.received_ms;
  if (message.dup) {
    // The newest earlier copy that was a first delivery; failing that, the
    // earliest earlier DUP copy (the first delivery never reached the log:
    // the agent died before committing it, so every copy arrives as DUP).
    std::optional<std::int64_t> earliest_dup;
    auto& content = statements_->raw_content;
    for (const auto& copy : redeliveries_.candidates(hash, seq)) {
      content.bind(1, copy.seq);
      const bool same = content.step() && content.column_text(0) == message.topic &&
                        content.column_blob(1) == message.payload &&
                        content.column_int(2) == message.qos;
      content.reset();
      if (!same) continue;
      if (!copy.dup) {
        earliest_dup.reset();
        received_ms = copy.received_ms;
        break;
      }
      earliest_dup = copy.received_ms;  // candidates come newest first
    }
    if (earliest_dup) received_ms = *earliest_dup;
  }
  redeliveries_.add(seq, hash, message.received_ms, message.dup);
  return received_ms;
}

void Buffer::normalize_message(const Config& config, std::int64_t seq, const RawMessage& message,
                               std::int64_t received_ms, NormalizeStats& stats) {
  const MappingConfig* mapping = config.mapping_for(message.topic);
  if (mapping == nullptr) {
    record_outcome(seq, "decode_error", "no mapping matches topic '" + message.topic + "'");
    ++stats.decode_errors;
    return;
  }

  Result<Decoded> decoded = decode_message(*mapping, message.topic, message.payload);
  if (!decoded) {
    record_outcome(seq, "decode_error", decoded.error().message);
    ++stats.decode_errors;
    return;
  }
  if (decoded->ignored_reason) {
    record_outcome(seq, "ignored", *decoded->ignored_reason);
    ++stats.ignored;
    return;
  }

  std::string reasons;
  std::int64_t failed = 0;
  std::int64_t skipped = 0;
  std::size_t index = 0;
  auto note = [&](const std::string& reason) {
    if (!reasons.empty()) reasons += "; ";
    if (decoded->readings.size() > 1) reasons += "reading " + std::to_string(index) + ": ";
    reasons += reason;
  };
  for (const auto& reading_as_sent : decoded->readings) {
    ++index;
    if (message.retained && !reading_as_sent.timestamp) {
      // A retained message replayed on subscribe is old news: stamping it with
      // the receive time would invent a reading "now". The raw log keeps it.
      note("retained message without timestamp: not stamped with the receive time");
      ++skipped;
      continue;
    }
    auto reading = canonicalize(reading_as_sent, config, mapping->timestamp, received_ms);
    if (!reading) {
      note(reading.error().message);
      ++failed;
      continue;
    }
    if (has_flag(reading->flags, Flag::gateway_timestamp)) {
      // Stamped with the gateway clock: is that clock trusted at that time?
      for (const auto& [from_ms, to_ms] : clock_unsynced_) {
        if (received_ms >= from_ms && received_ms <= to_ms) {
          reading->flags |= flag_bit(Flag::clock_unsynced);
          break;
        }
      }
    }
    const MetricConfig& metric = *config.metric(reading->metric_type);
    if (!store_reading(metric, *reading, seq, config.normalize.future_tolerance_ms, stats)) {
      note("metric '" + metric.name + "' is stored in unit '" + series_state(*reading).unit +
           "' but the config now says '" + metric.unit + "': run 'meter-agent renormalize'");
      ++failed;
    }
  }
  stats.decode_errors += failed;
  stats.ignored += skipped;
  if (failed > 0) {
    record_outcome(seq, "decode_error", reasons);
  } else if (skipped > 0) {
    record_outcome(seq, "ignored", reasons);
  }
}

Buffer::SeriesState& Buffer::series_state(const Reading& reading) {
  std::string key = reading.device_id;
  key += '\0';
  key += reading.metric_type;
  auto found = series_.find(key);
  if (found != series_.end()) return *found->second;

  auto& s = *statements_;
  auto state = std::make_unique<SeriesState>();
  s.find_series.bind(1, std::string_view(reading.device_id))
      .bind(2, std::string_view(reading.metric_type));
  if (s.find_series.step()) {
    state->id = s.find_series.column_int(0);
    state->unit = s.find_series.column_text(1);
    if (!s.find_series.column_is_null(2)) {
      auto value = Decimal::parse(s.find_series.column_text(3));
      if (value) state->anchor = SeriesKey{s.find_series.column_int(2), std::move(*value)};
    }
    s.find_series.reset();
  } else {
    s.find_series.reset();
    s.insert_series.bind(1, std::string_view(reading.device_id))
        .bind(2, std::string_view(reading.metric_type))
        .bind(3, std::string_view(reading.unit))
        .run();
    state->id = db_->last_insert_rowid();
    state->unit = reading.unit;
  }

  s.series_tail_timestamp.bind(1, state->id);
  if (auto tail_ts = optional_int(s.series_tail_timestamp)) {
    auto rows = rows_at(s.measurements_at, state->id, *tail_ts);
    if (!rows.empty()) state->tail = rows.back().key;
  }
  auto& stored = *state;
  series_.emplace(std::move(key), std::move(state));
  return stored;
}

bool Buffer::store_reading(const MetricConfig& metric, const Reading& reading, std::int64_t raw_seq,
                           std::int64_t future_tolerance_ms, NormalizeStats& stats) {
  auto& s = *statements_;
  SeriesState& series = series_state(reading);
  if (series.unit.empty()) {  // renormalize: the series takes the config's unit
    s.update_series_unit.bind(1, series.id).bind(2, std::string_view(reading.unit)).run();
    series.unit = reading.unit;
  }
  if (series.unit != reading.unit) return false;

  const SeriesKey key{reading.timestamp_ms, reading.value};
  const std::string value_text = reading.value.text();
  const FlagSet own_flags =
      reading.flags | value_flags(metric, reading.value) |
      future_flag(reading.timestamp_ms, reading.received_ms, future_tolerance_ms);

  auto insert = [&](const DeltaOutcome& outcome, FlagSet flags) {
    const EventId id = reading.event_id();
    s.insert_measurement.bind(1, series.id)
        .bind(2, reading.timestamp_ms)
        .bind(3, std::string_view(value_text))
        .bind_blob(4, id.data(), id.size())
        .bind_optional(5, delta_text(outcome.delta))
        .bind(6, static_cast<std::int64_t>(flags | outcome.flags))
        .bind(7, raw_seq)
        .bind(8, reading.received_ms)
        .run();
    ++stats.new_measurements;
  };

  // The common case: newer than everything stored in the series.
  if (!series.tail || reading.timestamp_ms > series.tail->timestamp_ms) {
    if (!series.tail && series.anchor && !series_before(*series.anchor, key)) {
      insert(compute_delta(metric, reading.value, std::nullopt, true), own_flags);
      return true;  // at or before the anchor: an old reading; the tail is unchanged
    }
    std::optional<Decimal> predecessor;
    if (series.tail)
      predecessor = series.tail->value;
    else if (series.anchor)
      predecessor = series.anchor->value;
    insert(compute_delta(metric, reading.value, predecessor, false), own_flags);
    series.tail = key;
    return true;
  }

  // Everything else needs the stored neighbours: a repeat, an out-of-order
  // arrival, or a second reading with the tail's timestamp.
  std::vector<StoredRow> group = rows_at(s.measurements_at, series.id, reading.timestamp_ms);

  // Revisions are written once per row at the end.
  struct Revision {
    StoredRow row;
    std::optional<std::string> delta;
    FlagSet flags;
    std::int64_t first_received_ms;
  };
  std::map<std::int64_t, Revision> revisions;
  auto revise = [&](const StoredRow& row) -> Revision& {
    auto [it, inserted] =
        revisions.try_emplace(row.id, Revision{row, row.delta, row.flags, row.first_received_ms});
    return it->second;
  };
  auto write_revisions = [&] {
    for (const auto& [id, r] : revisions) {
      const bool content_changed = r.delta != r.row.delta || r.flags != r.row.flags;
      if (!content_changed && r.first_received_ms == r.row.first_received_ms) continue;
      s.revise_measurement.bind(1, id)
          .bind_optional(2, r.delta)
          .bind(3, static_cast<std::int64_t>(r.flags))
          .bind(4, r.first_received_ms)
          .bind(5, content_changed ? 1 : 0)
          .run();
      if (content_changed) ++stats.revised;
    }
  };

  // A repeat of a stored event: count it, and merge what the copy adds
  // (its own flags, an earlier receive time) so the result does not depend on
  // which copy came first.
  for (const auto& row : group) {
    if (row.value_text != value_text) continue;
    auto& r = revise(row);
    r.first_received_ms = std::min(row.first_received_ms, reading.received_ms);
    r.flags = (row.flags | (reading.flags & kIntrinsicFlags)) & ~flag_bit(Flag::future_timestamp);
    r.flags |= future_flag(reading.timestamp_ms, r.first_received_ms, future_tolerance_ms);
    write_revisions();
    ++stats.duplicates;
    return true;
  }

  FlagSet flags = own_flags;
  if (series.tail && series.tail->timestamp_ms > reading.timestamp_ms) {
    flags |= flag_bit(Flag::out_of_order);
  }
  if (!group.empty()) {
    flags |= flag_bit(Flag::timestamp_conflict);
    for (const auto& row : group) revise(row).flags |= flag_bit(Flag::timestamp_conflict);
  }

  const bool beyond_retention = series.anchor && !series_before(*series.anchor, key);
  if (beyond_retention) {
    insert(compute_delta(metric, reading.value, std::nullopt, true), flags);
    write_revisions();
    return true;
  }

  // Predecessor: the previous reading in series order, or the anchor.
  std::optional<SeriesKey> predecessor;
  for (const auto& row : group) {
    if (row.key.value < reading.value) predecessor = row.key;
  }
  if (!predecessor) {
    s.series_previous_timestamp.bind(1, series.id).bind(2, reading.timestamp_ms);
    if (auto previous_ts = optional_int(s.series_previous_timestamp)) {
      auto rows = rows_at(s.measurements_at, series.id, *previous_ts);
      if (!rows.empty()) predecessor = rows.back().key;
    }
  }
  if (series.anchor && (!predecessor || series_before(*predecessor, *series.anchor))) {
    predecessor = series.anchor;
  }

  // Successor: the next reading in series order; its delta now starts here.
  std::optional<StoredRow> successor;
  for (const auto& row : group) {
    if (reading.value < row.key.value) {
      successor = row;
      break;
    }
  }
  if (!successor) {
    s.series_next_timestamp.bind(1, series.id).bind(2, reading.timestamp_ms);
    if (auto next_ts = optional_int(s.series_next_timestamp)) {
      auto rows = rows_at(s.measurements_at, series.id, *next_ts);
      if (!rows.empty()) successor = rows.front();
    }
  }

  std::optional<Decimal> predecessor_value;
  if (predecessor) predecessor_value = predecessor->value;
  insert(compute_delta(metric, reading.value, predecessor_value, false), flags);

  if (successor) {
    auto& r = revise(*successor);
    const auto outcome = compute_delta(metric, successor->key.value, reading.value, false);
    r.delta = delta_text(outcome.delta);
    r.flags = (r.flags & ~kNeighbourFlags) | outcome.flags;
  }
  write_revisions();

  if (!series.tail || series_before(*series.tail, key)) series.tail = key;
  return true;
}

}  // namespace meter
