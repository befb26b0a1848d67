// scale: a mapping's `scale` applied to a value as sent (watt-minutes to Wh,
// a pulse count times the meter constant), in exact decimal arithmetic.
#pragma once

#include <string>
#include <string_view>

#include "common/config/config.hpp"
#include "common/util/result.hpp"

namespace meter {

struct ScaledValue {
  std::string text;      // the scaled value, canonical decimal text
  bool rounded = false;  // the exact quotient is no finite decimal within the limits
};

// `value` x scale.multiply / scale.divide. Exact whenever the result is a
// finite decimal within Decimal's limits; otherwise rounded half to even to
// scale.decimals places (`rounded`). Errors: `value` is no decimal, or the
// product exceeds the limits.
Result<ScaledValue> apply_scale(std::string_view value, const Scale& scale);

}  // namespace meter
