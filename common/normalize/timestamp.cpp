#include "common/normalize/timestamp.hpp"

#include <date/tz.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "common/normalize/decimal.hpp"
#include "common/util/quote.hpp"

namespace meter {

namespace {

constexpr std::int64_t kSecondsPerDay = 86'400;
constexpr std::int64_t kMsPerDay = kSecondsPerDay * 1000;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil), in int64 so that no input can overflow it.
std::int64_t days_from_civil(std::int64_t y, std::int64_t m, std::int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct CivilDate {
  std::int64_t year;
  int month;
  int day;
};

// The inverse (H. Hinnant's civil_from_days).
CivilDate civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const auto day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const auto month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool is_leap_year(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(std::int64_t year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && is_leap_year(year)) return 29;
  return kDays[month - 1];
}

// Every instant the agent stores lies in years 0001-9999 UTC, so that its
// canonical text is always four-digit years and parses back.
constexpr std::int64_t kMinMs = -62'135'596'800'000;  // 0001-01-01T00:00:00.000Z
constexpr std::int64_t kMaxMs = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z

bool in_range(std::int64_t ms) { return ms >= kMinMs && ms <= kMaxMs; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `count` digits at `pos`.
bool read_digits(std::string_view text, std::size_t& pos, int count, int& out) {
  int value = 0;
  for (int i = 0; i < count; ++i) {
    if (pos >= text.size() || !is_digit(text[pos])) return false;
    value = value * 10 + (text[pos] - '0');
    ++pos;
  }
  out = value;
  return true;
}

bool read_char(std::string_view text, std::size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

std::string two_digits(int v) {
  std::string out(2, '0');
  out[0] = static_cast<char>('0' + v / 10 % 10);
  out[1] = static_cast<char>('0' + v % 10);
  return out;
}

struct LocalFields {
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  int millis = 0;                     // fraction truncated to ms
  std::optional<int> offset_seconds;  // east of UTC; none: local time
};

Result<LocalFields> parse_rfc3339_fields(std::string_view text) {
  const auto fail = [&](const std::string& what) { return Error{what + " in " + quoted(text)}; };
  LocalFields f;
  std::size_t pos = 0;
  if (!read_digits(text, pos, 4, f.year)) return fail("expected a four-digit year");
  // "YYYY-" is the extended form; "YYYYMMDD" the basic form.
  const bool basic = !(pos < text.size() && text[pos] == '-');
  if (!basic) ++pos;
  if (!read_digits(text, pos, 2, f.month)) return fail("expected a two-digit month");
  if (!basic && !read_char(text, pos, '-')) return fail("expected '-' after the month");
  if (!read_digits(text, pos, 2, f.day)) return fail("expected a two-digit day");
  if (pos < text.size() && (text[pos] == 'T' || text[pos] == 't' || (!basic && text[pos] == ' '))) {
    ++pos;
  } else {
    return fail(basic ? "expected 'T' between date and time"
                      : "expected 'T', 't' or a space between date and time");
  }
  if (!read_digits(text, pos, 2, f.hour)) return fail("expected a two-digit hour");
  if (!basic && !read_char(text, pos, ':')) return fail("expected ':' after the hour");
  if (!read_digits(text, pos, 2, f.minute)) return fail("expected a two-digit minute");
  if (!basic && !read_char(text, pos, ':')) return fail("expected ':' after the minute");
  if (!read_digits(text, pos, 2, f.second)) return fail("expected two-digit seconds");
  if (read_char(text, pos, '.')) {
    // Any number of digits; the first three are the milliseconds and the
    // rest is dropped, which is truncation toward the past because the
    // fraction counts forward from the whole second.
    const std::size_t start = pos;
    while (pos < text.size() && is_digit(text[pos])) ++pos;
    const std::size_t count = pos - start;
    if (count == 0) return fail("expected digits after '.'");
    for (std::size_t i = 0; i < 3; ++i) {
      f.millis = f.millis * 10 + (i < count ? text[start + i] - '0' : 0);
    }
  }
  if (pos < text.size()) {
    const char c = text[pos];
    if (c == 'Z' || c == 'z') {
      ++pos;
      f.offset_seconds = 0;
    } else if (c == '+' || c == '-') {
      ++pos;
      int oh = 0;
      int om = 0;
      if (!read_digits(text, pos, 2, oh)) return fail("expected a two-digit offset hour");
      // Minutes after a ':' (extended format only) or straight after the hour.
      if ((!basic && read_char(text, pos, ':')) || (pos < text.size() && is_digit(text[pos]))) {
        if (!read_digits(text, pos, 2, om)) return fail("expected two-digit offset minutes");
      }
      if (oh > 23) return fail("offset hour " + two_digits(oh) + " out of range");
      if (om > 59) return fail("offset minute " + two_digits(om) + " out of range");
      const int magnitude = oh * 3600 + om * 60;
      f.offset_seconds = c == '-' ? -magnitude : magnitude;
    }
  }
  if (pos != text.size()) {
    return fail("unexpected " + quoted(text.substr(pos)) + " after the " +
                (f.offset_seconds ? "offset" : "time"));
  }
  if (f.year < 1) return fail("year 0000 out of range (0001-9999)");
  if (f.month < 1 || f.month > 12) return fail("month " + two_digits(f.month) + " out of range");
  if (f.day < 1 || f.day > days_in_month(f.year, f.month)) {
    return fail("day " + two_digits(f.day) + " out of range for " + std::to_string(f.year) + "-" +
                two_digits(f.month));
  }
  if (f.hour > 23) return fail("hour " + two_digits(f.hour) + " out of range");
  if (f.minute > 59) return fail("minute " + two_digits(f.minute) + " out of range");
  if (f.second > 60) return fail("second " + two_digits(f.second) + " out of range");
  return f;
}

// The tz database as this library reads it (OS TZif files, date 3.0.1) ends
// with the last transition written in the file, 2037 for zones that still
// change clocks: the rule that continues after it (the TZif footer) is not
// applied, so later local times would silently get a wrong offset. Such
// times are refused instead.
bool beyond_tz_data(const date::sys_info& info) {
  static const date::sys_seconds kOpenEnded{date::sys_days{date::year{10000} / 1 / 1}};
  static const date::sys_seconds kDataHorizon{date::sys_days{date::year{2037} / 1 / 1}};
  return info.end >= kOpenEnded && info.begin >= kDataHorizon;
}

// Local time (seconds since 1970-01-01 of the wall clock) -> UTC seconds.
Result<std::int64_t> resolve_local(std::string_view text, std::int64_t local_seconds,
                                   const date::time_zone& zone, FlagSet& flags) {
  try {
    const date::local_seconds local{std::chrono::seconds{local_seconds}};
    const date::local_info info = zone.get_info(local);
    switch (info.result) {
      case date::local_info::unique:
        if (beyond_tz_data(info.first)) {
          return Error{
              "local time " + quoted(text) + " in zone " + quoted(zone.name()) +
              " is after the last DST transition the tz database lists (" +
              std::to_string(civil_from_days(floor_div(info.first.begin.time_since_epoch().count(),
                                                       kSecondsPerDay))
                                 .year) +
              "); give a UTC offset"};
        }
        return local_seconds - info.first.offset.count();
      case date::local_info::ambiguous:
        // Fall-back overlap: first is the period before the transition, with
        // the larger offset, so it gives the earlier of the two instants.
        flags |= flag_bit(Flag::dst_ambiguous);
        return local_seconds - info.first.offset.count();
      case date::local_info::nonexistent:
        // Spring-forward gap: reading the wall clock with the offset in force
        // before the gap moves it forward by the gap's length once expressed
        // in the new offset (02:30 in a 02:00->03:00 gap is 03:30 after it).
        flags |= flag_bit(Flag::dst_gap);
        return local_seconds - info.first.offset.count();
    }
    return Error{"time zone " + quoted(zone.name()) + " gave no answer for " + quoted(text)};
  } catch (const std::exception& e) {
    return Error{"time zone " + quoted(zone.name()) + " could not resolve " + quoted(text) + ": " +
                 quoted(e.what())};
  }
}

Result<UtcTime> parse_rfc3339(std::string_view text, const date::time_zone* zone) {
  auto fields = parse_rfc3339_fields(text);
  if (!fields) return fields.error();
  const LocalFields& f = *fields;
  UtcTime result;
  const bool leap = f.second == 60;
  // A leap second is stored as the last millisecond before the next minute;
  // the seconds of the wall clock are 59 for the zone lookup.
  const std::int64_t wall_seconds = days_from_civil(f.year, f.month, f.day) * kSecondsPerDay +
                                    f.hour * 3600 + f.minute * 60 + (leap ? 59 : f.second);
  std::int64_t utc_seconds = 0;
  if (f.offset_seconds) {
    utc_seconds = wall_seconds - *f.offset_seconds;
  } else if (zone != nullptr) {
    auto resolved = resolve_local(text, wall_seconds, *zone, result.flags);
    if (!resolved) return resolved.error();
    utc_seconds = *resolved;
  } else {
    return Error{"timestamp " + quoted(text) +
                 " has no UTC offset; an offset (e.g. 'Z', '+01:00') or a time zone is needed"};
  }
  if (leap) {
    // Leap seconds are inserted only as 23:59:60 UTC on the last day of a
    // month; a second 60 anywhere else is a broken clock, not a leap second.
    const std::int64_t utc_day = floor_div(utc_seconds, kSecondsPerDay);
    const std::int64_t second_of_day = utc_seconds - utc_day * kSecondsPerDay;
    const CivilDate date = civil_from_days(utc_day);
    if (second_of_day != kSecondsPerDay - 1 || date.day != days_in_month(date.year, date.month)) {
      return Error{"second 60 is not a leap second (23:59:60 UTC on the last day of a month) in " +
                   quoted(text)};
    }
    result.flags |= flag_bit(Flag::leap_second);
  }
  result.ms = utc_seconds * 1000 + (leap ? 999 : f.millis);
  if (!in_range(result.ms)) {
    return Error{"timestamp " + quoted(text) + " is outside years 0001-9999 in UTC"};
  }
  return result;
}

Result<UtcTime> parse_epoch(std::string_view text, TimestampFormat format) {
  const bool seconds = format == TimestampFormat::epoch_seconds;
  const char* what = seconds ? "epoch seconds" : "epoch milliseconds";
  auto value = Decimal::parse(text);
  if (!value) return Error{std::string(what) + ": " + value.error().message};
  // The canonical text is plain "[-]int[.frac]" with no exponent, at most
  // about 80 characters; flooring it digit by digit keeps it exact.
  std::string canonical = value->text();
  const bool negative = canonical[0] == '-';
  if (negative) canonical.erase(0, 1);
  const std::size_t point = canonical.find('.');
  const std::string int_part = canonical.substr(0, point);
  const std::string frac_part = point == std::string::npos ? "" : canonical.substr(point + 1);
  const std::size_t scale = seconds ? 3 : 0;
  std::string whole_ms = int_part;
  for (std::size_t i = 0; i < scale; ++i) whole_ms += i < frac_part.size() ? frac_part[i] : '0';
  // Canonical text has no trailing zeros, so any digit left is non-zero.
  const bool remainder = frac_part.size() > scale;
  const std::size_t first = whole_ms.find_first_not_of('0');
  whole_ms = first == std::string::npos ? "0" : whole_ms.substr(first);
  const auto out_of_range = [&] {
    return Error{std::string(what) + " " + quoted(text) + " is outside years 0001-9999"};
  };
  if (whole_ms.size() > 16) return out_of_range();
  std::int64_t magnitude = 0;
  for (const char c : whole_ms) magnitude = magnitude * 10 + (c - '0');
  UtcTime result;
  // Truncation toward the past: a negative value with a dropped fraction is
  // one millisecond further back.
  result.ms = negative ? -magnitude - (remainder ? 1 : 0) : magnitude;
  if (!in_range(result.ms)) return out_of_range();
  return result;
}

}  // namespace

Result<UtcTime> parse_timestamp(std::string_view text, TimestampFormat format,
                                const date::time_zone* zone) {
  switch (format) {
    case TimestampFormat::rfc3339:
      return parse_rfc3339(text, zone);
    case TimestampFormat::epoch_seconds:
    case TimestampFormat::epoch_milliseconds:
      return parse_epoch(text, format);
  }
  return Error{"unknown timestamp format for " + quoted(text)};
}

std::string format_timestamp(std::int64_t utc_ms) {
  // Floor division so that instants before the epoch print the same way as
  // after it (-1 ms is 1969-12-31T23:59:59.999Z).
  const std::int64_t days = floor_div(utc_ms, kMsPerDay);
  // Remainder taken directly: days * kMsPerDay can overflow near INT64_MIN.
  std::int64_t ms_of_day = utc_ms % kMsPerDay;
  if (ms_of_day < 0) ms_of_day += kMsPerDay;
  const CivilDate date = civil_from_days(days);
  const auto hour = static_cast<int>(ms_of_day / 3'600'000);
  const auto minute = static_cast<int>(ms_of_day / 60'000 % 60);
  const auto second = static_cast<int>(ms_of_day / 1000 % 60);
  const auto millis = static_cast<int>(ms_of_day % 1000);
  // Years outside 0001-9999 never come out of parse_timestamp; should one be
  // passed in, it is printed in full ("-0001", "12345") rather than wrapped.
  std::string year = std::to_string(date.year < 0 ? -date.year : date.year);
  if (year.size() < 4) year.insert(0, 4 - year.size(), '0');
  if (date.year < 0) year.insert(0, 1, '-');
  std::string out = year + "-" + two_digits(date.month) + "-" + two_digits(date.day) + "T" +
                    two_digits(hour) + ":" + two_digits(minute) + ":" + two_digits(second) + ".";
  out += static_cast<char>('0' + millis / 100);
  out += static_cast<char>('0' + millis / 10 % 10);
  out += static_cast<char>('0' + millis % 10);
  out += 'Z';
  return out;
}

Result<const date::time_zone*> find_time_zone(std::string_view name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception& e) {
    return Error{"unknown time zone " + quoted(name) + " (tz database: " + quoted(e.what()) + ")"};
  }
}

}  // namespace meter
