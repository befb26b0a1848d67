#include "common/normalize/decimal.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/util/quote.hpp"

namespace meter {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::size_t digit_run(std::string_view text, std::size_t pos) {
  std::size_t end = pos;
  while (end < text.size() && is_digit(text[end])) ++end;
  return end - pos;
}

// An exponent written with more digits than this is far outside every limit;
// saturating here keeps the arithmetic below in range of int64 whatever the
// input (an exponent of a billion digits included).
constexpr std::int64_t kExponentSaturation = 1'000'000'000'000;

// Magnitude comparison of two digit strings that have the same scale and no
// leading zeros.
int compare_magnitude(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  const int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// a + b for digit strings of the same scale.
std::string add_digits(const std::string& a, const std::string& b) {
  std::string out;
  out.reserve(std::max(a.size(), b.size()) + 1);
  int carry = 0;
  std::size_t i = a.size();
  std::size_t j = b.size();
  while (i > 0 || j > 0 || carry != 0) {
    int sum = carry;
    if (i > 0) sum += a[--i] - '0';
    if (j > 0) sum += b[--j] - '0';
    out += static_cast<char>('0' + sum % 10);
    carry = sum / 10;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// a - b for digit strings of the same scale with a >= b.
std::string subtract_digits(const std::string& a, const std::string& b) {
  std::string out;
  out.reserve(a.size());
  int borrow = 0;
  std::size_t i = a.size();
  std::size_t j = b.size();
  while (i > 0) {
    int diff = (a[--i] - '0') - borrow;
    if (j > 0) diff -= b[--j] - '0';
    borrow = diff < 0 ? 1 : 0;
    if (diff < 0) diff += 10;
    out += static_cast<char>('0' + diff);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// A value being built: digits with any leading/trailing zeros and the power
// of ten of the last digit. Only Decimal's members and friends can fill the
// private fields, so they take these parts once checked.
struct DecimalParts {
  bool negative = false;
  std::string digits;  // empty: zero
  int exponent = 0;
};

// Strips leading/trailing zeros and enforces the limits. `what` names the
// value in error messages.
Result<DecimalParts> normalize(bool negative, std::string_view digits, std::int64_t exponent,
                               const std::string& what) {
  const std::size_t first = digits.find_first_not_of('0');
  if (first == std::string_view::npos) return DecimalParts{};
  const std::size_t last = digits.find_last_not_of('0');
  exponent += static_cast<std::int64_t>(digits.size() - 1 - last);
  digits = digits.substr(first, last - first + 1);
  const auto count = static_cast<std::int64_t>(digits.size());
  if (count > Decimal::kMaxSignificantDigits) {
    return Error{what + " has " + std::to_string(count) + " significant digits; the limit is " +
                 std::to_string(Decimal::kMaxSignificantDigits)};
  }
  if (exponent < Decimal::kMinExponent) {
    return Error{what + " has digits below 10^" + std::to_string(Decimal::kMinExponent) +
                 ", the smallest step allowed"};
  }
  if (count + exponent > Decimal::kMaxExponent) {
    return Error{what + " is 10^" + std::to_string(Decimal::kMaxExponent) +
                 " or more in magnitude; the limit is below 10^" +
                 std::to_string(Decimal::kMaxExponent)};
  }
  return DecimalParts{negative, std::string(digits), static_cast<int>(exponent)};
}

}  // namespace

Result<Decimal> Decimal::parse(std::string_view text) {
  const auto syntax_error = [&](const std::string& why) {
    return Error{"not a decimal number: " + quoted(text) + " (" + why + ")"};
  };
  if (text.empty()) return Error{"not a decimal number: empty text"};
  std::size_t pos = 0;
  bool negative = false;
  if (text[pos] == '+' || text[pos] == '-') {
    negative = text[pos] == '-';
    ++pos;
  }
  const std::size_t int_len = digit_run(text, pos);
  const std::string_view int_part = text.substr(pos, int_len);
  pos += int_len;
  std::string_view frac_part;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const std::size_t frac_len = digit_run(text, pos);
    if (frac_len == 0) return syntax_error("expected digits after the point");
    frac_part = text.substr(pos, frac_len);
    pos += frac_len;
  }
  if (int_part.empty() && frac_part.empty()) return syntax_error("expected digits");
  std::int64_t exponent = 0;
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
    ++pos;
    bool exp_negative = false;
    if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
      exp_negative = text[pos] == '-';
      ++pos;
    }
    const std::size_t exp_len = digit_run(text, pos);
    if (exp_len == 0) return syntax_error("expected digits in the exponent");
    for (std::size_t i = pos; i < pos + exp_len; ++i) {
      exponent = std::min(exponent * 10 + (text[i] - '0'), kExponentSaturation);
    }
    if (exp_negative) exponent = -exponent;
    pos += exp_len;
  }
  if (pos != text.size()) {
    return syntax_error("unexpected " + quoted(text.substr(pos, 1)) + " at byte " +
                        std::to_string(pos));
  }
  std::string digits;
  digits.reserve(int_part.size() + frac_part.size());
  digits.append(int_part);
  digits.append(frac_part);
  // Sizes come from a string_view, so they fit in int64 with room for the
  // saturated exponent.
  auto parts = normalize(negative, digits, exponent - static_cast<std::int64_t>(frac_part.size()),
                         "decimal " + quoted(text));
  if (!parts) return parts.error();
  Decimal d;
  d.negative_ = parts->negative;
  d.digits_ = std::move(parts->digits);
  d.exponent_ = parts->exponent;
  return d;
}

Result<Decimal> Decimal::shifted(int places) const {
  if (is_zero()) return *this;
  auto parts =
      normalize(negative_, digits_, static_cast<std::int64_t>(exponent_) + places,
                "decimal '" + text() + "' shifted by " + std::to_string(places) + " places");
  if (!parts) return parts.error();
  Decimal d;
  d.negative_ = parts->negative;
  d.digits_ = std::move(parts->digits);
  d.exponent_ = parts->exponent;
  return d;
}

std::string Decimal::text() const {
  if (is_zero()) return "0";
  std::string out = negative_ ? "-" : "";
  const auto count = static_cast<std::int64_t>(digits_.size());
  if (exponent_ >= 0) {
    out += digits_;
    out.append(static_cast<std::size_t>(exponent_), '0');
    return out;
  }
  const std::int64_t int_digits = count + exponent_;
  if (int_digits > 0) {
    const auto split = static_cast<std::size_t>(int_digits);
    out.append(digits_, 0, split);
    out += '.';
    out.append(digits_, split);
  } else {
    out += "0.";
    out.append(static_cast<std::size_t>(-int_digits), '0');
    out += digits_;
  }
  return out;
}

Result<Decimal> subtract(const Decimal& a, const Decimal& b) {
  // Bring both to the finer scale; the limits keep these strings at most
  // about 80 digits.
  const int scale = std::min(a.exponent_, b.exponent_);
  std::string da = a.digits_;
  da.append(static_cast<std::size_t>(a.exponent_ - scale), '0');
  std::string db = b.digits_;
  db.append(static_cast<std::size_t>(b.exponent_ - scale), '0');
  if (a.is_zero()) da.clear();
  if (b.is_zero()) db.clear();

  // a - b = a + (-b).
  const bool b_negated = !b.negative_;
  bool negative = false;
  std::string digits;
  if (a.negative_ == b_negated) {
    digits = add_digits(da, db);
    negative = a.negative_;
  } else if (compare_magnitude(da, db) >= 0) {
    digits = subtract_digits(da, db);
    negative = a.negative_;
  } else {
    digits = subtract_digits(db, da);
    negative = b_negated;
  }
  auto parts =
      normalize(negative, digits, scale, "difference '" + a.text() + "' - '" + b.text() + "'");
  if (!parts) return parts.error();
  Decimal d;
  d.negative_ = parts->negative;
  d.digits_ = std::move(parts->digits);
  d.exponent_ = parts->exponent;
  return d;
}

Decimal Decimal::from_int(std::int64_t value) {
  // Through the text: one parse, no second place that knows the invariants.
  auto parsed = Decimal::parse(std::to_string(value));
  return parsed ? *parsed : Decimal{};
}

Decimal Decimal::negated() const {
  Decimal d = *this;
  if (!d.is_zero()) d.negative_ = !d.negative_;
  return d;
}

Result<Decimal> add(const Decimal& a, const Decimal& b) { return subtract(a, b.negated()); }

Result<Decimal> multiply(const Decimal& a, const Decimal& b) {
  if (a.is_zero() || b.is_zero()) return Decimal{};
  // Schoolbook product of the digit strings (at most 40 x 40 digits).
  std::vector<int> product(a.digits_.size() + b.digits_.size(), 0);
  for (std::size_t i = a.digits_.size(); i-- > 0;) {
    for (std::size_t j = b.digits_.size(); j-- > 0;) {
      product[i + j + 1] += (a.digits_[i] - '0') * (b.digits_[j] - '0');
    }
  }
  for (std::size_t k = product.size(); k-- > 1;) {
    product[k - 1] += product[k] / 10;
    product[k] %= 10;
  }
  std::string digits;
  digits.reserve(product.size());
  for (const int digit : product) digits += static_cast<char>('0' + digit);
  auto parts = normalize(a.negative_ != b.negative_, digits,
                         static_cast<std::int64_t>(a.exponent_) + b.exponent_,
                         "product '" + a.text() + "' x '" + b.text() + "'");
  if (!parts) return parts.error();
  Decimal d;
  d.negative_ = parts->negative;
  d.digits_ = std::move(parts->digits);
  d.exponent_ = parts->exponent;
  return d;
}

std::strong_ordering operator<=>(const Decimal& a, const Decimal& b) {
  const int sign_a = a.is_zero() ? 0 : (a.negative_ ? -1 : 1);
  const int sign_b = b.is_zero() ? 0 : (b.negative_ ? -1 : 1);
  if (sign_a != sign_b) return sign_a <=> sign_b;
  if (sign_a == 0) return std::strong_ordering::equal;
  // Same sign, both non-zero: compare magnitudes, then flip for negatives.
  std::strong_ordering magnitude = std::strong_ordering::equal;
  const auto top_a = static_cast<std::int64_t>(a.digits_.size()) + a.exponent_;
  const auto top_b = static_cast<std::int64_t>(b.digits_.size()) + b.exponent_;
  if (top_a != top_b) {
    magnitude = top_a <=> top_b;
  } else {
    // Same position of the leading digit: digit strings compare like text
    // (no trailing zeros, so a longer string with the same prefix is larger).
    const int c = a.digits_.compare(b.digits_);
    magnitude = c <=> 0;
  }
  // NOLINTNEXTLINE(modernize-use-nullptr): a false positive on `0 <=> x` (clang-tidy 14)
  return sign_a > 0 ? magnitude : 0 <=> magnitude;
}

bool operator==(const Decimal& a, const Decimal& b) {
  // The representation is canonical, so equal values have equal fields.
  return a.negative_ == b.negative_ && a.exponent_ == b.exponent_ && a.digits_ == b.digits_;
}

}  // namespace meter
