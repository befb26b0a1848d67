#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#include "common/decode/json.hpp"

namespace {

using meter::JsonValue;
using meter::parse_json;

JsonValue parsed(std::string_view text) {
  auto result = parse_json(text);
  INFO("input: " << text);
  if (!result) FAIL("unexpected error: " << result.error().message);
  return std::move(result).value();
}

std::string error_of(std::string_view text) {
  auto result = parse_json(text);
  INFO("input: " << text);
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

std::string number_text(std::string_view text) {
  JsonValue value = parsed(text);
  REQUIRE(value.number() != nullptr);
  return value.number()->text;
}

std::string string_of(std::string_view text) {
  JsonValue value = parsed(text);
  REQUIRE(value.string() != nullptr);
  return *value.string();
}

std::string quoted(std::string_view s) {
  std::string out;
  meter::append_json_string(out, s);
  return out;
}

std::string nested_arrays(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

}  // namespace

TEST_CASE("numbers keep the exact text they were sent as", "[json]") {
  CHECK(number_text("1.50") == "1.50");
  CHECK(number_text("10.172887") == "10.172887");
  CHECK(number_text("1e3") == "1e3");
  CHECK(number_text("2E+3") == "2E+3");
  CHECK(number_text("1.0e-7") == "1.0e-7");
  CHECK(number_text("-0.0") == "-0.0");
  CHECK(number_text("0.1") == "0.1");        // not 0.1000000000000000055...
  CHECK(number_text("1e-400") == "1e-400");  // underflows a double; text kept
}

TEST_CASE("integers keep their text, including -0 and beyond 64 bits", "[json]") {
  CHECK(number_text("0") == "0");
  CHECK(number_text("-0") == "-0");
  CHECK(number_text("42") == "42");
  CHECK(number_text("-17") == "-17");
  CHECK(number_text("9223372036854775807") == "9223372036854775807");
  CHECK(number_text("-9223372036854775808") == "-9223372036854775808");
  CHECK(number_text("18446744073709551615") == "18446744073709551615");
  CHECK(number_text("18446744073709551616") == "18446744073709551616");
  CHECK(number_text("-9223372036854775809") == "-9223372036854775809");
  CHECK(number_text("123456789012345678901234567890") == "123456789012345678901234567890");
}

TEST_CASE("numbers beyond the range of a double keep their text", "[json]") {
  // No double is ever made; Decimal's limits (|exponent| <= 40) judge the value later.
  CHECK(number_text("1e400") == "1e400");
  CHECK(number_text("-1e999") == "-1e999");
}

TEST_CASE("invalid number syntax is an error", "[json]") {
  for (std::string_view text :
       {"01", "+1", "1.", ".5", "1e", "-", "0x10", "NaN", "Infinity", "1,5"}) {
    INFO(text);
    CHECK(error_of(text).rfind("syntax error at byte ", 0) == 0);
  }
}

TEST_CASE("literals and whitespace", "[json]") {
  CHECK(parsed("null").is_null());
  REQUIRE(parsed("true").boolean() != nullptr);
  CHECK(*parsed("true").boolean());
  CHECK_FALSE(*parsed(" \t\r\nfalse\n").boolean());
  CHECK(number_text("  7  ") == "7");
  CHECK(string_of("\xEF\xBB\xBF\"bom\"") == "bom");  // a leading UTF-8 BOM is skipped
}

TEST_CASE("objects keep members in document order", "[json]") {
  JsonValue value = parsed(R"({"b": 1, "a": "x", "c": null, "d": [true, false], "e": {}})");
  const meter::JsonObject* members = value.object();
  REQUIRE(members != nullptr);
  REQUIRE(members->size() == 5);
  CHECK((*members)[0].first == "b");
  CHECK((*members)[1].first == "a");
  CHECK((*members)[2].first == "c");
  CHECK((*members)[3].first == "d");
  CHECK((*members)[4].first == "e");
  REQUIRE(value.find("b") != nullptr);
  CHECK(value.find("b")->number()->text == "1");
  CHECK(*value.find("a")->string() == "x");
  CHECK(value.find("c")->is_null());
  CHECK(value.find("d")->array()->size() == 2);
  CHECK(value.find("e")->object()->empty());
  CHECK(value.find("missing") == nullptr);
  CHECK(value.find("B") == nullptr);  // keys are case-sensitive
}

TEST_CASE("find resolves a repeated key to its last occurrence", "[json]") {
  JsonValue value = parsed(R"({"value": 1, "unit": "Wh", "value": 2.5})");
  REQUIRE(value.object()->size() == 3);  // all members are kept
  REQUIRE(value.find("value") != nullptr);
  CHECK(value.find("value")->number()->text == "2.5");
}

TEST_CASE("find on non-objects returns nullptr", "[json]") {
  CHECK(parsed("[1]").find("0") == nullptr);
  CHECK(parsed("\"x\"").find("x") == nullptr);
  CHECK(parsed("null").find("") == nullptr);
}

TEST_CASE("nested arrays and objects", "[json]") {
  JsonValue value = parsed(R"([{"a": [1, [2, {"b": [3]}]]}, [], [[]], "s"])");
  const meter::JsonArray* top = value.array();
  REQUIRE(top != nullptr);
  REQUIRE(top->size() == 4);
  const JsonValue* a = (*top)[0].find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->array()->size() == 2);
  CHECK((*a->array())[0].number()->text == "1");
  const meter::JsonArray& inner = *(*a->array())[1].array();
  CHECK(inner[0].number()->text == "2");
  CHECK((*inner[1].find("b")->array())[0].number()->text == "3");
  CHECK((*top)[1].array()->empty());
  CHECK((*(*top)[2].array())[0].array()->empty());
  CHECK(*(*top)[3].string() == "s");
}

TEST_CASE("strings: escapes and unicode", "[json]") {
  CHECK(string_of(R"("plain")") == "plain");
  CHECK(string_of(R"("")") == "");
  CHECK(string_of(R"("\"\\\/\b\f\n\r\t")") == "\"\\/\b\f\n\r\t");
  CHECK(string_of(R"("caf\u00e9")") == "caf\xC3\xA9");
  CHECK(string_of("\"caf\xC3\xA9\"") == "caf\xC3\xA9");  // raw UTF-8 passes through
  CHECK(string_of(R"("\u20AC")") == "\xE2\x82\xAC");
  CHECK(string_of(R"("\ud83d\ude00")") == "\xF0\x9F\x98\x80");  // surrogate pair -> U+1F600
  CHECK(string_of(R"("a\u0000b")") == std::string("a\0b", 3));
}

TEST_CASE("strings: ill-formed input is an error", "[json]") {
  CHECK(error_of(R"("\ud800")").rfind("syntax error at byte 7: invalid string: surrogate", 0) == 0);
  CHECK(error_of(R"("\udc00")").rfind("syntax error at byte 6: invalid string: surrogate", 0) == 0);
  CHECK_THAT(error_of(R"("\x")"), Catch::StartsWith("syntax error at byte 2: "));
  CHECK(error_of("\"a\x01\"")
            .rfind("syntax error at byte 2: invalid string: control character U+0001", 0) == 0);
  CHECK(error_of("\"tab\there\"").rfind("syntax error at byte 4: invalid string: control", 0) == 0);
  CHECK_THAT(error_of("\"abc"), Catch::StartsWith("syntax error at byte 4: "));
}

TEST_CASE("invalid UTF-8 is a syntax error at the offending byte", "[json]") {
  CHECK_THAT(error_of("\"ab\xFF\""), Catch::StartsWith("syntax error at byte 3: "));
  // A truncated sequence fails at the byte that should have continued it.
  CHECK_THAT(error_of("\"\xC3\""), Catch::StartsWith("syntax error at byte 2: "));
  CHECK_THAT(error_of("\"\xC0\xAF\""), Catch::StartsWith("syntax error at byte 1: "));
  CHECK_THAT(error_of("\"\xED\xA0\x80\""), Catch::StartsWith("syntax error at byte 2: "));
  CHECK_THAT(error_of("\"\xF4\x90\x80\x80\""), Catch::StartsWith("syntax error at byte 2: "));
  CHECK(error_of("\xC3\xA9").rfind("syntax error at byte 0: ", 0) == 0);  // outside a string
}

TEST_CASE("syntax errors give the byte offset and a short reason", "[json]") {
  CHECK_THAT(error_of(R"({"a":1,})"), Catch::StartsWith("syntax error at byte 7: "));
  CHECK_THAT(error_of("[1,2"), Catch::StartsWith("syntax error at byte 4: "));
  CHECK_THAT(error_of(R"({"a":)"), Catch::StartsWith("syntax error at byte 5: "));
  CHECK_THAT(error_of(R"({"a" 1})"), Catch::StartsWith("syntax error at byte 5: "));
  CHECK_THAT(error_of("tru"), Catch::StartsWith("syntax error at byte 3: "));
  CHECK_THAT(error_of("1 2"), Catch::StartsWith("syntax error at byte 2: "));
  CHECK_THAT(error_of("[1]x"), Catch::StartsWith("syntax error at byte 3: "));
  CHECK_THAT(error_of("{'a': 1}"), Catch::StartsWith("syntax error at byte 1: "));
  CHECK(error_of("[1] // comment").rfind("syntax error at byte 4: ", 0) == 0);
}

TEST_CASE("a raw NUL byte is an error wherever it is", "[json]") {
  // nlohmann alone would stop at the NUL and accept what came before.
  using namespace std::string_view_literals;
  CHECK_THAT(error_of("[1]\0"sv), Catch::StartsWith("syntax error at byte 3: "));
  CHECK_THAT(error_of("[1] \0junk"sv), Catch::StartsWith("syntax error at byte 4: "));
  CHECK_THAT(error_of("[1,\0 2]"sv), Catch::StartsWith("syntax error at byte 3: "));
  CHECK_THAT(error_of("\0"sv), Catch::StartsWith("syntax error at byte 0: "));
  CHECK_THAT(error_of("\"a\0b\""sv), Catch::StartsWith("syntax error at byte 2: "));
  // An earlier error is reported as itself.
  CHECK_THAT(error_of("x\0"sv), Catch::StartsWith("syntax error at byte 0: "));
}

TEST_CASE("errors never echo payload bytes", "[json]") {
  // Found by fuzzing: the input itself may look like the text around the echo.
  CHECK(error_of("\"a'; expected \xFF\"") ==
        "syntax error at byte 14: invalid string: ill-formed UTF-8 byte");
  CHECK(error_of("[\"x\", tru'; expected ]") ==
        "syntax error at byte 9: invalid literal; expected true");
}

TEST_CASE("empty and blank input are errors", "[json]") {
  CHECK_THAT(error_of(""), Catch::StartsWith("syntax error at byte 0: "));
  CHECK_THAT(error_of("   "), Catch::StartsWith("syntax error at byte 3: "));
}

TEST_CASE("errors do not echo long input", "[json]") {
  std::string long_string = "\"" + std::string(10000, 'x');
  std::string message = error_of(long_string);
  CHECK(message == "syntax error at byte 10001: invalid string: missing closing quote");
}

TEST_CASE("nesting depth is limited to 64", "[json]") {
  CHECK(parsed(nested_arrays(64)).array() != nullptr);
  CHECK(error_of(nested_arrays(65)) ==
        "nesting too deep at byte 64: more than 64 nested arrays/objects");

  std::string objects;
  for (int i = 0; i < 64; ++i) objects += R"({"k":)";
  objects += "1";
  for (int i = 0; i < 64; ++i) objects += "}";
  CHECK(parsed(objects).object() != nullptr);

  // Brackets inside strings do not count towards the depth or its offset.
  std::string mixed =
      R"({"[{": ")" + std::string(100, '[') + R"(", "x": )" + nested_arrays(64) + "}";
  // The object is level 1, so the 64th array is the one too many.
  const std::size_t too_deep = mixed.find(R"("x": )") + 5 + 63;
  CHECK(error_of(mixed) == "nesting too deep at byte " + std::to_string(too_deep) +
                               ": more than 64 nested arrays/objects");
}

TEST_CASE("very deep input fails fast without recursion", "[json]") {
  CHECK(error_of(std::string(100000, '[')).rfind("nesting too deep at byte 64", 0) == 0);
}

TEST_CASE("append_json_string escapes as RFC 8259 asks", "[json]") {
  CHECK(quoted("") == R"("")");
  CHECK(quoted("m1") == R"("m1")");
  CHECK(quoted("\"\\/") == R"("\"\\/")");
  CHECK(quoted("\b\f\n\r\t") == R"("\b\f\n\r\t")");
  CHECK(quoted(std::string("\0\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
  CHECK(quoted("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") ==
        "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");

  std::string out = "prefix:";
  meter::append_json_string(out, "x");
  CHECK(out == R"(prefix:"x")");
}

TEST_CASE("append_json_string replaces each invalid UTF-8 byte with U+FFFD", "[json]") {
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(quoted("a\xFF"
               "b") == "\"a" + fffd + "b\"");
  CHECK(quoted("\xC3") == "\"" + fffd + "\"");                        // truncated at the end
  CHECK(quoted("\xC3(") == "\"" + fffd + "(\"");                      // missing continuation
  CHECK(quoted("\xC0\xAF") == "\"" + fffd + fffd + "\"");             // overlong "/"
  CHECK(quoted("\xED\xA0\x80") == "\"" + fffd + fffd + fffd + "\"");  // UTF-16 surrogate
  CHECK(quoted("\xF4\x90\x80\x80") == "\"" + fffd + fffd + fffd + fffd + "\"");  // > U+10FFFF
  CHECK(quoted("\x80\xC3\xA9") == "\"" + fffd + "\xC3\xA9\"");  // stray continuation byte

  // Whatever the bytes, the output parses back.
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  CHECK(parse_json(quoted(all_bytes)).ok());
}

TEST_CASE("append_json_string round-trips through parse_json", "[json]") {
  for (std::string_view s :
       {std::string_view("plain"), std::string_view("\"quoted\" \\ back"),
        std::string_view("lines\n\r\ttabs"), std::string_view("\x01\x02\x1f", 3),
        std::string_view("nul\0byte", 8), std::string_view("caf\xC3\xA9 \xF0\x9F\x98\x80")}) {
    CHECK(string_of(quoted(s)) == std::string(s));
  }
}
