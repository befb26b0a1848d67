#include "common/normalize/units.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/quote.hpp"

namespace meter {

namespace {

struct UnitPower {
  std::string_view name;
  int power;  // the unit is 10^power base units
};

struct Family {
  std::string_view name;  // for messages: "energy", "power"
  std::array<UnitPower, 4> units;
};

constexpr std::array<Family, 2> kFamilies = {{
    {"energy", {{{"Wh", 0}, {"kWh", 3}, {"MWh", 6}, {"GWh", 9}}}},
    {"power", {{{"W", 0}, {"kW", 3}, {"MW", 6}, {"GW", 9}}}},
}};

std::optional<int> power_in(const Family& family, std::string_view unit) {
  for (const UnitPower& u : family.units) {
    if (u.name == unit) return u.power;
  }
  return std::nullopt;
}

std::string accepted_list(const Family& family) {
  std::string out;
  for (const UnitPower& u : family.units) {
    if (!out.empty()) out += ", ";
    out += u.name;
  }
  return out;
}

}  // namespace

Result<int> unit_shift(std::string_view unit, std::string_view canonical_unit) {
  for (const Family& family : kFamilies) {
    const std::optional<int> canonical_power = power_in(family, canonical_unit);
    if (!canonical_power) continue;
    const std::optional<int> unit_power = power_in(family, unit);
    if (!unit_power) {
      return Error{"unit " + quoted(unit) + " is not " + (family.name == "energy" ? "an " : "a ") +
                   std::string(family.name) + " unit; accepted: " + accepted_list(family)};
    }
    // value [unit] = value * 10^(unit_power - canonical_power) [canonical].
    return *unit_power - *canonical_power;
  }
  if (unit == canonical_unit) return 0;
  return Error{"unit " + quoted(unit) + " is not accepted where the unit is " +
               quoted(canonical_unit) + "; accepted: " + quoted(canonical_unit)};
}

}  // namespace meter
