#include "common/normalize/series_engine.hpp"

#include <algorithm>
#include <utility>

namespace meter {
namespace {

std::optional<std::string> delta_text(const std::optional<Decimal>& delta) {
  if (!delta) return std::nullopt;
  return delta->text();
}

FlagSet future_flag(std::int64_t timestamp_ms, std::int64_t received_ms, std::int64_t tolerance) {
  return timestamp_ms > received_ms && timestamp_ms - received_ms > tolerance
             ? flag_bit(Flag::future_timestamp)
             : 0;
}

// Stored readings a late reading's re-scan needs on each side: the window it
// can turn into glitches, and the timestamps the gap rule learns from.
std::size_t context_rows(const MetricConfig& metric) {
  return metric.glitch_window + kLearnedIntervals + 2;
}

ScanReading scan_reading(const StoredReading& row) { return ScanReading{row.id, row.key}; }

// The row already carries this verdict.
bool same_verdict(const StoredReading& row, const Verdict& verdict) {
  return (row.flags & kSeriesRuleFlags) == verdict.flags &&
         row.delta_from_ms == verdict.delta_from_ms &&
         row.delta.has_value() == verdict.delta.has_value() &&
         (!row.delta || *row.delta == verdict.delta->text());
}

// Where the kept readings begin: the scan's state at the anchor. A buffer
// from before the scan kept only the anchor's key, which was then the
// predecessor of the oldest kept reading: the same thing.
ScanStart anchor_start(const SeriesState& state) {
  ScanStart start = state.anchor_scan;
  if (!start.good && state.anchor) start.good = state.anchor;
  if (!start.last_timestamp_ms && start.good) start.last_timestamp_ms = start.good->timestamp_ms;
  return start;
}

// Where an in-order reading's scan starts.
ScanStart tail_start(const SeriesState& state) {
  return state.tail ? state.scan : anchor_start(state);
}

// The rows a decision revises, as they were and as they become; each row is
// revised once however many rules touch it.
class Revisions {
 public:
  SeriesRevision& revise(const StoredReading& row) {
    for (auto& entry : entries_) {
      if (entry.original.id == row.id) return entry.revised;
    }
    entries_.push_back(Entry{row, SeriesRevision{row.id, row.delta, row.flags,
                                                 row.first_received_ms, row.delta_from_ms, false}});
    return entries_.back().revised;
  }

  void apply_verdict(const StoredReading& row, const Verdict& verdict) {
    auto& r = revise(row);
    r.delta = delta_text(verdict.delta);
    r.delta_from_ms = verdict.delta_from_ms;
    r.flags = (r.flags & ~kSeriesRuleFlags) | verdict.flags;
  }

  // Moves the rows that change into the decision, in id order, and brings
  // the state's copies of pending rows up to date.
  void finish(SeriesDecision& decision) {
    std::sort(entries_.begin(), entries_.end(),
              [](const Entry& a, const Entry& b) { return a.original.id < b.original.id; });
    for (auto& entry : entries_) {
      auto& r = entry.revised;
      const auto& row = entry.original;
      r.content_changed =
          r.delta != row.delta || r.flags != row.flags || r.delta_from_ms != row.delta_from_ms;
      if (!r.content_changed && r.first_received_ms == row.first_received_ms) continue;
      for (auto& pending : decision.state.pending) {
        if (pending.id != r.id) continue;
        pending.delta = r.delta;
        pending.flags = r.flags;
        pending.first_received_ms = r.first_received_ms;
        pending.delta_from_ms = r.delta_from_ms;
      }
      decision.revisions.push_back(std::move(r));
    }
  }

 private:
  struct Entry {
    StoredReading original;
    SeriesRevision revised;
  };
  std::vector<Entry> entries_;
};

// The pending readings of `scan` as stored rows with the verdicts `finished`
// gives them; `rows` has every reading the scans were fed.
std::vector<StoredReading> pending_rows(const SeriesScan& scan, const SeriesScan& finished,
                                        const std::vector<StoredReading>& rows) {
  std::vector<StoredReading> pending;
  for (const auto& waiting : scan.pending()) {
    for (const auto& row : rows) {
      if (row.id != waiting.id) continue;
      StoredReading copy = row;
      for (const auto& [id, verdict] : finished.decided()) {
        if (id != row.id) continue;
        copy.delta = delta_text(verdict.delta);
        copy.delta_from_ms = verdict.delta_from_ms;
        copy.flags = (copy.flags & ~kSeriesRuleFlags) | verdict.flags;
      }
      pending.push_back(std::move(copy));
      break;
    }
  }
  return pending;
}

// Applies the scan's verdicts: the inserted row's into the decision, the
// stored rows' as revisions.
void apply_verdicts(const std::vector<std::pair<std::int64_t, Verdict>>& verdicts,
                    const std::vector<StoredReading>& rows, Revisions& revisions,
                    SeriesDecision& decision) {
  for (const auto& [id, verdict] : verdicts) {
    if (id == kInsertedRow) {
      decision.delta = delta_text(verdict.delta);
      decision.delta_from_ms = verdict.delta_from_ms;
      decision.flags = (decision.flags & ~kSeriesRuleFlags) | verdict.flags;
      continue;
    }
    for (const auto& row : rows) {
      if (row.id == id) {
        revisions.apply_verdict(row, verdict);
        break;
      }
    }
  }
}

// A re-scan of the stored readings around `pivot`, with `inserted` fed in its
// place when there is one. The scan restarts glitch_window readings before
// the pivot (no earlier verdict can change: their windows end before it) and
// stops where a scan without the inserted reading reaches the same state, or
// at the end of the series.
class Rescan {
 public:
  Rescan(const SeriesRules& rules, const SeriesState& state, SeriesNeighbourhood& neighbourhood)
      : rules_(rules), state_(state), neighbourhood_(neighbourhood) {}

  // `before_pivot`: rows in series order before the pivot; `after_pivot`:
  // rows after it at the pivot's own timestamp. Fills decision.state.
  void run(const SeriesKey& pivot, std::vector<StoredReading> before_pivot,
           std::vector<StoredReading> after_pivot, const std::optional<ScanReading>& inserted,
           const StoredReading* inserted_row, Revisions& revisions, SeriesDecision& decision) {
    const MetricConfig& metric = rules_.metric;
    const std::size_t wanted = context_rows(metric);
    std::size_t restart = 0;
    std::vector<StoredReading> prefix;
    const ScanStart start = restart_point(pivot, std::move(before_pivot), prefix, restart);
    SeriesScan with(metric, rules_.boundaries, start);
    std::vector<StoredReading> fed;
    for (std::size_t i = restart; i < prefix.size(); ++i) {
      with.feed(scan_reading(prefix[i]));
      fed.push_back(prefix[i]);
    }
    if (inserted) {
      with.feed(*inserted);
      fed.push_back(*inserted_row);
    }

    // The scan without the inserted reading would be in the same state after
    // a row that both decide on course alike (its stored verdict: same delta
    // from the same reading, nothing waiting), once the inserted timestamp
    // has left the intervals the gap rule learns from. Every later verdict is
    // then the stored one.
    bool converged = false;
    std::size_t timestamps_after = 0;
    std::optional<std::int64_t> last_after;
    std::vector<StoredReading> later = std::move(after_pivot);
    std::size_t next = 0;
    bool at_end = false;
    for (;;) {
      if (next == later.size()) {
        if (at_end) break;
        const std::int64_t from =
            later.empty() ? pivot.timestamp_ms : later.back().key.timestamp_ms;
        auto chunk = neighbourhood_.after(from, wanted);
        at_end = chunk.size() < wanted;
        for (auto& row : chunk) later.push_back(std::move(row));
        if (next == later.size()) break;
      }
      const StoredReading& row = later[next++];
      with.feed(scan_reading(row));
      fed.push_back(row);
      if (!last_after || *last_after < row.key.timestamp_ms) {
        ++timestamps_after;
        last_after = row.key.timestamp_ms;
      }
      if (inserted && timestamps_after > kLearnedIntervals + 1 && with.pending().empty() &&
          !with.decided().empty() && with.decided().back().first == row.id &&
          same_verdict(row, with.decided().back().second)) {
        converged = true;
        break;
      }
    }

    decision.state = state_;
    if (converged) {
      apply_verdicts(with.decided(), fed, revisions, decision);
      return;
    }
    SeriesScan finished = with;
    finished.finish();
    apply_verdicts(finished.decided(), fed, revisions, decision);
    decision.state.scan = with.start();
    decision.state.pending = pending_rows(with, finished, fed);
  }

  // The stored rows before `pivot` (then `before_pivot`) that a re-scan
  // feeds again, from `restart` on, and the scan's state before them.
  ScanStart restart_point(const SeriesKey& pivot, std::vector<StoredReading> before_pivot,
                          std::vector<StoredReading>& prefix, std::size_t& restart) {
    const MetricConfig& metric = rules_.metric;
    const std::size_t wanted = context_rows(metric);
    auto earlier = neighbourhood_.before(pivot.timestamp_ms, wanted);
    bool reached_start = earlier.size() < wanted;
    for (auto& row : before_pivot) earlier.push_back(std::move(row));
    for (auto& row : earlier) {
      if (state_.anchor && !series_before(*state_.anchor, row.key)) {
        reached_start = true;  // beyond retention: not part of the scan
        continue;
      }
      prefix.push_back(std::move(row));
    }

    // No verdict before `restart` can change: the windows of those readings
    // end before the pivot. The last good reading before it is the last one
    // not a glitch (every other verdict makes a reading the last good one).
    restart = prefix.size() > metric.glitch_window ? prefix.size() - metric.glitch_window : 0;
    ScanStart start;
    std::optional<std::size_t> good;
    for (std::size_t i = restart; i-- > 0;) {
      if (!has_flag(prefix[i].flags, Flag::glitch)) {
        good = i;
        break;
      }
    }
    if (good || !reached_start) {
      // Not found far from the start: the stored verdicts came from other
      // settings (a wider window); the oldest row read is the best guess.
      start.good = prefix[good.value_or(0)].key;
      if (reached_start) start.history = anchor_start(state_).history;
    } else {
      start = anchor_start(state_);
    }
    for (std::size_t i = 0; i < restart; ++i) {
      const auto timestamp = prefix[i].key.timestamp_ms;
      if (start.history.empty() || start.history.back() < timestamp) {
        start.history.push_back(timestamp);
      }
    }
    if (restart > 0) start.last_timestamp_ms = prefix[restart - 1].key.timestamp_ms;
    return start;
  }

  // The state at the tail, from the stored rows (a store opened again, or
  // its cache dropped): the scan over the last rows, their stored verdicts
  // kept.
  SeriesState recover() {
    SeriesState state = state_;
    if (!state_.tail || rules_.metric.kind != MetricKind::counter) return state;
    std::vector<StoredReading> prefix;
    std::size_t restart = 0;
    const ScanStart start =
        restart_point(SeriesKey{state_.tail->timestamp_ms + 1, Decimal{}}, {}, prefix, restart);
    SeriesScan scan(rules_.metric, rules_.boundaries, start);
    for (std::size_t i = restart; i < prefix.size(); ++i) scan.feed(scan_reading(prefix[i]));
    state.scan = scan.start();
    state.pending.clear();
    for (const auto& waiting : scan.pending()) {
      for (const auto& row : prefix) {
        if (row.id == waiting.id) state.pending.push_back(row);
      }
    }
    return state;
  }

 private:
  const SeriesRules& rules_;
  const SeriesState& state_;
  SeriesNeighbourhood& neighbourhood_;
};

}  // namespace

SeriesDecision decide(const SeriesRules& rules, const SeriesState& state,
                      const SeriesReading& reading, SeriesNeighbourhood& neighbourhood) {
  const MetricConfig& metric = rules.metric;
  const SeriesKey& key = reading.key;
  const FlagSet own_flags =
      reading.flags | value_flags(metric, key.value) |
      future_flag(key.timestamp_ms, reading.received_ms, rules.future_tolerance_ms);

  // The common case: newer than everything stored in the series, decided
  // from the state alone. A series whose every row was pruned has no tail
  // but an anchor: a reading at or before the anchor is old, and what is
  // stored at its timestamp must be looked at like for any late reading.
  const bool at_or_before_anchor = state.anchor && !series_before(*state.anchor, key);
  if (!state.tail ? !at_or_before_anchor : key.timestamp_ms > state.tail->timestamp_ms) {
    SeriesDecision decision;
    decision.flags = own_flags;
    decision.state.tail = key;
    decision.state.anchor = state.anchor;
    decision.state.anchor_scan = state.anchor_scan;
    SeriesScan scan(metric, rules.boundaries, tail_start(state));
    for (const auto& row : state.pending) scan.feed(scan_reading(row));
    scan.feed(ScanReading{kInsertedRow, key});
    Revisions revisions;
    if (scan.pending().empty()) {
      // Everything decided (the common case): no provisional verdicts.
      apply_verdicts(scan.decided(), state.pending, revisions, decision);
      decision.state.scan = scan.start();
      revisions.finish(decision);
      return decision;
    }
    SeriesScan finished = scan;
    finished.finish();
    apply_verdicts(finished.decided(), state.pending, revisions, decision);
    std::vector<StoredReading> rows = state.pending;
    rows.push_back(StoredReading{kInsertedRow, key, decision.delta, decision.flags,
                                 reading.received_ms, decision.delta_from_ms});
    decision.state.scan = scan.start();
    decision.state.pending = pending_rows(scan, finished, rows);
    revisions.finish(decision);
    return decision;
  }

  // Everything else needs the stored neighbours: a repeat, an out-of-order
  // arrival, or a second reading with the tail's timestamp.
  SeriesDecision decision;
  decision.state = state;
  const std::vector<StoredReading> group = neighbourhood.at(key.timestamp_ms);
  Revisions revisions;

  // A repeat of a stored event: merge what the copy adds (its own flags, an
  // earlier receive time) so the result does not depend on which copy came
  // first.
  for (const auto& row : group) {
    if (row.key.value != key.value) continue;
    auto& r = revisions.revise(row);
    r.first_received_ms = std::min(row.first_received_ms, reading.received_ms);
    r.flags = (row.flags | (reading.flags & kIntrinsicFlags)) & ~flag_bit(Flag::future_timestamp);
    r.flags |= future_flag(key.timestamp_ms, r.first_received_ms, rules.future_tolerance_ms);
    decision.repeat_of = row.id;
    revisions.finish(decision);
    return decision;
  }

  FlagSet flags = own_flags;
  if (state.tail && state.tail->timestamp_ms > key.timestamp_ms) {
    flags |= flag_bit(Flag::out_of_order);
  }
  if (!group.empty()) {
    flags |= flag_bit(Flag::timestamp_conflict);
    for (const auto& row : group) revisions.revise(row).flags |= flag_bit(Flag::timestamp_conflict);
  }
  decision.flags = flags;

  if (at_or_before_anchor) {
    // Older than what the buffer holds: no neighbours to judge it by.
    if (metric.kind == MetricKind::counter) decision.flags |= flag_bit(Flag::beyond_retention);
    revisions.finish(decision);
    return decision;  // the tail is unchanged
  }

  // The readings at the same timestamp are in series order around it.
  std::vector<StoredReading> below;
  std::vector<StoredReading> above;
  for (const auto& row : group) {
    StoredReading copy = row;
    copy.flags |= flag_bit(Flag::timestamp_conflict);
    (series_before(row.key, key) ? below : above).push_back(std::move(copy));
  }
  const StoredReading inserted_row{kInsertedRow,        key,         std::nullopt, flags,
                                   reading.received_ms, std::nullopt};
  Rescan(rules, state, neighbourhood)
      .run(key, std::move(below), std::move(above), ScanReading{kInsertedRow, key}, &inserted_row,
           revisions, decision);
  if (!state.tail || series_before(*state.tail, key)) decision.state.tail = key;
  decision.flags |= flags;
  revisions.finish(decision);
  return decision;
}

SeriesState recover_state(const SeriesRules& rules, const SeriesState& state,
                          SeriesNeighbourhood& neighbourhood) {
  return Rescan(rules, state, neighbourhood).recover();
}

SeriesDecision rejudge(const SeriesRules& rules, const SeriesState& state, std::int64_t from_ms,
                       SeriesNeighbourhood& neighbourhood) {
  SeriesDecision decision;
  decision.state = state;
  if (rules.metric.kind != MetricKind::counter) return decision;
  Revisions revisions;
  // Pivot just before the first reading at from_ms: every reading at or
  // after it is fed again, with glitch_window readings before it.
  auto at_from = neighbourhood.at(from_ms);
  Rescan(rules, state, neighbourhood)
      .run(SeriesKey{from_ms, Decimal{}}, {}, std::move(at_from), std::nullopt, nullptr, revisions,
           decision);
  revisions.finish(decision);
  return decision;
}

}  // namespace meter
