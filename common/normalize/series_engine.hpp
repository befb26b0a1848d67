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
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/series.hpp"

namespace meter {

// A reading as stored in its series.
struct StoredReading {
  std::int64_t id = 0;  // the store's row id; the engine only hands it back
  SeriesKey key;
  std::optional<std::string> delta;  // canonical decimal text; empty for none
  FlagSet flags = 0;
  std::int64_t first_received_ms = 0;  // the earliest receive time of any copy
};

// The stored readings around a reading, as the engine asks for them. Every
// answer is in series order (series_before). Implemented by the store.
class SeriesNeighbourhood {
 public:
  virtual ~SeriesNeighbourhood() = default;
  // Every stored reading with exactly this timestamp.
  virtual std::vector<StoredReading> at(std::int64_t timestamp_ms) = 0;
  // The last `count` stored readings with a timestamp before this one
  // (fewer if the series holds fewer); the nearest is the last.
  virtual std::vector<StoredReading> before(std::int64_t timestamp_ms, std::size_t count) = 0;
  // The first `count` stored readings with a timestamp after this one; the
  // nearest is the first.
  virtual std::vector<StoredReading> after(std::int64_t timestamp_ms, std::size_t count) = 0;
};

// What the caller remembers of a series between readings.
struct SeriesState {
  // The last stored reading in series order, as far as the engine's decisions
  // have moved it (a reading stored beyond_retention never moves it).
  std::optional<SeriesKey> tail;
  // The newest reading pruned from the store: readings at or before it are
  // beyond_retention; it is the predecessor of the oldest reading kept.
  std::optional<SeriesKey> anchor;
};

// The settings the rules take.
struct SeriesRules {
  const MetricConfig& metric;
  std::int64_t future_tolerance_ms = 0;
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
  // The delta or the flags changed: a new revision of the row (to sync).
  // When false only first_received_ms changed, which is no new revision.
  bool content_changed = false;
};

struct SeriesDecision {
  // Set when the reading repeats this stored row (same timestamp and value):
  // nothing is inserted; the row may be revised below.
  std::optional<std::int64_t> repeat_of;
  // The row to insert when repeat_of is empty.
  std::optional<std::string> delta;
  FlagSet flags = 0;
  // Stored rows whose content changes, in id order; rows that would not
  // change are left out.
  std::vector<SeriesRevision> revisions;
  // The series' new tail, when it moves.
  std::optional<SeriesKey> new_tail;
};

// Decides what storing `reading` does to its series.
//
// The rules:
// - Delta and neighbour flags (first_reading, counter_reset, suspicious_jump,
//   beyond_retention) come from the predecessor in series order
//   (compute_delta); a reading at or before the anchor is beyond_retention.
//   The predecessor of the oldest kept reading is the anchor.
// - A reading that lands before a stored one becomes its successor's
//   predecessor: the successor's delta and neighbour flags are recomputed.
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

}  // namespace meter
