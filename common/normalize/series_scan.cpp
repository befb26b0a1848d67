#include "common/normalize/series_scan.hpp"

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <chrono>

namespace meter {
namespace {

constexpr std::int64_t kMillisecondsPerHour = 3'600'000;

// |value|
Decimal magnitude(const Decimal& value) { return value.is_negative() ? value.negated() : value; }

// change x 1h <= rate x elapsed, exactly: "the change is within what max_rate
// allows over `elapsed_ms`". Arithmetic past Decimal's limits counts as not
// within (a register that moves by 10^40 is not on course).
bool within_rate(const Decimal& change, const Decimal& rate, std::int64_t elapsed_ms) {
  auto scaled_change = multiply(magnitude(change), Decimal::from_int(kMillisecondsPerHour));
  auto allowed = multiply(rate, Decimal::from_int(elapsed_ms));
  if (!scaled_change || !allowed) return false;
  return *scaled_change <= *allowed;
}

// The local calendar day of an instant in `zone`, as days since the epoch.
std::int64_t local_day(const date::time_zone& zone, std::int64_t timestamp_ms) {
  const auto instant =
      std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(timestamp_ms));
  const auto local = zone.to_local(instant);
  return date::floor<date::days>(local).time_since_epoch().count();
}

// The instant the local day of `timestamp_ms` began in `zone`.
std::int64_t local_midnight_ms(const date::time_zone& zone, std::int64_t timestamp_ms) {
  const auto instant =
      std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(timestamp_ms));
  const auto midnight = date::floor<date::days>(zone.to_local(instant));
  // A midnight that does not exist (a DST gap at 00:00) or exists twice takes
  // the earliest instant: choose::earliest never throws.
  const auto start = zone.to_sys(midnight, date::choose::earliest);
  return std::chrono::duration_cast<std::chrono::milliseconds>(start.time_since_epoch()).count();
}

}  // namespace

SeriesScan::SeriesScan(const MetricConfig& metric, std::span<const SeriesBoundary> boundaries,
                       ScanStart start)
    : metric_(metric),
      boundaries_(boundaries),
      good_(std::move(start.good)),
      history_(std::move(start.history)),
      last_timestamp_ms_(start.last_timestamp_ms) {}

ScanStart SeriesScan::start() const {
  ScanStart start;
  start.good = good_;
  for (const auto timestamp : history_) {
    if (!good_ || timestamp <= good_->timestamp_ms) start.history.push_back(timestamp);
  }
  if (start.history.size() > kLearnedIntervals + 1) {
    start.history.erase(start.history.begin(),
                        start.history.end() - static_cast<std::ptrdiff_t>(kLearnedIntervals + 1));
  }
  start.last_timestamp_ms = good_ ? std::optional(good_->timestamp_ms) : last_timestamp_ms_;
  return start;
}

void SeriesScan::remember_timestamp(std::int64_t timestamp_ms) {
  if (history_.empty() || history_.back() < timestamp_ms) history_.push_back(timestamp_ms);
  // Enough for the gap rule of every reading still pending.
  const std::size_t keep = kLearnedIntervals + 2 + metric_.glitch_window;
  if (history_.size() > keep) {
    history_.erase(history_.begin(), history_.end() - static_cast<std::ptrdiff_t>(keep));
  }
}

std::optional<std::int64_t> SeriesScan::median_interval_before(std::int64_t timestamp_ms) const {
  const auto end = std::lower_bound(history_.begin(), history_.end(), timestamp_ms);
  const auto count = static_cast<std::size_t>(end - history_.begin());
  if (count < kFewestIntervals + 1) return std::nullopt;
  const std::size_t used = std::min(count, kLearnedIntervals + 1);
  std::array<std::int64_t, kLearnedIntervals> intervals{};
  std::size_t size = 0;
  for (auto it = end - static_cast<std::ptrdiff_t>(used) + 1; it != end; ++it) {
    intervals[size++] = *it - *(it - 1);
  }
  // The lower median: an interval that occurred, never an average of two.
  auto* const last = intervals.begin() + static_cast<std::ptrdiff_t>(size);
  auto* const middle = intervals.begin() + static_cast<std::ptrdiff_t>((size - 1) / 2);
  std::nth_element(intervals.begin(), middle, last);
  return *middle;
}

std::optional<Decimal> SeriesScan::on_course(const SeriesKey& reading) const {
  auto change = subtract(reading.value, good_->value);
  if (!change) return std::nullopt;
  const std::int64_t elapsed_ms = reading.timestamp_ms - good_->timestamp_ms;
  bool within = true;
  if (metric_.direction == Direction::net) {
    // A net register may fall: only its rate tells a glitch.
    within = !metric_.max_rate || within_rate(*change, *metric_.max_rate, elapsed_ms);
  } else if (change->is_negative()) {
    within = false;
  } else if (metric_.max_rate) {
    within = within_rate(*change, *metric_.max_rate, elapsed_ms);
  } else if (metric_.jump_threshold) {
    within = *change <= *metric_.jump_threshold;
  }
  if (!within) return std::nullopt;
  return std::move(*change);
}

bool SeriesScan::period_reset(const SeriesKey& reading) const {
  if (metric_.period != Period::daily || metric_.period_zone == nullptr || !good_) return false;
  if (!(reading.value < good_->value)) return false;
  return local_day(*metric_.period_zone, reading.timestamp_ms) >
         local_day(*metric_.period_zone, good_->timestamp_ms);
}

Verdict SeriesScan::on_course_verdict(const SeriesKey& reading, Decimal change) const {
  Verdict verdict;
  verdict.delta = std::move(change);
  verdict.delta_from_ms = good_->timestamp_ms;
  if (metric_.direction == Direction::net && metric_.jump_threshold &&
      magnitude(*verdict.delta) > *metric_.jump_threshold) {
    verdict.flags |= flag_bit(Flag::suspicious_jump);
  }
  const std::int64_t elapsed_ms = reading.timestamp_ms - good_->timestamp_ms;
  if (auto median = median_interval_before(reading.timestamp_ms);
      median && elapsed_ms > *median) {  // gap_factor > 1: no longer than the median is no gap
    auto longest = multiply(metric_.gap_factor, Decimal::from_int(*median));
    if (longest && Decimal::from_int(elapsed_ms) > *longest) {
      verdict.flags |= flag_bit(Flag::gap);
    }
  }
  return verdict;
}

Verdict SeriesScan::off_course_verdict(const SeriesKey& reading, Mode mode) const {
  Verdict verdict;
  auto change = subtract(reading.value, good_->value);
  if (!change) {
    verdict.flags = flag_bit(Flag::counter_reset);
    return verdict;
  }
  if (metric_.direction != Direction::net && change->is_negative()) {
    const bool small = metric_.rollback_max && change->negated() <= *metric_.rollback_max;
    verdict.flags =
        mode == Mode::final && small ? flag_bit(Flag::rollback) : flag_bit(Flag::counter_reset);
    return verdict;
  }
  if (metric_.jump_threshold && magnitude(*change) > *metric_.jump_threshold) {
    verdict.flags |= flag_bit(Flag::suspicious_jump);
  }
  if (metric_.max_rate &&
      !within_rate(*change, *metric_.max_rate, reading.timestamp_ms - good_->timestamp_ms)) {
    verdict.flags |= flag_bit(Flag::implausible_rate);
  }
  verdict.delta = std::move(*change);
  verdict.delta_from_ms = good_->timestamp_ms;
  return verdict;
}

void SeriesScan::accept(const ScanReading& reading, Verdict verdict) {
  decided_.emplace_back(reading.id, std::move(verdict));
  good_ = reading.key;
}

void SeriesScan::feed(const ScanReading& reading) {
  const std::int64_t timestamp_ms = reading.key.timestamp_ms;
  // Boundaries since the previous reading.
  const SeriesBoundary* replacement = nullptr;
  bool restart = false;
  for (const auto& boundary : boundaries_) {
    if (boundary.at_ms > timestamp_ms) break;
    if (last_timestamp_ms_ && boundary.at_ms <= *last_timestamp_ms_) continue;
    if (boundary.kind == SeriesBoundary::Kind::replacement) {
      replacement = &boundary;
    } else {
      restart = true;
    }
  }
  remember_timestamp(timestamp_ms);
  last_timestamp_ms_ = timestamp_ms;
  if (metric_.kind != MetricKind::counter) {
    decided_.emplace_back(reading.id, Verdict{});
    return;
  }
  if (replacement == nullptr && !restart) {
    judge(reading);
    return;
  }

  // Rule 1: nothing after a replacement or a restart returns to a reading
  // before it, so everything pending is decided now, and this reading
  // starts afresh: never a glitch.
  while (!pending_.empty()) settle_first_pending(Mode::final);
  Verdict verdict;
  if (restart) verdict.flags |= flag_bit(Flag::device_restarted);
  if (replacement != nullptr) {
    verdict.flags |= flag_bit(Flag::meter_replaced);
    if (replacement->new_initial) {
      auto since_installed = subtract(reading.key.value, *replacement->new_initial);
      if (!since_installed || since_installed->is_negative()) {
        verdict.flags |= flag_bit(Flag::counter_reset);
      } else {
        // The old register's last stretch, when the operator read it.
        std::optional<Decimal> old_stretch;
        if (replacement->old_final && good_) {
          auto stretch = subtract(*replacement->old_final, good_->value);
          if (stretch && !stretch->is_negative()) old_stretch = std::move(*stretch);
        }
        if (old_stretch) {
          auto total = add(*old_stretch, *since_installed);
          if (total) {
            verdict.delta = std::move(*total);
            verdict.delta_from_ms = good_->timestamp_ms;
          }
        }
        if (!verdict.delta) {
          verdict.delta = std::move(*since_installed);
          verdict.delta_from_ms = replacement->at_ms;
        }
      }
    }
  } else if (!good_) {
    verdict.flags |= flag_bit(Flag::first_reading);
  } else {
    auto change = subtract(reading.key.value, good_->value);
    if (change && (!change->is_negative() || metric_.direction == Direction::net)) {
      verdict.delta = std::move(*change);
      verdict.delta_from_ms = good_->timestamp_ms;
    } else {
      const bool small =
          change && metric_.rollback_max && change->negated() <= *metric_.rollback_max;
      verdict.flags |= small ? flag_bit(Flag::rollback) : flag_bit(Flag::counter_reset);
    }
  }
  accept(reading, std::move(verdict));
}

void SeriesScan::judge(const ScanReading& reading) {
  if (!good_) {
    accept(reading, Verdict{std::nullopt, std::nullopt, flag_bit(Flag::first_reading)});
    return;
  }
  const bool expected_reset = period_reset(reading.key);
  std::optional<Decimal> change;
  if (!expected_reset) change = on_course(reading.key);
  if (expected_reset || change) {
    // Back on course: whatever waited was a glitch.
    for (const auto& glitch : pending_) {
      decided_.emplace_back(glitch.id, Verdict{std::nullopt, std::nullopt, flag_bit(Flag::glitch)});
    }
    pending_.clear();
    Verdict verdict;
    if (expected_reset) {
      verdict.delta = reading.key.value;
      verdict.delta_from_ms = local_midnight_ms(*metric_.period_zone, reading.key.timestamp_ms);
      verdict.flags = flag_bit(Flag::period_reset);
    } else {
      verdict = on_course_verdict(reading.key, std::move(*change));
    }
    accept(reading, std::move(verdict));
    return;
  }
  pending_.push_back(reading);
  while (pending_.size() > metric_.glitch_window) settle_first_pending(Mode::final);
}

void SeriesScan::settle_first_pending(Mode mode) {
  // No return within the window: the first waiting reading is decided and
  // becomes the last good one; the others are judged again against it.
  std::vector<ScanReading> rest(pending_.begin() + 1, pending_.end());
  const ScanReading first = pending_.front();
  pending_.clear();
  accept(first, off_course_verdict(first.key, mode));
  for (const auto& reading : rest) judge(reading);
}

void SeriesScan::finish() {
  while (!pending_.empty()) settle_first_pending(Mode::provisional);
}

std::vector<std::string> restart_evidence_devices(std::string_view device_id) {
  std::vector<std::string> devices{std::string(device_id)};
  for (std::size_t slash = device_id.rfind('/'); slash != std::string_view::npos && slash > 0;
       slash = device_id.rfind('/', slash - 1)) {
    devices.emplace_back(device_id.substr(0, slash));
  }
  return devices;
}

}  // namespace meter
