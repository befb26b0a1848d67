#include <catch2/catch.hpp>
#include <climits>
#include <compare>
#include <string>
#include <vector>

#include "common/normalize/decimal.hpp"

using meter::Decimal;

namespace {

Decimal dec(const std::string& text) {
  auto r = Decimal::parse(text);
  INFO("parsing '" << text << "'");
  REQUIRE(r.ok());
  return *r;
}

std::string canon(const std::string& text) { return dec(text).text(); }

std::string parse_error(const std::string& text) {
  auto r = Decimal::parse(text);
  INFO("parsing '" << text << "'");
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

std::string shift_text(const std::string& text, int places) {
  auto r = dec(text).shifted(places);
  INFO("shifting '" << text << "' by " << places);
  REQUIRE(r.ok());
  return r->text();
}

std::string diff(const std::string& a, const std::string& b) {
  auto r = subtract(dec(a), dec(b));
  INFO(a << " - " << b);
  REQUIRE(r.ok());
  return r->text();
}

}  // namespace

TEST_CASE("Decimal canonical text", "[decimal]") {
  CHECK(Decimal().text() == "0");
  CHECK(canon("0") == "0");
  CHECK(canon("-0") == "0");
  CHECK(canon("+0.000") == "0");
  CHECK(canon("-0.0e5") == "0");
  CHECK(canon("1.50") == "1.5");
  CHECK(canon("007") == "7");
  CHECK(canon("-007.100") == "-7.1");
  CHECK(canon("+42") == "42");
  CHECK(canon(".5") == "0.5");
  CHECK(canon("-.5") == "-0.5");
  CHECK(canon("+.25") == "0.25");
  CHECK(canon("1000") == "1000");
  CHECK(canon("100.000") == "100");
  CHECK(canon("10172.887") == "10172.887");
  CHECK(canon("0.0015") == "0.0015");
  CHECK(canon("-0.001") == "-0.001");
  CHECK(canon("123.456") == "123.456");
}

TEST_CASE("Decimal exponent forms", "[decimal]") {
  CHECK(canon("1e3") == "1000");
  CHECK(canon("1E3") == "1000");
  CHECK(canon("1e+3") == "1000");
  CHECK(canon("1.5e-3") == "0.0015");
  CHECK(canon("15e-4") == "0.0015");
  CHECK(canon("-2.5E+2") == "-250");
  CHECK(canon("1.23456e2") == "123.456");
  CHECK(canon("1e0") == "1");
  CHECK(canon("1e-0") == "1");
  CHECK(canon("12e-1") == "1.2");
  CHECK(canon("0.5e1") == "5");
  CHECK(canon(".5e2") == "50");
  CHECK(canon("1e0000000000000000000000000003") == "1000");  // leading zeros in exponent
  // Zero is zero whatever the exponent, even one that does not fit an int.
  CHECK(canon("0e99999999999999999999") == "0");
  CHECK(canon("0.000e-99999999999999999999") == "0");
}

TEST_CASE("Decimal rejects what is not a number", "[decimal]") {
  for (const char* bad :
       {"",    " ",     "nan",  "NaN",   "inf",   "-inf", "Infinity",    "0x10",  "0X1F",
        " 1",  "1 ",    "1\n",  "1,000", "1,5",   "1.",   "-1.",         "1.e5",  "-",
        "+",   ".",     "-.",   "e5",    "1e",    "1e+",  "1e-",         "1.2.3", "--1",
        "+-1", "1_000", "1.5f", "1e5.5", "1e5e5", "١",    "\xef\xbc\x91"}) {
    const std::string text(bad);
    auto r = Decimal::parse(text);
    INFO("'" << text << "'");
    CHECK_FALSE(r.ok());
  }
  // An embedded NUL must not end the number early.
  CHECK_FALSE(Decimal::parse(std::string("1\0"
                                         "2",
                                         3))
                  .ok());
}

TEST_CASE("Decimal parse errors name the text", "[decimal]") {
  CHECK(parse_error("abc").find("'abc'") != std::string::npos);
  CHECK(parse_error("1.").find("'1.'") != std::string::npos);
  CHECK(parse_error("").find("empty") != std::string::npos);
  // Unprintable bytes are escaped and huge inputs cut short in the message.
  const std::string control = parse_error("1\x01");
  CHECK(control.find("'1\\x01'") != std::string::npos);
  const std::string huge(100000, 'x');
  const std::string message = parse_error(huge);
  CHECK(message.size() < 300);
  CHECK(message.find("100000 bytes") != std::string::npos);
}

TEST_CASE("Decimal significant digit limit", "[decimal]") {
  const std::string forty = "1234567890123456789012345678901234567890";
  REQUIRE(forty.size() == 40);
  CHECK(canon(forty) == forty);
  CHECK(canon("-" + forty) == "-" + forty);
  CHECK(canon("1.234567890123456789012345678901234567890") ==
        "1.23456789012345678901234567890123456789");  // trailing 0 is not significant
  CHECK(canon("0.1234567890123456789012345678901234567891") ==
        "0.1234567890123456789012345678901234567891");

  const std::string error = parse_error(forty + "1");
  CHECK(error.find("41 significant digits") != std::string::npos);
  CHECK(error.find("40") != std::string::npos);
  CHECK(error.find("'" + forty + "1'") != std::string::npos);
  // Never rounded: 41 digits after the point are an error too.
  CHECK(parse_error("0.12345678901234567890123456789012345678901").find("significant") !=
        std::string::npos);

  // Trailing zeros are not significant, leading zeros never are.
  CHECK(canon("1.000000000000000000000000000000000000000000000") == "1");
  CHECK(canon("1" + std::string(60, '0') + "e-60") == "1");
  CHECK(canon(std::string(1000, '0') + "1") == "1");
  CHECK(canon("-" + std::string(1000, '0') + "1.5") == "-1.5");
  CHECK(canon("0." + std::string(38, '0') + "1" + std::string(500, '0')) ==
        "0." + std::string(38, '0') + "1");
}

TEST_CASE("Decimal exponent limits", "[decimal]") {
  const std::string max40 = std::string(40, '9');
  CHECK(canon(max40) == max40);  // just below 10^40
  CHECK(canon("1e39") == "1" + std::string(39, '0'));
  CHECK(canon("9.9e39") == "99" + std::string(38, '0'));
  CHECK(canon("1e-40") == "0." + std::string(39, '0') + "1");
  CHECK(canon("-1e-40") == "-0." + std::string(39, '0') + "1");

  const std::string big = parse_error("1e40");
  CHECK(big.find("'1e40'") != std::string::npos);
  CHECK(big.find("10^40") != std::string::npos);
  CHECK_FALSE(Decimal::parse("1" + std::string(40, '0')).ok());
  CHECK_FALSE(Decimal::parse("-1e40").ok());

  const std::string small = parse_error("1e-41");
  CHECK(small.find("'1e-41'") != std::string::npos);
  CHECK(small.find("10^-40") != std::string::npos);
  CHECK_FALSE(Decimal::parse("0." + std::string(40, '0') + "1").ok());

  // Exponents that do not fit in an int are errors, not wrap-arounds.
  CHECK_FALSE(Decimal::parse("1e99999999999999999999").ok());
  CHECK_FALSE(Decimal::parse("1e-99999999999999999999").ok());
  CHECK_FALSE(Decimal::parse("1e2147483648").ok());
  CHECK_FALSE(Decimal::parse("1e4294967336").ok());  // 2^32 + 40 would wrap to 40
  CHECK_FALSE(Decimal::parse("1e-4294967296").ok());
  CHECK_FALSE(Decimal::parse("1e" + std::string(100000, '9')).ok());
  // A huge exponent cancelled by a huge fraction is still judged exactly.
  CHECK(canon("0." + std::string(99, '0') + "1e100") == "1");
}

TEST_CASE("Decimal shifted", "[decimal]") {
  CHECK(shift_text("0.0015", 3) == "1.5");
  CHECK(shift_text("10.172887", 3) == "10172.887");
  CHECK(shift_text("1500", -3) == "1.5");
  CHECK(shift_text("1.5", -3) == "0.0015");
  CHECK(shift_text("-2.5", 3) == "-2500");
  CHECK(shift_text("7", 0) == "7");
  CHECK(shift_text("0", 3) == "0");
  CHECK(shift_text("0", INT_MAX) == "0");
  CHECK(shift_text("0", INT_MIN) == "0");
  CHECK(shift_text("1", 39) == "1" + std::string(39, '0'));
  CHECK(shift_text("1", -40) == "0." + std::string(39, '0') + "1");

  auto too_big = dec("1").shifted(40);
  REQUIRE_FALSE(too_big.ok());
  CHECK(too_big.error().message.find("'1'") != std::string::npos);
  CHECK(too_big.error().message.find("10^40") != std::string::npos);
  auto too_small = dec("0.5").shifted(-40);
  REQUIRE_FALSE(too_small.ok());
  CHECK(too_small.error().message.find("10^-40") != std::string::npos);
  CHECK_FALSE(dec("1").shifted(INT_MAX).ok());
  CHECK_FALSE(dec("1").shifted(INT_MIN).ok());
  CHECK_FALSE(dec("-1e39").shifted(1).ok());
}

TEST_CASE("Decimal subtract", "[decimal]") {
  CHECK(diff("10172.887", "10172.886") == "0.001");
  CHECK(diff("10172.886", "10172.887") == "-0.001");
  CHECK(diff("1.5", "0.25") == "1.25");
  CHECK(diff("0.25", "1.5") == "-1.25");
  CHECK(diff("-1.5", "2") == "-3.5");
  CHECK(diff("1.5", "-2") == "3.5");
  CHECK(diff("-2", "-1.5") == "-0.5");
  CHECK(diff("-1.5", "-2") == "0.5");
  CHECK(diff("100", "0.001") == "99.999");
  CHECK(diff("1000", "1") == "999");
  CHECK(diff("1e3", "1e-3") == "999.999");
  CHECK(diff("9.99", "-0.01") == "10");
  CHECK(diff("0", "5") == "-5");
  CHECK(diff("5", "0") == "5");
  CHECK(diff("0", "0") == "0");
  CHECK(diff("0", "-0.5") == "0.5");
  CHECK(diff("1.10", "1.1") == "0");

  auto same = subtract(dec("-1.25"), dec("-1.25"));
  REQUIRE(same.ok());
  CHECK(same->is_zero());
  CHECK_FALSE(same->is_negative());
  CHECK(same->text() == "0");

  // Exceeding the limits is an error, never a rounded result.
  auto wide = subtract(dec("1e39"), dec("1e-40"));
  REQUIRE_FALSE(wide.ok());
  CHECK(wide.error().message.find("significant digits") != std::string::npos);
  auto huge = subtract(dec("9e39"), dec("-9e39"));
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.error().message.find("10^40") != std::string::npos);
  CHECK(diff("9e39", "1e39") == "8" + std::string(39, '0'));
}

TEST_CASE("Decimal comparison is numeric", "[decimal]") {
  CHECK(dec("1.50") == dec("1.5"));
  CHECK(dec("-0") == dec("0"));
  CHECK(dec("-0") == Decimal());
  CHECK(dec("1e3") == dec("1000"));
  CHECK(dec("0.0015") == dec("15e-4"));
  CHECK(dec("1") != dec("1.0000001"));
  CHECK(dec("1") != dec("-1"));

  CHECK(dec("0") < dec("0.001"));
  CHECK(dec("-0.001") < dec("0"));
  CHECK(dec("-2") < dec("-1"));
  CHECK(dec("10") > dec("9.99"));
  CHECK(dec("0.1") < dec("0.11"));
  CHECK(dec("0.11") > dec("0.1"));
  CHECK(dec("-0.11") < dec("-0.1"));
  CHECK(dec("100") > dec("99"));
  CHECK(dec("99") < dec("100"));
  CHECK(dec("1") < dec("1.0000001"));
  CHECK(dec("-1") > dec("-1.0000001"));
  CHECK(dec("-1000") < dec("1"));
  CHECK(dec("0.2") > dec("0.19"));
  CHECK((dec("2") <=> dec("2.0")) == std::strong_ordering::equal);
  CHECK((dec("2") <=> dec("3")) == std::strong_ordering::less);
  CHECK((dec("-2") <=> dec("-3")) == std::strong_ordering::greater);

  CHECK(dec("-5").is_negative());
  CHECK_FALSE(dec("-0").is_negative());
  CHECK(dec("-0.000").is_zero());
  CHECK_FALSE(dec("0.001").is_zero());
}

TEST_CASE("Decimal invariants across a grid of values", "[decimal]") {
  const std::vector<std::string> values = {
      "0",     "1",       "-1",     "0.5",        "-0.5",   "1.5",   "1.25",    "10",
      "9.999", "-9.999",  "1000",   "0.001",      "-0.001", "1e10",  "-1e-10",  "123.456",
      "99",    "100.001", "-100.1", "0.00000001", "7e20",   "-7e20", "3.14159", "2.71828"};
  for (const auto& a_text : values) {
    const Decimal a = dec(a_text);
    // parse(text()) is the same value and the same text.
    CHECK(dec(a.text()) == a);
    CHECK(dec(a.text()).text() == a.text());
    for (const auto& b_text : values) {
      const Decimal b = dec(b_text);
      INFO(a_text << " - " << b_text);
      auto d = subtract(a, b);
      REQUIRE(d.ok());
      // The sign of the difference agrees with the ordering.
      const auto order = a <=> b;
      if (order == std::strong_ordering::equal) {
        CHECK(d->is_zero());
      } else if (order == std::strong_ordering::less) {
        CHECK(d->is_negative());
      } else {
        CHECK((!d->is_negative() && !d->is_zero()));
      }
      // a - b == -(b - a), and (a - b) - a == -b.
      auto back = subtract(b, a);
      REQUIRE(back.ok());
      auto zero_sum = subtract(*d, subtract(Decimal(), *back).value());
      REQUIRE(zero_sum.ok());
      CHECK(zero_sum->is_zero());
      auto minus_b = subtract(*d, a);
      REQUIRE(minus_b.ok());
      auto expected = subtract(Decimal(), b);
      REQUIRE(expected.ok());
      CHECK(*minus_b == *expected);
    }
  }
}

TEST_CASE("Decimal add, multiply, negated and from_int are exact", "[decimal]") {
  CHECK(add(dec("1000.003"), dec("-0.004")).value().text() == "999.999");
  CHECK(add(dec("0.1"), dec("0.2")).value().text() == "0.3");
  CHECK(multiply(dec("81010"), dec("0.0000166666")).value().text() == "1.350161266");
  CHECK(multiply(dec("-2.5"), dec("4")).value().text() == "-10");
  CHECK(multiply(dec("0"), dec("-4")).value().text() == "0");
  CHECK(multiply(dec("0.001"), dec("0.001")).value().text() == "0.000001");
  CHECK(Decimal::from_int(-3600000).text() == "-3600000");
  CHECK(Decimal::from_int(0).text() == "0");
  CHECK(dec("1.5").negated().text() == "-1.5");
  CHECK(dec("0").negated().text() == "0");
  // Never rounds: a product past the limits is an error naming both factors.
  auto too_fine = multiply(dec("1e-30"), dec("1e-30"));
  REQUIRE_FALSE(too_fine.ok());
  CHECK(too_fine.error().message.find("product") != std::string::npos);
  auto too_many_digits =
      multiply(dec("1234567890123456789012345"), dec("1.234567890123456789012345"));
  REQUIRE_FALSE(too_many_digits.ok());
  // a x b == b x a, and (a x b) agrees with repeated addition for small b.
  for (const char* a : {"1.5", "-0.007", "123456.789", "0"}) {
    for (int b = -3; b <= 3; ++b) {
      Decimal sum;
      for (int i = 0; i < (b < 0 ? -b : b); ++i) sum = add(sum, dec(a)).value();
      if (b < 0) sum = sum.negated();
      CHECK(multiply(dec(a), Decimal::from_int(b)).value() == sum);
      CHECK(multiply(Decimal::from_int(b), dec(a)).value() == sum);
    }
  }
}
