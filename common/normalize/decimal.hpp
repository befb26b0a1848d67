// Exact decimal numbers. Meter values are kept as the decimal text that was
// sent and are never passed through binary floating point: a unit change is a
// shift of the decimal point, a delta is an exact difference.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace meter {

class Decimal {
 public:
  // Limits that keep every canonical text short and every operation cheap.
  // Values outside them are decode errors naming the limit, never rounded.
  static constexpr int kMaxSignificantDigits = 40;
  static constexpr int kMaxExponent = 40;   // |value| < 10^40 after shifting
  static constexpr int kMinExponent = -40;  // smallest step 10^-40

  // Zero.
  Decimal() = default;

  // Accepts JSON number syntax and a little more that meters send as text:
  //   [+-]? digits [. digits]? ([eE] [+-]? digits)?   and  [+-]? . digits
  // Leading zeros are fine ("007"). Rejects empty text, "nan", "inf", hex,
  // whitespace, thousands separators and a trailing point ("1.").
  static Result<Decimal> parse(std::string_view text);

  // The value times 10^places, exactly (unit conversion: MWh -> kWh is +3).
  Result<Decimal> shifted(int places) const;

  // Canonical plain notation: no exponent, no leading zeros except a single
  // "0" before the point, no trailing zeros after the point, no trailing
  // point, "0" never "-0". Examples: "1.5", "10172.887", "-0.001", "1000".
  std::string text() const;

  bool is_zero() const { return digits_.empty(); }
  bool is_negative() const { return negative_; }

  // An integer, exactly (every int64 is within the limits).
  static Decimal from_int(std::int64_t value);

  // The same magnitude with the other sign ("0" stays "0").
  Decimal negated() const;

  // Exact difference; fails only when the result exceeds the limits above.
  friend Result<Decimal> subtract(const Decimal& a, const Decimal& b);
  // Exact sum; fails only when the result exceeds the limits above.
  friend Result<Decimal> add(const Decimal& a, const Decimal& b);
  // Exact product; fails when the result exceeds the limits above (more
  // significant digits, or a step finer than 10^kMinExponent): never rounds.
  friend Result<Decimal> multiply(const Decimal& a, const Decimal& b);

  friend std::strong_ordering operator<=>(const Decimal& a, const Decimal& b);
  friend bool operator==(const Decimal& a, const Decimal& b);

 private:
  // value = (negative_ ? -1 : 1) * digits_ * 10^exponent_, where digits_ has
  // no leading or trailing zeros; zero is digits_ empty, exponent_ 0.
  bool negative_ = false;
  std::string digits_;
  int exponent_ = 0;
};

}  // namespace meter
