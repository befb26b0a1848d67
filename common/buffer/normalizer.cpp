// The normalization stage of the buffer: raw log -> decode -> canonicalize ->
// series engine -> measurements, in batches, each one transaction that also
// stores how far it got. A crash anywhere rolls the batch back whole, and the
// next pass redoes it: nothing lost, nothing doubled.
//
// The series rules are the engine's (common/normalize/series_engine.hpp);
// here is only their I/O: the per-series cache (CachedSeries: the engine's
// state, so that an in-order reading asks nothing), the stored neighbourhood
// the engine queries (StoredNeighbourhood, stored_neighbourhood.hpp), and
// the writes that apply its decision.
#include <algorithm>
#include <charconv>
#include <iterator>
#include <optional>
#include <utility>

#include "common/buffer/buffer.hpp"
#include "common/buffer/buffer_state.hpp"
#include "common/buffer/stored_neighbourhood.hpp"
#include "common/decode/decode.hpp"
#include "common/decode/mapping.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/normalize/operator_event.hpp"
#include "common/normalize/series_scan.hpp"

namespace meter {
namespace {

std::optional<std::int64_t> optional_int(sqlite::Statement& statement) {
  std::optional<std::int64_t> result;
  if (statement.step() && !statement.column_is_null(0)) result = statement.column_int(0);
  statement.reset();
  return result;
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
  if (!result) {  // the cache may hold rows of the rolled-back batch
    series_.clear();
    device_restarts_.clear();
  }
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
  device_restarts_.clear();
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
  device_restarts_.clear();
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
  if (generation != cache_generation_) {
    series_.clear();
    device_restarts_.clear();
  }
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
  if (message.topic == kOperatorTopic) {
    normalize_operator_event(config, seq, message, stats);
    return;
  }
  const MappingConfig* mapping = config.mapping_for(message.topic);
  if (mapping == nullptr) {
    record_outcome(seq, "decode_error", "no mapping matches topic '" + message.topic + "'");
    ++stats.decode_errors;
    ++stats.no_reading_by_mapping[""];
    return;
  }

  Result<Decoded> decoded = decode_message(*mapping, message.topic, message.payload);
  if (!decoded) {
    record_outcome(seq, "decode_error", decoded.error().message);
    ++stats.decode_errors;
    ++stats.no_reading_by_mapping[mapping->label()];
    return;
  }
  if (decoded->ignored_reason) {
    record_outcome(seq, "ignored", *decoded->ignored_reason);
    ++stats.ignored;
    ++stats.no_reading_by_mapping[mapping->label()];
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
    if (!store_reading(config, metric, *reading, seq, stats)) {
      note("metric '" + metric.name + "' is stored in unit '" + cached_series(*reading).unit +
           "' but the config now says '" + metric.unit + "': run 'meter-agent renormalize'");
      ++failed;
    }
  }
  stats.decode_errors += failed;
  stats.ignored += skipped;
  if (failed + skipped == static_cast<std::int64_t>(decoded->readings.size())) {
    ++stats.no_reading_by_mapping[mapping->label()];
  }
  if (failed > 0) {
    record_outcome(seq, "decode_error", reasons);
  } else if (skipped > 0) {
    record_outcome(seq, "ignored", reasons);
  }
}

Buffer::CachedSeries& Buffer::cached_series(const Reading& reading) {
  std::string key = reading.device_id;
  key += '\0';
  key += reading.metric_type;
  auto found = series_.find(key);
  if (found != series_.end()) return *found->second;

  auto& s = *statements_;
  auto series = std::make_unique<CachedSeries>();
  series->device_id = reading.device_id;
  series->metric_type = reading.metric_type;
  s.find_series.bind(1, std::string_view(reading.device_id))
      .bind(2, std::string_view(reading.metric_type));
  if (s.find_series.step()) {
    series->id = s.find_series.column_int(0);
    series->unit = s.find_series.column_text(1);
    if (!s.find_series.column_is_null(2)) {
      auto value = Decimal::parse(s.find_series.column_text(3));
      if (value) series->state.anchor = SeriesKey{s.find_series.column_int(2), std::move(*value)};
    }
    auto& anchor_scan = series->state.anchor_scan;
    if (!s.find_series.column_is_null(4)) {
      auto value = Decimal::parse(s.find_series.column_text(5));
      if (value) anchor_scan.good = SeriesKey{s.find_series.column_int(4), std::move(*value)};
    }
    if (!s.find_series.column_is_null(6)) {
      anchor_scan.history = parse_anchor_history(s.find_series.column_text(6));
    }
    if (series->state.anchor) anchor_scan.last_timestamp_ms = series->state.anchor->timestamp_ms;
    s.find_series.reset();
  } else {
    s.find_series.reset();
    s.insert_series.bind(1, std::string_view(reading.device_id))
        .bind(2, std::string_view(reading.metric_type))
        .bind(3, std::string_view(reading.unit))
        .run();
    series->id = db_->last_insert_rowid();
    series->unit = reading.unit;
  }

  s.series_tail_timestamp.bind(1, series->id);
  if (auto tail_ts = optional_int(s.series_tail_timestamp)) {
    auto rows = stored_readings_at(s.measurements_at, series->id, *tail_ts);
    if (!rows.empty()) series->state.tail = rows.back().key;
  }
  auto& stored = *series;
  series_.emplace(std::move(key), std::move(series));
  return stored;
}

bool Buffer::store_reading(const Config& config, const MetricConfig& metric, const Reading& reading,
                           std::int64_t raw_seq, NormalizeStats& stats) {
  auto& s = *statements_;
  const std::int64_t future_tolerance_ms = config.normalize.future_tolerance_ms;
  CachedSeries& series = cached_series(reading);
  if (!series.boundaries_loaded) load_boundaries(config, series);
  if (series.unit.empty()) {  // renormalize: the series takes the config's unit
    s.update_series_unit.bind(1, series.id).bind(2, std::string_view(reading.unit)).run();
    series.unit = reading.unit;
  }
  if (series.unit != reading.unit) return false;

  StoredNeighbourhood neighbourhood(s.measurements_at, s.measurements_before, s.measurements_after,
                                    series.id);
  const SeriesRules rules{metric, future_tolerance_ms, series.boundaries};
  if (!series.recovered) {
    series.state = recover_state(rules, series.state, neighbourhood);
    series.recovered = true;
  }
  SeriesDecision decision = decide(rules, series.state,
                                   SeriesReading{SeriesKey{reading.timestamp_ms, reading.value},
                                                 reading.flags, reading.received_ms},
                                   neighbourhood);

  // The new row, then the revisions of its neighbours (the order of the
  // writes does not matter: none touches another's row).
  std::int64_t inserted_id = 0;
  if (decision.repeat_of) {
    ++stats.duplicates;
  } else {
    const EventId id = reading.event_id();
    const std::string value_text = reading.value.text();
    s.insert_measurement.bind(1, series.id)
        .bind(2, reading.timestamp_ms)
        .bind(3, std::string_view(value_text))
        .bind_blob(4, id.data(), id.size())
        .bind_optional(5, decision.delta)
        .bind(6, static_cast<std::int64_t>(decision.flags))
        .bind(7, raw_seq)
        .bind(8, reading.received_ms)
        .bind_optional(9, decision.delta_from_ms)
        .run();
    inserted_id = db_->last_insert_rowid();
    ++stats.new_measurements;
  }
  apply_revisions(decision.revisions, stats);
  // Restart evidence in order that does not fall (uptime) or rise (boot
  // count) against the tail it follows adds no restart: no query for it.
  bool evidence_changes = false;
  if (metric.role != MetricRole::none) {
    const auto& tail = series.state.tail;
    const bool in_order = inserted_id != 0 && (!tail || tail->timestamp_ms < reading.timestamp_ms);
    const bool quiet =
        tail && (metric.role == MetricRole::uptime_seconds ? !(reading.value < tail->value)
                                                           : !(tail->value < reading.value));
    evidence_changes = !(in_order && (quiet || !tail));
  }
  series.state = std::move(decision.state);
  if (inserted_id != 0) series.state.adopt_inserted(inserted_id);

  if (evidence_changes) {
    // Restart evidence: the counter series of the device and of its components
    // (restart_evidence_devices) are judged again from the earliest restart
    // that appeared or went.
    const std::vector<std::int64_t> before = device_restarts(config, reading.device_id);
    std::vector<std::int64_t> now = read_device_restarts(config, reading.device_id);
    std::optional<std::int64_t> changed;
    std::vector<std::int64_t> difference;
    std::set_symmetric_difference(before.begin(), before.end(), now.begin(), now.end(),
                                  std::back_inserter(difference));
    if (!difference.empty()) changed = difference.front();
    device_restarts_[reading.device_id] = std::move(now);
    if (changed) {
      std::vector<std::string> devices{reading.device_id};
      auto components = db_->prepare(sql::kComponentDevices);
      components.bind(1, std::string_view(reading.device_id));
      while (components.step()) devices.emplace_back(components.column_text(0));
      for (const auto& device : devices) {
        for (const auto& [name, other] : config.metrics) {
          if (other.kind != MetricKind::counter || other.role != MetricRole::none) continue;
          if (CachedSeries* affected = existing_series(device, name)) {
            rejudge_series(config, *affected, *changed, stats);
          }
        }
      }
    }
  }
  return true;
}

void Buffer::apply_revisions(const std::vector<SeriesRevision>& revisions, NormalizeStats& stats) {
  auto& s = *statements_;
  for (const auto& r : revisions) {
    s.revise_measurement.bind(1, r.id)
        .bind_optional(2, r.delta)
        .bind(3, static_cast<std::int64_t>(r.flags))
        .bind(4, r.first_received_ms)
        .bind(5, r.content_changed ? 1 : 0)
        .bind_optional(6, r.delta_from_ms)
        .run();
    if (r.content_changed) ++stats.revised;
  }
}

Buffer::CachedSeries* Buffer::existing_series(const std::string& device_id,
                                              const std::string& metric_type) {
  std::string key = device_id;
  key += '\0';
  key += metric_type;
  if (auto found = series_.find(key); found != series_.end()) return found->second.get();
  auto& s = *statements_;
  s.find_series.bind(1, std::string_view(device_id)).bind(2, std::string_view(metric_type));
  const bool exists = s.find_series.step();
  s.find_series.reset();
  if (!exists) return nullptr;
  Reading probe;
  probe.device_id = device_id;
  probe.metric_type = metric_type;
  return &cached_series(probe);
}

void Buffer::load_boundaries(const Config& config, CachedSeries& series) {
  series.boundaries.clear();
  auto replacements = operator_events(series.device_id, series.metric_type);
  if (replacements) {
    for (auto& event : *replacements) {
      series.boundaries.push_back(SeriesBoundary{event.at_ms, SeriesBoundary::Kind::replacement,
                                                 std::move(event.old_final),
                                                 std::move(event.new_initial)});
    }
  }
  std::vector<std::int64_t> restarts;
  for (const auto& device : restart_evidence_devices(series.device_id)) {
    const auto& instants = device_restarts(config, device);
    restarts.insert(restarts.end(), instants.begin(), instants.end());
  }
  std::sort(restarts.begin(), restarts.end());
  restarts.erase(std::unique(restarts.begin(), restarts.end()), restarts.end());
  for (const auto instant : restarts) {
    series.boundaries.push_back(SeriesBoundary{instant, SeriesBoundary::Kind::restart, {}, {}});
  }
  std::stable_sort(
      series.boundaries.begin(), series.boundaries.end(),
      [](const SeriesBoundary& a, const SeriesBoundary& b) { return a.at_ms < b.at_ms; });
  series.boundaries_loaded = true;
}

const std::vector<std::int64_t>& Buffer::device_restarts(const Config& config,
                                                         const std::string& device_id) {
  auto found = device_restarts_.find(device_id);
  if (found == device_restarts_.end()) {
    found = device_restarts_.emplace(device_id, read_device_restarts(config, device_id)).first;
  }
  return found->second;
}

std::vector<std::int64_t> Buffer::read_device_restarts(const Config& config,
                                                       const std::string& device_id) {
  // Between two readings of restart evidence in time order: an uptime that
  // fell restarted at (its timestamp - the uptime), never before the reading
  // before it; a boot count that rose restarted at the latest at its own
  // timestamp, which is where the restart is placed (firmwares publish a boot
  // count at boot: Tasmota's INFO3).
  std::vector<std::int64_t> instants;
  for (const auto& [name, metric] : config.metrics) {
    if (metric.role == MetricRole::none) continue;
    auto readings = db_->prepare(sql::kSeriesReadings);
    readings.bind(1, std::string_view(device_id)).bind(2, std::string_view(name));
    std::optional<std::pair<std::int64_t, Decimal>> previous;
    while (readings.step()) {
      const std::int64_t timestamp_ms = readings.column_int(0);
      auto value = Decimal::parse(readings.column_text(1));
      if (!value) continue;
      if (previous && previous->first < timestamp_ms) {
        if (metric.role == MetricRole::uptime_seconds && *value < previous->second) {
          std::int64_t instant = previous->first + 1;
          auto uptime_ms = multiply(*value, Decimal::from_int(1000));
          if (uptime_ms) {
            auto started = subtract(Decimal::from_int(timestamp_ms), *uptime_ms);
            // The boot instant, when it is a whole millisecond after the reading before.
            auto text = started ? started->text() : std::string();
            std::int64_t boot = 0;
            const auto* end = text.data() + text.size();
            if (!text.empty() && std::from_chars(text.data(), end, boot).ptr == end) {
              instant = std::max(instant, boot);
            }
          }
          instants.push_back(std::min(instant, timestamp_ms));
        } else if (metric.role == MetricRole::boot_count && previous->second < *value) {
          instants.push_back(timestamp_ms);
        }
      }
      previous = std::pair{timestamp_ms, std::move(*value)};
    }
  }
  std::sort(instants.begin(), instants.end());
  instants.erase(std::unique(instants.begin(), instants.end()), instants.end());
  return instants;
}

void Buffer::rejudge_series(const Config& config, CachedSeries& series, std::int64_t from_ms,
                            NormalizeStats& stats) {
  const MetricConfig* metric = config.metric(series.metric_type);
  if (metric == nullptr || metric->kind != MetricKind::counter) return;
  auto& s = *statements_;
  load_boundaries(config, series);
  StoredNeighbourhood neighbourhood(s.measurements_at, s.measurements_before, s.measurements_after,
                                    series.id);
  const SeriesRules rules{*metric, config.normalize.future_tolerance_ms, series.boundaries};
  if (!series.recovered) {
    series.state = recover_state(rules, series.state, neighbourhood);
    series.recovered = true;
  }
  SeriesDecision decision = rejudge(rules, series.state, from_ms, neighbourhood);
  apply_revisions(decision.revisions, stats);
  series.state = std::move(decision.state);
}

void Buffer::normalize_operator_event(const Config& config, std::int64_t seq,
                                      const RawMessage& message, NormalizeStats& stats) {
  auto event = parse_operator_event(message.payload);
  if (!event) {
    record_outcome(seq, "decode_error", "operator event: " + event.error().message);
    ++stats.decode_errors;
    return;
  }
  // The series is judged again from the replacement on, with the events in
  // force now (this one, or its withdrawal, included).
  if (CachedSeries* series = existing_series(event->device_id, event->metric_type)) {
    rejudge_series(config, *series, event->at_ms, stats);
  }
}

}  // namespace meter
