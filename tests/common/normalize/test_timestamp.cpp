#include <date/tz.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>

#include "common/normalize/timestamp.hpp"

using meter::Flag;
using meter::flag_bit;
using meter::format_timestamp;
using meter::parse_timestamp;
using meter::TimestampFormat;
using meter::UtcTime;

namespace {

// Expected instants below were computed independently (Python calendar.timegm
// and zoneinfo), not with the code under test.
constexpr std::int64_t kMinMs = -62135596800000;  // 0001-01-01T00:00:00.000Z
constexpr std::int64_t kMaxMs = 253402300799999;  // 9999-12-31T23:59:59.999Z

const date::time_zone* zone(const char* name) {
  auto z = meter::find_time_zone(name);
  INFO("zone " << name);
  REQUIRE(z.ok());
  return *z;
}

UtcTime parse_ok(const std::string& text, TimestampFormat format = TimestampFormat::rfc3339,
                 const date::time_zone* tz = nullptr) {
  auto r = parse_timestamp(text, format, tz);
  INFO("parsing '" << text << "'" << (r.ok() ? "" : ": " + r.error().message));
  REQUIRE(r.ok());
  return *r;
}

// The canonical UTC text of a successfully parsed rfc3339 timestamp.
std::string utc(const std::string& text, const date::time_zone* tz = nullptr) {
  return format_timestamp(parse_ok(text, TimestampFormat::rfc3339, tz).ms);
}

std::string error_of(const std::string& text, TimestampFormat format = TimestampFormat::rfc3339,
                     const date::time_zone* tz = nullptr) {
  auto r = parse_timestamp(text, format, tz);
  INFO("parsing '" << text << "'");
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

bool mentions(const std::string& message, const std::string& part) {
  INFO("message: " << message);
  return message.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("RFC 3339 section 5.8 examples", "[timestamp]") {
  auto a = parse_ok("1985-04-12T23:20:50.52Z");
  CHECK(a.ms == 482196050520);
  CHECK(a.flags == 0);
  CHECK(format_timestamp(a.ms) == "1985-04-12T23:20:50.520Z");

  auto b = parse_ok("1996-12-19T16:39:57-08:00");
  CHECK(b.ms == 851042397000);
  CHECK(format_timestamp(b.ms) == "1996-12-20T00:39:57.000Z");

  auto c = parse_ok("1990-12-31T23:59:60Z");
  CHECK(c.ms == 662687999999);
  CHECK(c.flags == flag_bit(Flag::leap_second));
  CHECK(format_timestamp(c.ms) == "1990-12-31T23:59:59.999Z");

  auto d = parse_ok("1990-12-31T15:59:60-08:00");
  CHECK(d.ms == 662687999999);
  CHECK(d.flags == flag_bit(Flag::leap_second));

  auto e = parse_ok("1937-01-01T12:00:27.87+00:20");
  CHECK(e.ms == -1041337172130);
  CHECK(format_timestamp(e.ms) == "1937-01-01T11:40:27.870Z");
}

TEST_CASE("rfc3339 separators, case and offsets", "[timestamp]") {
  CHECK(parse_ok("2026-01-01T00:00:00Z").ms == 1767225600000);
  CHECK(parse_ok("2026-01-01t00:00:00z").ms == 1767225600000);
  CHECK(parse_ok("2026-01-01 00:00:00Z").ms == 1767225600000);
  CHECK(parse_ok("2026-01-01T00:00:00+00:00").ms == 1767225600000);
  CHECK(parse_ok("2026-01-01T00:00:00-00:00").ms == 1767225600000);  // UTC, local unknown

  CHECK(utc("2026-03-01T12:00:00+05:45") == "2026-03-01T06:15:00.000Z");
  CHECK(utc("2026-03-01T12:00:00-03:30") == "2026-03-01T15:30:00.000Z");
  CHECK(utc("2026-03-01T12:00:00+0530") == "2026-03-01T06:30:00.000Z");
  CHECK(utc("2026-03-01T12:00:00-0930") == "2026-03-01T21:30:00.000Z");
  CHECK(utc("2026-03-01T12:00:00+05") == "2026-03-01T07:00:00.000Z");
  CHECK(utc("2026-03-01T12:00:00-11") == "2026-03-01T23:00:00.000Z");
  CHECK(utc("2026-03-01T01:00:00+14:00") == "2026-02-28T11:00:00.000Z");  // day and month roll
  CHECK(utc("2026-12-31T23:30:00-01:00") == "2027-01-01T00:30:00.000Z");  // year rolls
  CHECK(utc("2026-03-01T12:00:00+23:59") == "2026-02-28T12:01:00.000Z");
}

TEST_CASE("rfc3339 ISO 8601 basic format", "[timestamp]") {
  CHECK(parse_ok("20260101T000000Z").ms == 1767225600000);
  CHECK(parse_ok("20260101t000000z").ms == 1767225600000);
  CHECK(utc("20260301T120000+0100") == "2026-03-01T11:00:00.000Z");
  CHECK(utc("20260301T120000.5-0330") == "2026-03-01T15:30:00.500Z");
  CHECK(utc("20260301T120000+01") == "2026-03-01T11:00:00.000Z");
  CHECK(utc("20260301T120000", zone("Europe/Berlin")) == "2026-03-01T11:00:00.000Z");
  // Mixed forms are not ISO 8601.
  CHECK_FALSE(parse_timestamp("20260301T120000+01:00", TimestampFormat::rfc3339).ok());
  CHECK_FALSE(parse_timestamp("20260301T12:00:00Z", TimestampFormat::rfc3339).ok());
  CHECK_FALSE(parse_timestamp("2026-03-01T120000Z", TimestampFormat::rfc3339).ok());
  CHECK_FALSE(parse_timestamp("202603-01T12:00:00Z", TimestampFormat::rfc3339).ok());
  CHECK_FALSE(parse_timestamp("20260301 120000Z", TimestampFormat::rfc3339).ok());
}

TEST_CASE("rfc3339 fractions are truncated toward the past", "[timestamp]") {
  CHECK(utc("2026-01-01T00:00:00.9999Z") == "2026-01-01T00:00:00.999Z");
  CHECK(utc("2026-01-01T00:00:00.1Z") == "2026-01-01T00:00:00.100Z");
  CHECK(utc("2026-01-01T00:00:00.12Z") == "2026-01-01T00:00:00.120Z");
  CHECK(utc("2026-01-01T00:00:00.123Z") == "2026-01-01T00:00:00.123Z");
  CHECK(utc("2026-01-01T00:00:00.000999999Z") == "2026-01-01T00:00:00.000Z");
  CHECK(utc("2026-01-01T00:00:00." + std::string(200, '9') + "Z") == "2026-01-01T00:00:00.999Z");
  // Before the epoch the instant still moves toward the past, not toward 0.
  auto before = parse_ok("1969-12-31T23:59:59.9999Z");
  CHECK(before.ms == -1);
  CHECK(parse_ok("1969-12-31T23:59:59.0001Z").ms == -1000);
  CHECK(utc("2026-01-01T00:00:00.5+01:00") == "2025-12-31T23:00:00.500Z");
  CHECK_FALSE(parse_timestamp("2026-01-01T00:00:00.Z", TimestampFormat::rfc3339).ok());
  CHECK_FALSE(parse_timestamp("2026-01-01T00:00:00,5Z", TimestampFormat::rfc3339).ok());
}

TEST_CASE("rfc3339 leap years", "[timestamp]") {
  CHECK(utc("2024-02-29T12:00:00Z") == "2024-02-29T12:00:00.000Z");
  CHECK(utc("2000-02-29T12:00:00Z") == "2000-02-29T12:00:00.000Z");
  CHECK(utc("2400-02-29T00:00:00Z") == "2400-02-29T00:00:00.000Z");
  CHECK(error_of("2023-02-29T12:00:00Z") ==
        "day 29 out of range for 2023-02 in '2023-02-29T12:00:00Z'");
  CHECK(mentions(error_of("1900-02-29T12:00:00Z"), "day 29 out of range"));
  CHECK(mentions(error_of("2100-02-29T12:00:00Z"), "day 29 out of range"));
  CHECK(mentions(error_of("2024-02-30T12:00:00Z"), "day 30 out of range"));
}

TEST_CASE("rfc3339 range errors", "[timestamp]") {
  CHECK(error_of("2026-13-01T00:00:00Z") == "month 13 out of range in '2026-13-01T00:00:00Z'");
  CHECK(mentions(error_of("2026-00-01T00:00:00Z"), "month 00 out of range"));
  CHECK(mentions(error_of("2026-01-00T00:00:00Z"), "day 00 out of range"));
  CHECK(mentions(error_of("2026-01-32T00:00:00Z"), "day 32 out of range"));
  CHECK(mentions(error_of("2026-04-31T00:00:00Z"), "day 31 out of range for 2026-04"));
  CHECK(utc("2026-04-30T00:00:00Z") == "2026-04-30T00:00:00.000Z");
  CHECK(mentions(error_of("2026-01-01T24:00:00Z"), "hour 24 out of range"));
  CHECK(mentions(error_of("2026-01-01T23:60:00Z"), "minute 60 out of range"));
  CHECK(mentions(error_of("2026-01-01T23:59:61Z"), "second 61 out of range"));
  CHECK(mentions(error_of("2026-01-01T23:59:99Z"), "second 99 out of range"));
  CHECK(mentions(error_of("2026-01-01T00:00:00+24:00"), "offset hour 24 out of range"));
  CHECK(mentions(error_of("2026-01-01T00:00:00-01:60"), "offset minute 60 out of range"));
  CHECK(mentions(error_of("2026-01-01T00:00:00+0199"), "offset minute 99 out of range"));
  CHECK(mentions(error_of("0000-06-01T00:00:00Z"), "year 0000 out of range"));
  CHECK(mentions(error_of("2026-13-01T00:00:00Z"), "'2026-13-01T00:00:00Z'"));
}

TEST_CASE("rfc3339 year limits are in UTC", "[timestamp]") {
  CHECK(parse_ok("0001-01-01T00:00:00Z").ms == kMinMs);
  CHECK(parse_ok("9999-12-31T23:59:59.999Z").ms == kMaxMs);
  CHECK(parse_ok("9999-12-31T23:59:59.9999999Z").ms == kMaxMs);
  CHECK(mentions(error_of("0001-01-01T00:00:00+00:01"), "outside years 0001-9999"));
  CHECK(mentions(error_of("9999-12-31T23:59:59-00:01"), "outside years 0001-9999"));
  CHECK(utc("0001-01-01T00:30:00+00:30") == "0001-01-01T00:00:00.000Z");
}

TEST_CASE("rfc3339 leap seconds", "[timestamp]") {
  auto june = parse_ok("2015-06-30T23:59:60Z");
  CHECK(format_timestamp(june.ms) == "2015-06-30T23:59:59.999Z");
  CHECK(june.flags == flag_bit(Flag::leap_second));
  // A fraction inside the leap second does not change the stored instant.
  auto fraction = parse_ok("2016-12-31T23:59:60.5Z");
  CHECK(format_timestamp(fraction.ms) == "2016-12-31T23:59:59.999Z");
  CHECK(fraction.flags == flag_bit(Flag::leap_second));
  // The leap second in other offsets: still 23:59:60 UTC.
  CHECK(utc("2017-01-01T00:59:60+01:00") == "2016-12-31T23:59:59.999Z");
  CHECK(utc("2017-01-01T05:44:60+05:45") == "2016-12-31T23:59:59.999Z");
  // Second 60 anywhere else is not a leap second.
  CHECK(mentions(error_of("2026-01-01T12:34:60Z"), "second 60"));
  CHECK(mentions(error_of("2026-06-29T23:59:60Z"), "not a leap second"));
  CHECK(mentions(error_of("2016-12-31T23:59:60+01:00"), "not a leap second"));  // 22:59 UTC
  // Leap seconds in local time go through the zone.
  auto local = parse_ok("2017-01-01T00:59:60", TimestampFormat::rfc3339, zone("Europe/Berlin"));
  CHECK(format_timestamp(local.ms) == "2016-12-31T23:59:59.999Z");
  CHECK(local.flags == flag_bit(Flag::leap_second));
  auto utc_zone = parse_ok("2016-12-31T23:59:60", TimestampFormat::rfc3339, zone("Etc/UTC"));
  CHECK(utc_zone.ms == parse_ok("2016-12-31T23:59:59.999Z").ms);
}

TEST_CASE("rfc3339 syntax errors", "[timestamp]") {
  for (const char* bad : {"",
                          "2026",
                          "2026-01-01",
                          "2026-01-01T",
                          "2026-01-01T12:00Z",
                          "2026-01-01T12Z",
                          "2026-1-01T12:00:00Z",
                          "2026-01-1T12:00:00Z",
                          "2026-01-01T1:00:00Z",
                          "26-01-01T12:00:00Z",
                          "12026-01-01T12:00:00Z",
                          "+2026-01-01T12:00:00Z",
                          "2026/01/01T12:00:00Z",
                          "2026-01-01X12:00:00Z",
                          "2026-01-01  12:00:00Z",
                          "2026-01-01T12:00:00ZZ",
                          "2026-01-01T12:00:00 Z",
                          "2026-01-01T12:00:00+1",
                          "2026-01-01T12:00:00+01:",
                          "2026-01-01T12:00:00+01:0",
                          "2026-01-01T12:00:00+010",
                          "2026-01-01T12:00:00+01:00:00",
                          "2026-01-01T12:00:00UTC",
                          "2026-01-01T12:00:00Z ",
                          " 2026-01-01T12:00:00Z",
                          "2026-01-01T12:00:00.5.5Z",
                          "2026-01-01T12:00:00\n",
                          "2026-01-01T12:0a:00Z",
                          "\xd9\xa2\xd9\xa0\xd9\xa2\xd9\xa6"}) {
    const std::string text(bad);
    auto r = parse_timestamp(text, TimestampFormat::rfc3339, zone("Europe/Berlin"));
    INFO("'" << text << "'");
    CHECK_FALSE(r.ok());
  }
  CHECK(mentions(error_of("2026-01-01T12:00:00Zjunk"), "'junk'"));
  CHECK(mentions(error_of("2026-01-01T12:00:00Zjunk"), "'2026-01-01T12:00:00Zjunk'"));
  CHECK(mentions(error_of(std::string(10000, '2')), "10000 bytes"));
  CHECK(error_of(std::string(10000, '2')).size() < 300);
}

TEST_CASE("rfc3339 local time needs a zone", "[timestamp]") {
  const std::string message = error_of("2026-07-01T12:00:00");
  CHECK(mentions(message, "'2026-07-01T12:00:00'"));
  CHECK(mentions(message, "offset"));
  CHECK(mentions(message, "zone"));
  CHECK_FALSE(parse_timestamp("2026-07-01 12:00:00.5", TimestampFormat::rfc3339).ok());
  // An offset in the text wins over the zone.
  CHECK(utc("2026-07-01T12:00:00Z", zone("Europe/Berlin")) == "2026-07-01T12:00:00.000Z");
  CHECK(utc("2026-07-01T12:00:00+05:00", zone("America/New_York")) == "2026-07-01T07:00:00.000Z");
}

TEST_CASE("local time in Europe/Berlin", "[timestamp]") {
  const auto* berlin = zone("Europe/Berlin");
  auto winter = parse_ok("2026-01-15T12:00:00", TimestampFormat::rfc3339, berlin);
  CHECK(winter.ms == 1768474800000);
  CHECK(winter.flags == 0);
  auto summer = parse_ok("2026-07-15T12:00:00.250", TimestampFormat::rfc3339, berlin);
  CHECK(summer.ms == 1784109600250);
  CHECK(summer.flags == 0);

  // Spring forward 2026-03-29 02:00 CET -> 03:00 CEST. 02:30 does not exist;
  // it is moved forward by the gap (one hour): 03:30 CEST = 01:30Z.
  auto gap = parse_ok("2026-03-29T02:30:00", TimestampFormat::rfc3339, berlin);
  CHECK(gap.ms == 1774747800000);
  CHECK(format_timestamp(gap.ms) == "2026-03-29T01:30:00.000Z");
  CHECK(gap.flags == flag_bit(Flag::dst_gap));
  auto gap_start = parse_ok("2026-03-29T02:00:00", TimestampFormat::rfc3339, berlin);
  CHECK(format_timestamp(gap_start.ms) == "2026-03-29T01:00:00.000Z");
  CHECK(gap_start.flags == flag_bit(Flag::dst_gap));
  auto before_gap = parse_ok("2026-03-29T01:59:59.999", TimestampFormat::rfc3339, berlin);
  CHECK(format_timestamp(before_gap.ms) == "2026-03-29T00:59:59.999Z");
  CHECK(before_gap.flags == 0);
  auto after_gap = parse_ok("2026-03-29T03:00:00", TimestampFormat::rfc3339, berlin);
  CHECK(after_gap.ms == 1774746000000);
  CHECK(after_gap.flags == 0);

  // Fall back 2026-10-25 03:00 CEST -> 02:00 CET. 02:30 happens twice; the
  // earlier (CEST, 00:30Z) is taken.
  auto overlap = parse_ok("2026-10-25T02:30:00", TimestampFormat::rfc3339, berlin);
  CHECK(overlap.ms == 1792888200000);
  CHECK(overlap.flags == flag_bit(Flag::dst_ambiguous));
  auto before_overlap = parse_ok("2026-10-25T01:59:59", TimestampFormat::rfc3339, berlin);
  CHECK(before_overlap.ms == 1792886399000);
  CHECK(before_overlap.flags == 0);
  auto after_overlap = parse_ok("2026-10-25T03:00:00", TimestampFormat::rfc3339, berlin);
  CHECK(after_overlap.ms == 1792893600000);
  CHECK(after_overlap.flags == 0);
}

TEST_CASE("local time in America/New_York", "[timestamp]") {
  const auto* new_york = zone("America/New_York");
  CHECK(parse_ok("2026-01-01T12:00:00", TimestampFormat::rfc3339, new_york).ms == 1767286800000);
  CHECK(parse_ok("2026-07-01T12:00:00", TimestampFormat::rfc3339, new_york).ms == 1782921600000);
  // 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 is 03:30 EDT = 07:30Z.
  auto gap = parse_ok("2026-03-08T02:30:00", TimestampFormat::rfc3339, new_york);
  CHECK(gap.ms == 1772955000000);
  CHECK(gap.flags == flag_bit(Flag::dst_gap));
  // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 EDT (05:30Z) is the earlier.
  auto overlap = parse_ok("2026-11-01T01:30:00", TimestampFormat::rfc3339, new_york);
  CHECK(overlap.ms == 1793511000000);
  CHECK(overlap.flags == flag_bit(Flag::dst_ambiguous));
  // Basic format local time.
  CHECK(parse_ok("20261101T013000", TimestampFormat::rfc3339, new_york).ms == 1793511000000);
}

TEST_CASE("local time in the southern hemisphere and odd offsets", "[timestamp]") {
  const auto* sydney = zone("Australia/Sydney");
  // Summer in January (AEDT, +11), winter in July (AEST, +10).
  CHECK(parse_ok("2026-01-15T12:00:00", TimestampFormat::rfc3339, sydney).ms == 1768438800000);
  CHECK(parse_ok("2026-07-15T12:00:00", TimestampFormat::rfc3339, sydney).ms == 1784080800000);
  // DST ends 2026-04-05 03:00 AEDT -> 02:00 AEST.
  auto overlap = parse_ok("2026-04-05T02:30:00", TimestampFormat::rfc3339, sydney);
  CHECK(overlap.ms == 1775316600000);
  CHECK(overlap.flags == flag_bit(Flag::dst_ambiguous));
  // DST starts 2026-10-04 02:00 AEST -> 03:00 AEDT.
  auto gap = parse_ok("2026-10-04T02:30:00", TimestampFormat::rfc3339, sydney);
  CHECK(gap.ms == 1791045000000);
  CHECK(format_timestamp(gap.ms) == "2026-10-03T16:30:00.000Z");
  CHECK(gap.flags == flag_bit(Flag::dst_gap));

  CHECK(parse_ok("2026-07-15T12:00:00", TimestampFormat::rfc3339, zone("Asia/Kathmandu")).ms ==
        1784096100000);
}

TEST_CASE("local time beyond the tz database's transitions", "[timestamp]") {
  // The OS tz files list transitions up to 2037; the rule after that is not
  // applied by the library, so a zone with DST cannot be trusted later on.
  const std::string message =
      error_of("2040-07-01T12:00:00", TimestampFormat::rfc3339, zone("America/New_York"));
  CHECK(mentions(message, "'America/New_York'"));
  CHECK(mentions(message, "'2040-07-01T12:00:00'"));
  // A zone without DST is fine, and so is an explicit offset.
  CHECK(parse_ok("2040-07-01T12:00:00", TimestampFormat::rfc3339, zone("Asia/Tokyo")).ms ==
        2224724400000);
  CHECK(utc("2040-07-01T12:00:00-04:00", zone("America/New_York")) == "2040-07-01T16:00:00.000Z");
  // Before the last transition local time works (2037 summer, EDT).
  CHECK(utc("2037-07-01T12:00:00", zone("America/New_York")) == "2037-07-01T16:00:00.000Z");
}

TEST_CASE("find_time_zone", "[timestamp]") {
  auto berlin = meter::find_time_zone("Europe/Berlin");
  REQUIRE(berlin.ok());
  CHECK((*berlin)->name() == "Europe/Berlin");
  auto unknown = meter::find_time_zone("Europe/Atlantis");
  REQUIRE_FALSE(unknown.ok());
  CHECK(mentions(unknown.error().message, "'Europe/Atlantis'"));
  CHECK_FALSE(meter::find_time_zone("").ok());
  CHECK_FALSE(meter::find_time_zone("../../../etc/passwd").ok());
  CHECK_FALSE(meter::find_time_zone(std::string("Europe/Berlin\0x", 15)).ok());
}

TEST_CASE("epoch seconds", "[timestamp]") {
  const auto s = TimestampFormat::epoch_seconds;
  CHECK(parse_ok("0", s).ms == 0);
  CHECK(parse_ok("1767225600", s).ms == 1767225600000);
  CHECK(parse_ok("1767225600.5", s).ms == 1767225600500);
  CHECK(parse_ok("1767225600.9999", s).ms == 1767225600999);
  CHECK(parse_ok("1767225600.0001", s).ms == 1767225600000);
  CHECK(parse_ok("1.7672256e9", s).ms == 1767225600000);
  CHECK(parse_ok("17672256005e-1", s).ms == 1767225600500);
  CHECK(parse_ok("1e3", s).ms == 1000000);
  CHECK(parse_ok("-1", s).ms == -1000);
  CHECK(parse_ok("-0.0005", s).ms == -1);
  CHECK(parse_ok("-0.001", s).ms == -1);
  CHECK(parse_ok("-1.0001", s).ms == -1001);
  CHECK(parse_ok("-1.5", s).ms == -1500);
  CHECK(parse_ok("-0", s).ms == 0);
  CHECK(parse_ok("1767225600", s).flags == 0);
  CHECK(parse_ok("-62135596800", s).ms == kMinMs);
  CHECK(parse_ok("253402300799.999", s).ms == kMaxMs);
  CHECK(parse_ok("253402300799.9999999", s).ms == kMaxMs);
  CHECK(mentions(error_of("253402300800", s), "outside years 0001-9999"));
  CHECK(mentions(error_of("-62135596800.0001", s), "outside years 0001-9999"));
  CHECK(mentions(error_of("1e30", s), "'1e30'"));
  CHECK(mentions(error_of("abc", s), "'abc'"));
  CHECK(mentions(error_of("abc", s), "epoch seconds"));
  for (const char* bad :
       {"", "NaN", "inf", "1e99999999999", " 1", "1.", "0x10", "2026-01-01T00:00:00Z"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_timestamp(bad, s).ok());
  }
}

TEST_CASE("epoch milliseconds", "[timestamp]") {
  const auto ms = TimestampFormat::epoch_milliseconds;
  CHECK(parse_ok("1767225600123", ms).ms == 1767225600123);
  CHECK(parse_ok("1767225600123.9", ms).ms == 1767225600123);
  CHECK(parse_ok("1.767225600123e12", ms).ms == 1767225600123);
  CHECK(parse_ok("0.5", ms).ms == 0);
  CHECK(parse_ok("-0.5", ms).ms == -1);
  CHECK(parse_ok("-1.5", ms).ms == -2);
  CHECK(parse_ok("-2", ms).ms == -2);
  CHECK(parse_ok(std::to_string(kMinMs), ms).ms == kMinMs);
  CHECK(parse_ok(std::to_string(kMaxMs), ms).ms == kMaxMs);
  CHECK(parse_ok(std::to_string(kMaxMs) + ".99", ms).ms == kMaxMs);
  CHECK(mentions(error_of(std::to_string(kMaxMs + 1), ms), "outside years 0001-9999"));
  CHECK(mentions(error_of(std::to_string(kMinMs) + ".5", ms), "outside years 0001-9999"));
  CHECK(mentions(error_of("9223372036854775808", ms), "outside years"));
  CHECK(mentions(error_of("-9223372036854775809", ms), "outside years"));
  CHECK(mentions(error_of("x", ms), "epoch milliseconds"));
}

TEST_CASE("format_timestamp", "[timestamp]") {
  CHECK(format_timestamp(0) == "1970-01-01T00:00:00.000Z");
  CHECK(format_timestamp(1) == "1970-01-01T00:00:00.001Z");
  CHECK(format_timestamp(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(format_timestamp(-999) == "1969-12-31T23:59:59.001Z");
  CHECK(format_timestamp(-1000) == "1969-12-31T23:59:59.000Z");
  CHECK(format_timestamp(-1001) == "1969-12-31T23:59:58.999Z");
  CHECK(format_timestamp(-86400000) == "1969-12-31T00:00:00.000Z");
  CHECK(format_timestamp(-86400001) == "1969-12-30T23:59:59.999Z");
  CHECK(format_timestamp(1767225600123) == "2026-01-01T00:00:00.123Z");
  CHECK(format_timestamp(951782400000) == "2000-02-29T00:00:00.000Z");
  CHECK(format_timestamp(kMinMs) == "0001-01-01T00:00:00.000Z");
  CHECK(format_timestamp(kMaxMs) == "9999-12-31T23:59:59.999Z");
  CHECK(format_timestamp(-1041337172130) == "1937-01-01T11:40:27.870Z");
  // Out of the parseable range: printed in full, never wrapped or crashing.
  CHECK(format_timestamp(kMaxMs + 1) == "10000-01-01T00:00:00.000Z");
  CHECK(format_timestamp(kMinMs - 1) == "0000-12-31T23:59:59.999Z");
  const std::string lowest = format_timestamp(std::numeric_limits<std::int64_t>::min());
  const std::string highest = format_timestamp(std::numeric_limits<std::int64_t>::max());
  CHECK(lowest.front() == '-');
  CHECK(lowest.back() == 'Z');
  CHECK(highest.back() == 'Z');
  CHECK(highest.substr(highest.size() - 5) == ".807Z");
  CHECK(lowest.substr(lowest.size() - 5) == ".192Z");  // min % 1000 = -808 -> .192
}

TEST_CASE("format and parse round-trip", "[timestamp]") {
  // A deterministic spread across the whole range, negatives included.
  std::uint64_t state = 0x9e3779b97f4a7c15u;
  const auto span = static_cast<std::uint64_t>(kMaxMs - kMinMs + 1);
  for (int i = 0; i < 20000; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const std::int64_t ms = kMinMs + static_cast<std::int64_t>(state % span);
    const std::string text = format_timestamp(ms);
    auto back = parse_timestamp(text, TimestampFormat::rfc3339);
    INFO(ms << " -> " << text);
    REQUIRE(back.ok());
    REQUIRE(back->ms == ms);
    REQUIRE(back->flags == 0);
    // The same instant as epoch milliseconds.
    auto as_epoch = parse_timestamp(std::to_string(ms), TimestampFormat::epoch_milliseconds);
    REQUIRE(as_epoch.ok());
    REQUIRE(as_epoch->ms == ms);
  }
}
