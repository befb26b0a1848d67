// libFuzzer target: timestamp and decimal parsing on arbitrary bytes. Nothing
// may throw or crash, and every accepted value must survive its round trips:
// parse(text()) is the same Decimal; format_timestamp of any accepted instant
// re-parses to the same millisecond.
#include <date/tz.h>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/model/flags.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/timestamp.hpp"
#include "fuzz_check.hpp"

namespace {

constexpr std::int64_t kMinMs = -62135596800000;  // 0001-01-01T00:00:00.000Z
constexpr std::int64_t kMaxMs = 253402300799999;  // 9999-12-31T23:59:59.999Z

const std::vector<const date::time_zone*>& zones() {
  static const std::vector<const date::time_zone*> list = [] {
    std::vector<const date::time_zone*> out;
    for (const char* name :
         {"Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kathmandu", "Etc/UTC"}) {
      auto z = meter::find_time_zone(name);
      FUZZ_CHECK(z.ok());
      out.push_back(*z);
    }
    return out;
  }();
  return list;
}

// An accepted instant re-parses from its canonical text and as epoch values.
void check_instant(const meter::UtcTime& t) {
  FUZZ_CHECK(t.ms >= kMinMs && t.ms <= kMaxMs);
  const meter::FlagSet allowed = meter::flag_bit(meter::Flag::leap_second) |
                                 meter::flag_bit(meter::Flag::dst_ambiguous) |
                                 meter::flag_bit(meter::Flag::dst_gap);
  FUZZ_CHECK((t.flags & ~allowed) == 0);

  const std::string text = meter::format_timestamp(t.ms);
  FUZZ_CHECK(text.size() == 24 && text[10] == 'T' && text.back() == 'Z');
  auto again = meter::parse_timestamp(text, meter::TimestampFormat::rfc3339);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->ms == t.ms);
  FUZZ_CHECK(again->flags == 0);

  auto as_ms =
      meter::parse_timestamp(std::to_string(t.ms), meter::TimestampFormat::epoch_milliseconds);
  FUZZ_CHECK(as_ms.ok() && as_ms->ms == t.ms && as_ms->flags == 0);

  // Seconds with a three-digit fraction: "-1.500" for -1500 ms.
  const std::int64_t magnitude = t.ms < 0 ? -t.ms : t.ms;
  std::string frac = std::to_string(magnitude % 1000);
  frac.insert(0, 3 - frac.size(), '0');
  const std::string seconds = (t.ms < 0 ? "-" : "") + std::to_string(magnitude / 1000) + "." + frac;
  auto as_seconds = meter::parse_timestamp(seconds, meter::TimestampFormat::epoch_seconds);
  FUZZ_CHECK(as_seconds.ok() && as_seconds->ms == t.ms);
}

void check_timestamps(std::string_view text) {
  for (const auto format : {meter::TimestampFormat::rfc3339, meter::TimestampFormat::epoch_seconds,
                            meter::TimestampFormat::epoch_milliseconds}) {
    auto plain = meter::parse_timestamp(text, format);
    if (plain.ok()) {
      check_instant(*plain);
      if (format != meter::TimestampFormat::rfc3339) FUZZ_CHECK(plain->flags == 0);
      // Only leap seconds can be flagged without a zone.
      FUZZ_CHECK((plain->flags & ~meter::flag_bit(meter::Flag::leap_second)) == 0);
    } else {
      FUZZ_CHECK(!plain.error().message.empty());
    }
    for (const date::time_zone* zone : zones()) {
      auto zoned = meter::parse_timestamp(text, format, zone);
      if (plain.ok()) {
        // An offset in the text (or an epoch value) makes the zone irrelevant.
        FUZZ_CHECK(zoned.ok());
        FUZZ_CHECK(zoned->ms == plain->ms && zoned->flags == plain->flags);
      } else if (zoned.ok()) {
        check_instant(*zoned);
      } else {
        FUZZ_CHECK(!zoned.error().message.empty());
      }
    }
  }
}

bool canonical_shape(const std::string& t) {
  if (t.empty() || t.size() > 90) return false;
  if (t == "0") return true;
  std::size_t pos = t[0] == '-' ? 1 : 0;
  if (pos == t.size()) return false;
  const std::size_t point = t.find('.');
  const std::string int_part =
      t.substr(pos, point == std::string::npos ? std::string::npos : point - pos);
  if (int_part.empty()) return false;
  if (int_part.size() > 1 && int_part[0] == '0') return false;
  if (t.find_first_not_of("-.0123456789") != std::string::npos) return false;
  if (point != std::string::npos) {
    if (point + 1 >= t.size()) return false;  // trailing point
    if (t.back() == '0') return false;        // trailing zero
    if (t.find('.', point + 1) != std::string::npos) return false;
  } else if (int_part == "0") {
    return false;  // "-0"
  }
  return true;
}

meter::Decimal negate(const meter::Decimal& d) {
  auto n = subtract(meter::Decimal(), d);
  FUZZ_CHECK(n.ok());  // negation never leaves the limits
  return *n;
}

void check_decimal_alone(const meter::Decimal& d, int shift) {
  const std::string t = d.text();
  FUZZ_CHECK(canonical_shape(t));
  auto again = meter::Decimal::parse(t);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == d);
  FUZZ_CHECK(again->text() == t);
  FUZZ_CHECK((d <=> d) == std::strong_ordering::equal);
  FUZZ_CHECK(d.is_zero() == (t == "0"));
  FUZZ_CHECK(d.is_negative() == (t[0] == '-'));

  auto self = subtract(d, d);
  FUZZ_CHECK(self.ok() && self->is_zero() && !self->is_negative());
  auto minus_zero = subtract(d, meter::Decimal());
  FUZZ_CHECK(minus_zero.ok() && *minus_zero == d);
  const meter::Decimal n = negate(d);
  FUZZ_CHECK(negate(n) == d);
  FUZZ_CHECK(d.is_zero() || (n.is_negative() != d.is_negative()));

  for (const int places : {shift, -shift, 3, -3}) {
    auto s = d.shifted(places);
    if (!s.ok()) {
      FUZZ_CHECK(!d.is_zero());
      continue;
    }
    FUZZ_CHECK(s->is_negative() == d.is_negative());
    auto back = s->shifted(-places);
    FUZZ_CHECK(back.ok() && *back == d);
  }
}

void check_decimal_pair(const meter::Decimal& a, const meter::Decimal& b) {
  const auto order = a <=> b;
  FUZZ_CHECK((b <=> a) == (0 <=> order));
  FUZZ_CHECK((a == b) == (order == std::strong_ordering::equal));
  FUZZ_CHECK((a == b) == (a.text() == b.text()));
  auto d = subtract(a, b);
  if (!d.ok()) {
    FUZZ_CHECK(!d.error().message.empty());
    return;
  }
  if (order == std::strong_ordering::equal) {
    FUZZ_CHECK(d->is_zero());
  } else if (order == std::strong_ordering::less) {
    FUZZ_CHECK(d->is_negative());
  } else {
    FUZZ_CHECK(!d->is_zero() && !d->is_negative());
  }
  auto reverse = subtract(b, a);
  FUZZ_CHECK(reverse.ok() && *reverse == negate(*d));
  // (a - b) - a == -b
  auto minus_b = subtract(*d, a);
  FUZZ_CHECK(minus_b.ok() && *minus_b == negate(b));
}

void check_decimals(std::string_view text, int shift) {
  auto whole = meter::Decimal::parse(text);
  if (whole.ok()) {
    check_decimal_alone(*whole, shift);
  } else {
    FUZZ_CHECK(!whole.error().message.empty());
    FUZZ_CHECK(whole.error().message.size() < 400);
  }
  // Two numbers separated by the first '|'.
  const std::size_t bar = text.find('|');
  if (bar == std::string_view::npos) return;
  auto a = meter::Decimal::parse(text.substr(0, bar));
  auto b = meter::Decimal::parse(text.substr(bar + 1));
  if (a.ok()) check_decimal_alone(*a, shift);
  if (b.ok()) check_decimal_alone(*b, shift);
  if (a.ok() && b.ok()) check_decimal_pair(*a, *b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  check_timestamps(text);

  int shift = 0;
  if (size > 0) shift = static_cast<int>(data[0] % 96) - 48;  // a little past the limits
  check_decimals(text, shift);

  auto zone = meter::find_time_zone(text);
  if (zone.ok()) FUZZ_CHECK(!(*zone)->name().empty());

  // Any 64-bit value formats without crashing; in range it parses back.
  if (size >= 8) {
    std::int64_t ms = 0;
    std::memcpy(&ms, data, sizeof ms);
    const std::string formatted = meter::format_timestamp(ms);
    FUZZ_CHECK(!formatted.empty() && formatted.back() == 'Z');
    if (ms >= kMinMs && ms <= kMaxMs) {
      auto back = meter::parse_timestamp(formatted, meter::TimestampFormat::rfc3339);
      FUZZ_CHECK(back.ok() && back->ms == ms);
    }
  }
  return 0;
}
