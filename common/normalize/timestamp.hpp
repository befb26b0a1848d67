// Timestamps -> UTC. Everything inside the agent is UTC milliseconds since the
// Unix epoch; the canonical text form is YYYY-MM-DDTHH:MM:SS.sssZ.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/model/flags.hpp"
#include "common/util/result.hpp"

namespace date {
class time_zone;
}

namespace meter {

// How a mapping says its timestamps are written. Never guessed from the text.
enum class TimestampFormat {
  rfc3339,             // RFC 3339 / ISO 8601 date-time
  epoch_seconds,       // decimal seconds since 1970-01-01T00:00:00Z, fraction allowed
  epoch_milliseconds,  // decimal milliseconds since the epoch, fraction allowed
};

struct UtcTime {
  std::int64_t ms = 0;  // milliseconds since the epoch, UTC
  FlagSet flags = 0;    // leap_second, dst_ambiguous, dst_gap
};

// Parses `text` as `format`.
//
// rfc3339 accepts: date "YYYY-MM-DD" and time "HH:MM:SS" joined by 'T', 't'
// or one space; optional fraction ".d+" of any length (truncated toward the
// past to the millisecond); offset "Z", "z", "+HH:MM", "-HH:MM", "+HHMM",
// "+HH" ("-00:00" means UTC); second 60 (a leap second) is stored as
// hh:mm:59.999 with the leap_second flag. The ISO 8601 basic form
// "YYYYMMDDTHHMMSS[.f](Z|+HHMM)" is accepted too. Years 0001-9999.
//
// A date-time without an offset is accepted only when `zone` is given: it is
// local time in that IANA zone (DST-aware). A local time inside a fall-back
// overlap takes the earlier instant and the dst_ambiguous flag; one inside a
// spring-forward gap is moved forward by the gap and gets dst_gap.
// Without `zone` such a timestamp is an error saying an offset or a zone is
// needed. A timestamp with an offset ignores `zone`.
//
// epoch formats accept the decimal syntax of Decimal::parse (JSON numbers);
// fractions are truncated toward the past to the millisecond.
//
// Errors name what is wrong ("month 13 out of range in '2026-13-01T00:00:00Z'").
Result<UtcTime> parse_timestamp(std::string_view text, TimestampFormat format,
                                const date::time_zone* zone = nullptr);

// "YYYY-MM-DDTHH:MM:SS.sssZ" (always three fraction digits).
std::string format_timestamp(std::int64_t utc_ms);

// Looks up an IANA zone name in the OS tz database; error names the zone.
Result<const date::time_zone*> find_time_zone(std::string_view name);

}  // namespace meter
