#include <catch2/catch.hpp>
#include <string>

#include "common/normalize/units.hpp"

using meter::unit_shift;

namespace {

int shift(const std::string& unit, const std::string& canonical) {
  auto r = unit_shift(unit, canonical);
  INFO(unit << " -> " << canonical);
  REQUIRE(r.ok());
  return *r;
}

std::string shift_error(const std::string& unit, const std::string& canonical) {
  auto r = unit_shift(unit, canonical);
  INFO(unit << " -> " << canonical);
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

}  // namespace

TEST_CASE("unit_shift energy", "[units]") {
  CHECK(shift("kWh", "kWh") == 0);
  CHECK(shift("MWh", "kWh") == 3);
  CHECK(shift("GWh", "kWh") == 6);
  CHECK(shift("Wh", "kWh") == -3);
  CHECK(shift("kWh", "Wh") == 3);
  CHECK(shift("GWh", "Wh") == 9);
  CHECK(shift("Wh", "GWh") == -9);
  CHECK(shift("kWh", "MWh") == -3);
  CHECK(shift("Wh", "Wh") == 0);
}

TEST_CASE("unit_shift power", "[units]") {
  CHECK(shift("kW", "kW") == 0);
  CHECK(shift("MW", "kW") == 3);
  CHECK(shift("GW", "kW") == 6);
  CHECK(shift("W", "kW") == -3);
  CHECK(shift("GW", "W") == 9);
  CHECK(shift("W", "MW") == -6);
}

TEST_CASE("unit_shift rejects unknown and cross-family units", "[units]") {
  const std::string milli = shift_error("mWh", "kWh");  // milli, not mega
  CHECK(milli.find("'mWh'") != std::string::npos);
  CHECK(milli.find("Wh, kWh, MWh, GWh") != std::string::npos);
  CHECK(milli.find("energy") != std::string::npos);

  const std::string cross = shift_error("kW", "kWh");
  CHECK(cross == "unit 'kW' is not an energy unit; accepted: Wh, kWh, MWh, GWh");
  const std::string cross_power = shift_error("kWh", "kW");
  CHECK(cross_power == "unit 'kWh' is not a power unit; accepted: W, kW, MW, GW");

  // Exact and case-sensitive.
  CHECK_FALSE(unit_shift("kwh", "kWh").ok());
  CHECK_FALSE(unit_shift("KWH", "kWh").ok());
  CHECK_FALSE(unit_shift("mw", "kW").ok());
  CHECK_FALSE(unit_shift(" kWh", "kWh").ok());
  CHECK_FALSE(unit_shift("kWh ", "kWh").ok());
  CHECK_FALSE(unit_shift("", "kWh").ok());
  CHECK_FALSE(unit_shift("kVAh", "kWh").ok());
  CHECK_FALSE(unit_shift("TWh", "kWh").ok());
}

TEST_CASE("unit_shift other canonical units accept only themselves", "[units]") {
  CHECK(shift("m3", "m3") == 0);
  CHECK(shift("°C", "°C") == 0);
  CHECK(shift("V", "V") == 0);
  const std::string other = shift_error("l", "m3");
  CHECK(other.find("'l'") != std::string::npos);
  CHECK(other.find("'m3'") != std::string::npos);
  CHECK_FALSE(unit_shift("kWh", "m3").ok());
  CHECK_FALSE(unit_shift("mV", "V").ok());  // no prefixes outside the families
  CHECK_FALSE(unit_shift("", "V").ok());
}

TEST_CASE("unit_shift messages stay printable", "[units]") {
  const std::string message = shift_error(std::string("k\x01Wh\xff"), "kWh");
  CHECK(message.find("'k\\x01Wh\\xff'") != std::string::npos);
  const std::string huge = shift_error(std::string(5000, 'W'), "kWh");
  CHECK(huge.size() < 300);
  CHECK(huge.find("5000 bytes") != std::string::npos);
}
