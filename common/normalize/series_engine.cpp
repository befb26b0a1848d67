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

void set_insert(SeriesDecision& decision, const DeltaOutcome& outcome, FlagSet flags) {
  decision.delta = delta_text(outcome.delta);
  decision.flags = flags | outcome.flags;
}

// The rows a decision revises, as they were and as they become; each row is
// revised once however many rules touch it.
class Revisions {
 public:
  SeriesRevision& revise(const StoredReading& row) {
    for (auto& entry : entries_) {
      if (entry.original->id == row.id) return entry.revised;
    }
    entries_.push_back(
        Entry{&row, SeriesRevision{row.id, row.delta, row.flags, row.first_received_ms, false}});
    return entries_.back().revised;
  }

  // Moves the rows that change into the decision, in id order.
  void finish(SeriesDecision& decision) {
    std::sort(entries_.begin(), entries_.end(),
              [](const Entry& a, const Entry& b) { return a.original->id < b.original->id; });
    for (auto& entry : entries_) {
      auto& r = entry.revised;
      const auto& row = *entry.original;
      r.content_changed = r.delta != row.delta || r.flags != row.flags;
      if (!r.content_changed && r.first_received_ms == row.first_received_ms) continue;
      decision.revisions.push_back(std::move(r));
    }
  }

 private:
  struct Entry {
    const StoredReading* original;  // owned by the caller, alive until finish
    SeriesRevision revised;
  };
  std::vector<Entry> entries_;
};

// A reading newer than everything stored (or the first of its series):
// decided from the state alone.
SeriesDecision decide_newest(const SeriesRules& rules, const SeriesState& state,
                             const SeriesReading& reading, FlagSet own_flags) {
  SeriesDecision decision;
  const auto& key = reading.key;
  std::optional<Decimal> predecessor;
  if (state.tail)
    predecessor = state.tail->value;
  else if (state.anchor)
    predecessor = state.anchor->value;
  set_insert(decision, compute_delta(rules.metric, key.value, predecessor, false), own_flags);
  decision.new_tail = key;
  return decision;
}

}  // namespace

SeriesDecision decide(const SeriesRules& rules, const SeriesState& state,
                      const SeriesReading& reading, SeriesNeighbourhood& neighbourhood) {
  const MetricConfig& metric = rules.metric;
  const SeriesKey& key = reading.key;
  const FlagSet own_flags =
      reading.flags | value_flags(metric, key.value) |
      future_flag(key.timestamp_ms, reading.received_ms, rules.future_tolerance_ms);

  // The common case: newer than everything stored in the series. A series
  // whose every row was pruned has no tail but an anchor: a reading at or
  // before the anchor is old, and what is stored at its timestamp (an earlier
  // copy, another value) must be looked at like for any late reading.
  const bool at_or_before_anchor = state.anchor && !series_before(*state.anchor, key);
  if (!state.tail ? !at_or_before_anchor : key.timestamp_ms > state.tail->timestamp_ms) {
    return decide_newest(rules, state, reading, own_flags);
  }

  // Everything else needs the stored neighbours: a repeat, an out-of-order
  // arrival, or a second reading with the tail's timestamp.
  SeriesDecision decision;
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

  if (state.anchor && !series_before(*state.anchor, key)) {
    set_insert(decision, compute_delta(metric, key.value, std::nullopt, true), flags);
    revisions.finish(decision);
    return decision;  // the tail is unchanged
  }

  // Predecessor: the previous reading in series order, or the anchor.
  std::optional<SeriesKey> predecessor;
  for (const auto& row : group) {
    if (row.key.value < key.value) predecessor = row.key;
  }
  if (!predecessor) {
    auto previous = neighbourhood.before(key.timestamp_ms, 1);
    if (!previous.empty()) predecessor = std::move(previous.back().key);
  }
  if (state.anchor && (!predecessor || series_before(*predecessor, *state.anchor))) {
    predecessor = state.anchor;
  }

  // Successor: the next reading in series order; its delta now starts here.
  std::vector<StoredReading> next;
  const StoredReading* successor = nullptr;
  for (const auto& row : group) {
    if (key.value < row.key.value) {
      successor = &row;
      break;
    }
  }
  if (successor == nullptr) {
    next = neighbourhood.after(key.timestamp_ms, 1);
    if (!next.empty()) successor = &next.front();
  }

  std::optional<Decimal> predecessor_value;
  if (predecessor) predecessor_value = predecessor->value;
  set_insert(decision, compute_delta(metric, key.value, predecessor_value, false), flags);

  if (successor != nullptr) {
    auto& r = revisions.revise(*successor);
    const auto outcome = compute_delta(metric, successor->key.value, key.value, false);
    r.delta = delta_text(outcome.delta);
    r.flags = (r.flags & ~kNeighbourFlags) | outcome.flags;
  }
  revisions.finish(decision);

  if (!state.tail || series_before(*state.tail, key)) decision.new_tail = key;
  return decision;
}

}  // namespace meter
