#include "common/decode/scale.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace meter {
namespace {

// A non-negative decimal as digits and the count of them after the point.
struct Fixed {
  std::string digits;  // no sign, no point; at least one digit
  std::size_t fraction = 0;
};

Fixed fixed_of(std::string_view canonical) {
  Fixed fixed;
  const std::size_t point = canonical.find('.');
  if (point == std::string_view::npos) {
    fixed.digits = std::string(canonical);
  } else {
    fixed.digits =
        std::string(canonical.substr(0, point)) + std::string(canonical.substr(point + 1));
    fixed.fraction = canonical.size() - point - 1;
  }
  return fixed;
}

std::string text_of(bool negative, std::string digits, std::size_t fraction) {
  while (digits.size() <= fraction) digits.insert(digits.begin(), '0');
  std::string text = digits.substr(0, digits.size() - fraction);
  if (fraction > 0) text += "." + digits.substr(digits.size() - fraction);
  return (negative ? "-" : "") + text;
}

// Long division of `dividend` (digits) by `divisor`, writing `extra` more
// digits past the dividend's last; the remainder is left in `remainder`.
std::string divide_digits(const std::string& dividend, std::size_t extra, std::uint64_t divisor,
                          std::uint64_t& remainder) {
  std::string quotient;
  quotient.reserve(dividend.size() + extra);
  remainder = 0;
  for (std::size_t i = 0; i < dividend.size() + extra; ++i) {
    const std::uint64_t digit =
        i < dividend.size() ? static_cast<std::uint64_t>(dividend[i] - '0') : 0;
    const std::uint64_t current = remainder * 10 + digit;  // divisor <= 10^9: no overflow
    quotient += static_cast<char>('0' + current / divisor);
    remainder = current % divisor;
  }
  return quotient;
}

}  // namespace

Result<ScaledValue> apply_scale(std::string_view value, const Scale& scale) {
  Result<Decimal> parsed = Decimal::parse(value);
  if (!parsed) return parsed.error();
  Result<Decimal> product = multiply(*parsed, scale.multiply);
  if (!product) return Error{"scale: " + product.error().message};
  if (scale.divide <= 1) return ScaledValue{product->text(), false};

  const bool negative = product->is_negative();
  const std::string magnitude = product->text().substr(negative ? 1 : 0);
  const Fixed fixed = fixed_of(magnitude);
  // Exact when the quotient ends within Decimal's finest step.
  const auto max_fraction = static_cast<std::size_t>(-Decimal::kMinExponent);
  if (fixed.fraction <= max_fraction) {
    std::uint64_t remainder = 0;
    const std::size_t extra = max_fraction - fixed.fraction;
    const std::string quotient = divide_digits(fixed.digits, extra, scale.divide, remainder);
    if (remainder == 0) {
      Result<Decimal> exact = Decimal::parse(text_of(negative, quotient, max_fraction));
      if (exact) return ScaledValue{exact->text(), false};
    }
  }
  // Rounded half to even to `decimals` places: one digit more, then the rest.
  const auto decimals = static_cast<std::size_t>(scale.decimals);
  std::string digits = fixed.digits;
  std::size_t fraction = fixed.fraction;
  // Drop the dividend's own places beyond decimals + 1 into a sticky flag.
  bool sticky = false;
  while (fraction > decimals + 1) {
    sticky = sticky || digits.back() != '0';
    digits.pop_back();
    --fraction;
  }
  std::uint64_t remainder = 0;
  std::string quotient = divide_digits(digits, decimals + 1 - fraction, scale.divide, remainder);
  sticky = sticky || remainder != 0;
  const char last = quotient.back();
  quotient.pop_back();
  bool up = last > '5' ||
            (last == '5' && (sticky || (!quotient.empty() && (quotient.back() - '0') % 2 == 1)));
  if (up) {
    std::size_t i = quotient.size();
    while (i > 0 && quotient[i - 1] == '9') quotient[--i] = '0';
    if (i == 0) {
      quotient.insert(quotient.begin(), '1');
    } else {
      ++quotient[i - 1];
    }
  }
  Result<Decimal> rounded = Decimal::parse(text_of(negative, quotient, decimals));
  if (!rounded) return Error{"scale: " + rounded.error().message};
  return ScaledValue{rounded->text(), true};
}

}  // namespace meter
