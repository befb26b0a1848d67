// The counter rules of docs/QUALITY.md as one left-to-right scan over a
// series in series order: which readings are on course, which are glitches,
// rollbacks, resets, jumps, gaps, period resets, replacements and restarts,
// and each reading's delta. Pure: no SQL, no I/O.
//
// The scan is a state machine fed one reading at a time. A reading that is
// off course waits (pending) until a later reading comes back on course (it
// was a glitch) or `glitch_window` readings have followed without a return
// (it is decided: rollback, counter_reset, suspicious_jump, implausible_rate).
// Its state is small (the last good reading g, the pending readings, the last
// timestamps), so the series engine keeps it per series and decides an
// in-order reading without asking the store anything; and a scan that
// reaches the state the stored verdicts had decides everything after it the
// same way, which is how a late reading's effects are bounded
// (series_engine.cpp).
//
// Every verdict is a function of the readings fed, in series order, and the
// boundaries: never of arrival order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config/config.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/series.hpp"

namespace meter {

// The flags the scan decides; a verdict replaces exactly these on a row.
inline constexpr FlagSet kSeriesRuleFlags =
    flag_bit(Flag::first_reading) | flag_bit(Flag::counter_reset) |
    flag_bit(Flag::suspicious_jump) | flag_bit(Flag::glitch) | flag_bit(Flag::rollback) |
    flag_bit(Flag::implausible_rate) | flag_bit(Flag::gap) | flag_bit(Flag::meter_replaced) |
    flag_bit(Flag::device_restarted) | flag_bit(Flag::period_reset);

// How many intervals the gap rule learns the series' pace from.
inline constexpr std::size_t kLearnedIntervals = 20;
// The fewest intervals before the gap rule judges anything.
inline constexpr std::size_t kFewestIntervals = 3;

// Something that happened to the meter between two readings: readings at or
// after `at_ms` are on its far side.
struct SeriesBoundary {
  enum class Kind {
    replacement,  // an operator's meter replacement: a new epoch
    restart,      // restart evidence of the device (uptime fell, boot count rose)
  };
  std::int64_t at_ms = 0;
  Kind kind = Kind::restart;
  std::optional<Decimal> old_final;    // replacement: the old register's last value
  std::optional<Decimal> new_initial;  // replacement: the new register's first value

  friend bool operator==(const SeriesBoundary&, const SeriesBoundary&) = default;
};

// Whose restart evidence bounds a device's series: the device itself and each
// device its id extends with '/' ("plug/switch:0" -> "plug/switch:0", "plug").
// Firmwares name a component's meter after the device that restarts with it:
// a Shelly's `sys` uptime is `<prefix>`, its meters `<prefix>/switch:N`; a
// Tasmota's uptime is `<topic>`, its CT sensors `<topic>/CTEnergy1`.
std::vector<std::string> restart_evidence_devices(std::string_view device_id);

// What the rules decide for one reading.
struct Verdict {
  std::optional<Decimal> delta;
  std::optional<std::int64_t> delta_from_ms;  // the timestamp of the reading the delta is from
  FlagSet flags = 0;                          // a subset of kSeriesRuleFlags

  friend bool operator==(const Verdict&, const Verdict&) = default;
};

struct ScanReading {
  std::int64_t id = 0;  // the caller's; handed back with the verdict
  SeriesKey key;
};

// Where a scan starts: the last good reading before it and the timestamps of
// the readings before it (distinct, ascending, at most kLearnedIntervals + 1).
struct ScanStart {
  std::optional<SeriesKey> good;
  std::vector<std::int64_t> history;
  // The timestamp of the last reading before the scan (whatever its verdict):
  // boundaries after it and at or before the next reading lie between them.
  std::optional<std::int64_t> last_timestamp_ms;
};

class SeriesScan {
 public:
  // `boundaries` sorted by at_ms; they must outlive the scan.
  SeriesScan(const MetricConfig& metric, std::span<const SeriesBoundary> boundaries,
             ScanStart start);

  // The next reading in series order. Verdicts that become final are
  // appended to decided().
  void feed(const ScanReading& reading);
  // No reading follows: every pending reading is decided provisionally (a
  // drop is counter_reset, never rollback: a return may still come).
  void finish();

  // (id, verdict) in the order they were decided.
  std::vector<std::pair<std::int64_t, Verdict>>& decided() { return decided_; }
  const std::vector<std::pair<std::int64_t, Verdict>>& decided() const { return decided_; }
  const std::vector<ScanReading>& pending() const { return pending_; }
  const std::optional<SeriesKey>& good() const { return good_; }

  // The scan's state as a start: valid when nothing is pending.
  ScanStart start() const;

 private:
  // How a reading with no return is decided: for good, or until more come.
  enum class Mode { final, provisional };
  void judge(const ScanReading& reading);
  void settle_first_pending(Mode mode);
  void accept(const ScanReading& reading, Verdict verdict);
  // The change from the last good reading when the reading is on course.
  std::optional<Decimal> on_course(const SeriesKey& reading) const;
  bool period_reset(const SeriesKey& reading) const;
  Verdict on_course_verdict(const SeriesKey& reading, Decimal change) const;
  Verdict off_course_verdict(const SeriesKey& reading, Mode mode) const;
  std::optional<std::int64_t> median_interval_before(std::int64_t timestamp_ms) const;
  void remember_timestamp(std::int64_t timestamp_ms);

  const MetricConfig& metric_;
  std::span<const SeriesBoundary> boundaries_;
  std::optional<SeriesKey> good_;
  std::vector<ScanReading> pending_;
  std::vector<std::int64_t> history_;  // distinct, ascending
  std::optional<std::int64_t> last_timestamp_ms_;
  std::vector<std::pair<std::int64_t, Verdict>> decided_;
};

}  // namespace meter
