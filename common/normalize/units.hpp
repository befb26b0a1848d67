// Units -> canonical unit of a metric. Every factor we accept is a power of
// ten, so a conversion is an exact shift of the decimal point.
#pragma once

#include <string_view>

#include "common/util/result.hpp"

namespace meter {

// How many decimal places a value in `unit` moves to be in `canonical_unit`
// (MWh -> kWh: +3; Wh -> kWh: -3; kWh -> kWh: 0). Families:
//   energy: Wh, kWh, MWh, GWh      power: W, kW, MW, GW
// Any other canonical unit accepts only itself. Unit names are exact and
// case-sensitive (mWh is not MWh); an unknown or cross-family unit is an
// error that names the unit and the units accepted.
Result<int> unit_shift(std::string_view unit, std::string_view canonical_unit);

}  // namespace meter
