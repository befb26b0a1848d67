// The series engine: what storing one reading does to its series (device_id,
// metric_type) — the row to insert with its delta and flags, or the stored row
// it repeats; the stored rows to revise; the series' new tail. Pure: no SQL,
// no I/O. common/buffer/normalizer.cpp asks it for a decision and applies it
// in the normalization transaction.
//
// Shape, and why:
// - The engine asks for the neighbours it needs through SeriesNeighbourhood
//   rather than being handed a fixed predecessor and successor: what it needs
//   depends on the reading (none when it is newer than the tail; the readings
//   at its timestamp, then the nearest ones on each side, otherwise), and rules
//   to come need more (several readings on each side, forward re-evaluation
//   after a late reading). Asking lazily keeps today's queries: no more than
//   the rules use.
// - The in-order common case (newer than the cached tail) is decided from
//   SeriesState alone: no virtual call, no query, and no more allocation than
//   the rules took before they were an engine (the delta's text, the new
//   tail). A virtual call per out-of-order reading costs nothing next to the
//   queries it makes.
// - SeriesState is what the caller remembers of a series between readings
//   (the tail, the anchor); it is the place for per-series state to come (a
//   learned interval, operator events such as a meter replacement). The engine
//   never changes it: the decision says what the new state is.
// - A decision is a value the caller applies; a test applies it to a map
//   (tests/support/memory_series.hpp), the buffer to SQLite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/series.hpp"
#include "common/normalize/series_scan.hpp"

namespace meter {

// A reading as stored in its series.
struct StoredReading {
  std::int64_t id = 0;  // the store's row id (> 0); the engine only hands it back
  SeriesKey key;
  std::optional<std::string> delta;  // canonical decimal text; empty for none
  FlagSet flags = 0;
  std::int64_t first_received_ms = 0;         // the earliest receive time of any copy
  std::optional<std::int64_t> delta_from_ms;  // the timestamp the delta is measured from
};

// The id a decision gives the reading it inserts, until the store assigns one
// (SeriesState::adopt_inserted).
inline constexpr std::int64_t kInsertedRow = 0;

// The stored readings around a reading, as the engine asks for them. Every
// answer is in series order (series_before). Implemented by the store.
class SeriesNeighbourhood {
 public:
  virtual ~SeriesNeighbourhood() = default;
  // Every stored reading with exactly this timestamp.
  virtual std::vector<StoredReading> at(std::int64_t timestamp_ms) = 0;
  // The last `count` stored readings with a timestamp before this one, whole
  // timestamps (so possibly a few more); fewer only when the series holds
  // fewer. The nearest is the last.
  virtual std::vector<StoredReading> before(std::int64_t timestamp_ms, std::size_t count) = 0;
  // The first `count` stored readings with a timestamp after this one, whole
  // timestamps; fewer only at the end of the series. The nearest is first.
  virtual std::vector<StoredReading> after(std::int64_t timestamp_ms, std::size_t count) = 0;
};

// What the caller remembers of a series between readings.
struct SeriesState {
  // The last stored reading in series order, as far as the engine's decisions
  // have moved it (a reading stored beyond_retention never moves it).
  std::optional<SeriesKey> tail;
  // The newest reading pruned from the store: readings at or before it are
  // beyond_retention.
  std::optional<SeriesKey> anchor;
  // The scan's state where the kept readings begin: the last good reading
  // pruned and the timestamps before it (what renormalize starts from).
  ScanStart anchor_scan;
  // The scan's state at the tail's last good reading, and the stored readings
  // after it still waiting for a return (at most glitch_window), in series
  // order: an in-order reading is decided from these alone.
  ScanStart scan;
  std::vector<StoredReading> pending;

  // The store inserted the decided reading as row `id`.
  void adopt_inserted(std::int64_t id) {
    for (auto& row : pending) {
      if (row.id == kInsertedRow) row.id = id;
    }
  }
};

// The settings the rules take.
struct SeriesRules {
  const MetricConfig& metric;
  std::int64_t future_tolerance_ms = 0;
  // Replacements and restarts of this series' meter, sorted by at_ms.
  std::span<const SeriesBoundary> boundaries = {};
};

// The reading to store (canonical: value in the metric's unit).
struct SeriesReading {
  SeriesKey key;
  FlagSet flags = 0;  // what canonicalization found (kIntrinsicFlags)
  std::int64_t received_ms = 0;
};

// A new content for a stored row.
struct SeriesRevision {
  std::int64_t id = 0;
  std::optional<std::string> delta;
  FlagSet flags = 0;
  std::int64_t first_received_ms = 0;
  std::optional<std::int64_t> delta_from_ms;
  // The delta, its origin or the flags changed: a new revision of the row
  // (to sync). When false only first_received_ms changed, which is no new
  // revision.
  bool content_changed = false;
};

struct SeriesDecision {
  // Set when the reading repeats this stored row (same timestamp and value):
  // nothing is inserted; the row may be revised below.
  std::optional<std::int64_t> repeat_of;
  // The row to insert when repeat_of is empty.
  std::optional<std::string> delta;
  std::optional<std::int64_t> delta_from_ms;
  FlagSet flags = 0;
  // Stored rows whose content changes, in id order; rows that would not
  // change are left out.
  std::vector<SeriesRevision> revisions;
  // The series' state after the decision (pending may name kInsertedRow).
  SeriesState state;
};

// Decides what storing `reading` does to its series.
//
// The rules (docs/QUALITY.md has them in full):
// - Counters: the scan of series_scan.hpp decides every reading's delta and
//   rule flags from the readings in series order: on course, glitch,
//   rollback, counter_reset, suspicious_jump, implausible_rate, gap,
//   period_reset, meter_replaced, device_restarted. A reading newer than the
//   tail is decided from SeriesState alone; an older one re-scans from
//   glitch_window readings before it until the scan with it reaches the same
//   state as the scan without it. Every reading whose verdict changes is
//   revised.
// - A reading at or before the anchor is beyond_retention (no delta).
// - A repeat (same timestamp and value as a stored row) inserts nothing: the
//   row takes the union of the copies' intrinsic flags and the earliest
//   receive time, and future_timestamp is re-decided from that time.
// - out_of_order: the reading is older than the tail when it arrives (the
//   only flag that depends on arrival order).
// - timestamp_conflict: the series holds another value at the same timestamp;
//   set on every reading of the group.
// - negative_value and future_timestamp come from the reading alone.
SeriesDecision decide(const SeriesRules& rules, const SeriesState& state,
                      const SeriesReading& reading, SeriesNeighbourhood& neighbourhood);

// The state of a series whose rows are stored but whose scan state is not
// known (state.tail and state.anchor only): the store was opened again.
SeriesState recover_state(const SeriesRules& rules, const SeriesState& state,
                          SeriesNeighbourhood& neighbourhood);

// Judges the series again from `from_ms` on (its boundaries changed: an
// operator's replacement, restart evidence): the revisions and new state.
SeriesDecision rejudge(const SeriesRules& rules, const SeriesState& state, std::int64_t from_ms,
                       SeriesNeighbourhood& neighbourhood);

}  // namespace meter
