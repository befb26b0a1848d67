// One series held in memory: the series engine's neighbourhood and the store
// its decisions are applied to, the way the buffer applies them to SQLite
// (insert, revise, repeat, move the tail), without SQLite.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "common/normalize/series_engine.hpp"

namespace meter::test {

class MemorySeries final : public SeriesNeighbourhood {
 public:
  explicit MemorySeries(SeriesState state = {}) : state_(std::move(state)) {}

  // Decides and applies.
  SeriesDecision store(const SeriesRules& rules, const SeriesReading& reading) {
    SeriesDecision decision = decide(rules, state_, reading, *this);
    apply(reading, decision);
    return decision;
  }

  void apply(const SeriesReading& reading, const SeriesDecision& decision) {
    for (const auto& r : decision.revisions) {
      auto& row = find(r.id);
      row.delta = r.delta;
      row.flags = r.flags;
      row.first_received_ms = r.first_received_ms;
      row.delta_from_ms = r.delta_from_ms;
      if (r.content_changed) ++revisions_[r.id];
    }
    if (!decision.repeat_of) {
      auto position = std::lower_bound(rows_.begin(), rows_.end(), reading.key,
                                       [](const StoredReading& row, const SeriesKey& key) {
                                         return series_before(row.key, key);
                                       });
      if (position != rows_.end() && !series_before(reading.key, position->key)) {
        // What the buffer's unique index on (series, timestamp, value) refuses.
        throw std::logic_error("inserted a second row with the same timestamp and value");
      }
      const std::int64_t id = next_id_++;
      rows_.insert(position, StoredReading{id, reading.key, decision.delta, decision.flags,
                                           reading.received_ms, decision.delta_from_ms});
      revisions_[id] = 1;
      state_ = decision.state;
      state_.adopt_inserted(id);
    } else {
      state_ = decision.state;
    }
  }

  // In series order.
  const std::vector<StoredReading>& rows() const { return rows_; }
  const SeriesState& state() const { return state_; }
  int revision(std::int64_t id) const { return revisions_.at(id); }
  // How often the engine asked the neighbourhood anything.
  int queries() const { return queries_; }

  std::vector<StoredReading> at(std::int64_t timestamp_ms) override {
    ++queries_;
    std::vector<StoredReading> result;
    for (const auto& row : rows_) {
      if (row.key.timestamp_ms == timestamp_ms) result.push_back(row);
    }
    return result;
  }

  std::vector<StoredReading> before(std::int64_t timestamp_ms, std::size_t count) override {
    ++queries_;
    std::vector<StoredReading> result;
    // Whole timestamps, like the store: a group is never cut.
    for (auto row = rows_.rbegin(); row != rows_.rend(); ++row) {
      if (row->key.timestamp_ms >= timestamp_ms) continue;
      if (result.size() >= count && row->key.timestamp_ms != result.back().key.timestamp_ms) break;
      result.push_back(*row);
    }
    std::reverse(result.begin(), result.end());
    return result;
  }

  std::vector<StoredReading> after(std::int64_t timestamp_ms, std::size_t count) override {
    ++queries_;
    std::vector<StoredReading> result;
    for (auto row = rows_.begin(); row != rows_.end(); ++row) {
      if (row->key.timestamp_ms <= timestamp_ms) continue;
      if (result.size() >= count && row->key.timestamp_ms != result.back().key.timestamp_ms) break;
      result.push_back(*row);
    }
    return result;
  }

 private:
  StoredReading& find(std::int64_t id) {
    for (auto& row : rows_) {
      if (row.id == id) return row;
    }
    throw std::logic_error("revised a row that is not stored");
  }

  SeriesState state_;
  std::vector<StoredReading> rows_;
  std::map<std::int64_t, int> revisions_;
  std::int64_t next_id_ = 1;
  int queries_ = 0;
};

}  // namespace meter::test
