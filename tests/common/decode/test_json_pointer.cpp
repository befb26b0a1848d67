#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/decode/json_pointer.hpp"

namespace {

using meter::JsonPointer;

JsonPointer pointer(const std::string& text) {
  auto parsed = JsonPointer::parse(text);
  if (!parsed) FAIL(parsed.error().message);
  return *parsed;
}

meter::JsonValue document(const std::string& text) {
  auto parsed = meter::parse_json(text);
  if (!parsed) FAIL(parsed.error().message);
  return *parsed;
}

// The resolved value as text: a number's text, a string, or a kind.
std::string at(const std::string& json, const std::string& path) {
  const meter::JsonValue doc = document(json);
  const meter::JsonValue* value = pointer(path).resolve(doc);
  if (value == nullptr) return "<none>";
  if (const auto* n = value->number()) return n->text;
  if (const auto* s = value->string()) return *s;
  if (value->is_null()) return "null";
  if (value->array() != nullptr) return "<array>";
  if (value->object() != nullptr) return "<object>";
  return "<bool>";
}

}  // namespace

TEST_CASE("JSON pointers parse as RFC 6901 says", "[json_pointer]") {
  CHECK(pointer("").tokens.empty());
  CHECK(pointer("/").tokens == std::vector<std::string>{""});
  CHECK(pointer("/ENERGY/Total").tokens == std::vector<std::string>{"ENERGY", "Total"});
  CHECK(pointer("/emdata:0/total_act").tokens == std::vector<std::string>{"emdata:0", "total_act"});
  CHECK(pointer("/a~1b/c~0d/~01").tokens == std::vector<std::string>{"a/b", "c~d", "~1"});
  CHECK(pointer("/a.b").tokens == std::vector<std::string>{"a.b"});  // a dot is just a character
  CHECK_FALSE(JsonPointer::parse("ENERGY/Total").ok());
  CHECK_FALSE(JsonPointer::parse("/a~").ok());
  CHECK_FALSE(JsonPointer::parse("/a~2").ok());
}

TEST_CASE("JSON pointers resolve members, indexes, and nothing else", "[json_pointer]") {
  const std::string tasmota =
      R"({"Time":"2024-07-01T12:00:00","ENERGY":{"Total":123.4560,"Power":[12,0]},"a/b":1,)"
      R"("":2,"em:0":{"total_act_power":-5.0},"n":null})";
  CHECK(at(tasmota, "/ENERGY/Total") == "123.4560");  // the exact text
  CHECK(at(tasmota, "/ENERGY/Power") == "<array>");
  CHECK(at(tasmota, "/ENERGY/Power/1") == "0");
  CHECK(at(tasmota, "/ENERGY/Power/2") == "<none>");
  CHECK(at(tasmota, "/ENERGY/Power/01") == "<none>");  // no leading zeros
  CHECK(at(tasmota, "/ENERGY/Power/-") == "<none>");   // "-" is past the end
  CHECK(at(tasmota, "/ENERGY/Power/x") == "<none>");
  CHECK(at(tasmota, "/ENERGY/Total/x") == "<none>");  // into a number
  CHECK(at(tasmota, "/a~1b") == "1");
  CHECK(at(tasmota, "/") == "2");  // the member with the empty key
  CHECK(at(tasmota, "/em:0/total_act_power") == "-5.0");
  CHECK(at(tasmota, "/n") == "null");
  CHECK(at(tasmota, "/missing") == "<none>");
  CHECK(at(tasmota, "") == "<object>");
  CHECK(at("[1,[2,3]]", "/1/0") == "2");
  CHECK(at("[1]", "/99999999999999999999999") == "<none>");
  CHECK(at(R"({"k":1,"k":2})", "/k") == "2");  // a repeated key: the last one
}
