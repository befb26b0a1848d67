// Quality flags: the one list of every flag name. docs/PROTOCOL.md repeats it;
// tests/common/model/test_flags.cpp keeps the two in step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meter {

enum class Flag : std::uint32_t {
  first_reading = 1U << 0,       // counter: no earlier reading in the series; delta null
  counter_reset = 1U << 1,       // counter: value below its predecessor; delta null
  suspicious_jump = 1U << 2,     // counter: delta above the metric's jump threshold; delta kept
  out_of_order = 1U << 3,        // arrived after a later reading of its series was stored
  timestamp_conflict = 1U << 4,  // another reading of the series has the same timestamp
  negative_value = 1U << 5,      // counter register below zero
  future_timestamp = 1U << 6,    // timestamp ahead of the gateway clock beyond the tolerance
  gateway_timestamp = 1U << 7,   // no timestamp in the message: the gateway's receive time used
  beyond_retention = 1U << 8,   // older than what the buffer still holds for its series; delta null
  leap_second = 1U << 9,        // sent as second 60; stored as hh:mm:59.999
  dst_ambiguous = 1U << 10,     // local time in a DST fall-back overlap; the earlier instant used
  dst_gap = 1U << 11,           // local time that does not exist (DST spring-forward); shifted
  clock_unsynced = 1U << 12,    // stamped by a gateway clock that was not synchronized
  glitch = 1U << 13,            // counter: off course, and the series returned; delta null
  rollback = 1U << 14,          // counter: a small drop that stayed (older total restored)
  implausible_rate = 1U << 15,  // counter: rose faster than max_rate allows; delta kept
  gap = 1U << 16,               // counter: long silence before it; delta kept whole
  meter_replaced = 1U << 17,    // counter: first reading after an operator's replacement
  device_restarted = 1U << 18,  // counter: the device restarted since the last good reading
  period_reset = 1U << 19,      // counter: a daily register's reset at local midnight
  scale_rounded = 1U << 20,     // a mapping's scale rounded the value (no finite decimal)
};

using FlagSet = std::uint32_t;

inline constexpr FlagSet flag_bit(Flag f) { return static_cast<FlagSet>(f); }
inline constexpr bool has_flag(FlagSet set, Flag f) { return (set & flag_bit(f)) != 0; }

struct FlagName {
  Flag flag;
  std::string_view name;
};

// Every flag, sorted by name (the order exports use).
const std::vector<FlagName>& all_flags();

std::optional<Flag> flag_from_name(std::string_view name);

// Names of the flags in `set`, sorted by name.
std::vector<std::string_view> flag_names(FlagSet set);

// "a;b;c" (CSV form), sorted by name; empty when none.
std::string join_flags(FlagSet set, char separator);

}  // namespace meter
