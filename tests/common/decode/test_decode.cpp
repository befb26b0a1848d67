#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#include "common/decode/decode.hpp"

namespace {

using meter::decode_seed_json;
using meter::Decoded;
using meter::DecodedReading;

Decoded decoded(std::string_view payload) {
  auto result = decode_seed_json(payload);
  INFO("payload: " << payload);
  if (!result) FAIL("unexpected error: " << result.error().message);
  return std::move(result).value();
}

DecodedReading single(std::string_view payload) {
  Decoded d = decoded(payload);
  REQUIRE_FALSE(d.ignored_reason.has_value());
  REQUIRE(d.readings.size() == 1);
  return d.readings[0];
}

std::string error_of(std::string_view payload) {
  auto result = decode_seed_json(payload);
  INFO("payload: " << payload);
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

std::string ignored(std::string_view payload) {
  Decoded d = decoded(payload);
  CHECK(d.readings.empty());
  REQUIRE(d.ignored_reason.has_value());
  return *d.ignored_reason;
}

}  // namespace

TEST_CASE("decodes the seed's object format", "[decode]") {
  DecodedReading r = single(
      R"({"device_id": "m1", "timestamp": "2024-01-01T10:00:00Z",
          "metric_type": "energy", "value": 1234.5, "unit": "kWh"})");
  CHECK(r.device_id == "m1");
  REQUIRE(r.timestamp.has_value());
  CHECK(*r.timestamp == "2024-01-01T10:00:00Z");
  CHECK(r.metric_type == "energy");
  CHECK(r.value == "1234.5");
  CHECK(r.unit == "kWh");
}

TEST_CASE("values keep the text they were sent as", "[decode]") {
  const auto value_of = [](std::string_view value_json) {
    return single(R"({"device_id":"m1","metric_type":"energy","unit":"kWh","value":)" +
                  std::string(value_json) + "}")
        .value;
  };
  CHECK(value_of("1.50") == "1.50");
  CHECK(value_of("10.172887") == "10.172887");
  CHECK(value_of("1e3") == "1e3");
  CHECK(value_of("-0.0") == "-0.0");
  CHECK(value_of("-0") == "-0");
  CHECK(value_of("0") == "0");
  CHECK(value_of("123456789012345678901234567890") == "123456789012345678901234567890");
  // A string is kept as is: its decimal syntax is normalization's to check.
  CHECK(value_of(R"("1234.50")") == "1234.50");
  CHECK(value_of(R"("+007")") == "+007");
  CHECK(value_of(R"("not a number")") == "not a number");
  CHECK(value_of(R"("")") == "");
}

TEST_CASE("timestamp may be a string, a number, null or absent", "[decode]") {
  const auto timestamp_of = [](std::string_view member) {
    return single(R"({"device_id":"m1","metric_type":"energy","value":1,"unit":"kWh")" +
                  std::string(member) + "}")
        .timestamp;
  };
  CHECK(timestamp_of(R"(,"timestamp":"2024-03-31T02:30:00+02:00")") == "2024-03-31T02:30:00+02:00");
  CHECK(timestamp_of(R"(,"timestamp":1704103200)") == "1704103200");
  CHECK(timestamp_of(R"(,"timestamp":1704103200123)") == "1704103200123");
  CHECK(timestamp_of(R"(,"timestamp":1704103200.5)") == "1704103200.5");
  CHECK(timestamp_of(R"(,"timestamp":1.7041032e9)") == "1.7041032e9");
  CHECK(timestamp_of(R"(,"timestamp":"")") == "");  // kept; normalization rejects it
  CHECK_FALSE(timestamp_of(R"(,"timestamp":null)").has_value());
  CHECK_FALSE(timestamp_of("").has_value());
}

TEST_CASE("unknown members are ignored, member order does not matter", "[decode]") {
  DecodedReading r = single(
      R"({"unit":"W","rssi":-71,"value":"230","extra":{"a":[1,2]},"metric_type":"power",
          "device_id":"meter-7"})");
  CHECK(r.device_id == "meter-7");
  CHECK(r.metric_type == "power");
  CHECK(r.value == "230");
  CHECK(r.unit == "W");
  CHECK_FALSE(r.timestamp.has_value());
}

TEST_CASE("a repeated member counts with its last value", "[decode]") {
  DecodedReading r =
      single(R"({"device_id":"m1","metric_type":"energy","value":1,"unit":"kWh","value":2})");
  CHECK(r.value == "2");
}

TEST_CASE("strings keep their unicode content", "[decode]") {
  DecodedReading r = single(
      R"({"device_id":"z\u00e4hler-\ud83d\udd0c","metric_type":"energy","value":1,"unit":"kWh"})");
  CHECK(r.device_id == "z\xC3\xA4hler-\xF0\x9F\x94\x8C");
  r = single(
      "{\"device_id\":\"z\xC3\xA4hler\",\"metric_type\":\"energy\",\"value\":1,\"unit\":\"kWh\"}");
  CHECK(r.device_id == "z\xC3\xA4hler");
}

TEST_CASE("missing required members are errors naming the member", "[decode]") {
  CHECK(error_of(R"({"metric_type":"energy","value":1,"unit":"kWh"})") ==
        "member 'device_id' missing");
  CHECK(error_of(R"({"device_id":"m1","value":1,"unit":"kWh"})") == "member 'metric_type' missing");
  CHECK(error_of(R"({"device_id":"m1","metric_type":"energy","unit":"kWh"})") ==
        "member 'value' missing");
  CHECK(error_of(R"({"device_id":"m1","metric_type":"energy","value":1})") ==
        "member 'unit' missing");
}

TEST_CASE("members of the wrong type are errors naming member and type", "[decode]") {
  const auto with = [](std::string_view device_id, std::string_view metric_type,
                       std::string_view value, std::string_view unit) {
    return "{\"device_id\":" + std::string(device_id) +
           ",\"metric_type\":" + std::string(metric_type) + ",\"value\":" + std::string(value) +
           ",\"unit\":" + std::string(unit) + "}";
  };
  CHECK(error_of(with("12", R"("energy")", "1", R"("kWh")")) ==
        "member 'device_id': expected a string, got number 12");
  CHECK(error_of(with(R"("")", R"("energy")", "1", R"("kWh")")) ==
        "member 'device_id': must not be empty");
  CHECK(error_of(with("null", R"("energy")", "1", R"("kWh")")) ==
        "member 'device_id': expected a string, got null");
  CHECK(error_of(with(R"("m1")", "[]", "1", R"("kWh")")) ==
        "member 'metric_type': expected a string, got an array");
  CHECK(error_of(with(R"("m1")", R"("energy")", "true", R"("kWh")")) ==
        "member 'value': expected a number or a decimal string, got true");
  CHECK(error_of(with(R"("m1")", R"("energy")", "null", R"("kWh")")) ==
        "member 'value': expected a number or a decimal string, got null");
  CHECK(error_of(with(R"("m1")", R"("energy")", R"({"v":1})", R"("kWh")")) ==
        "member 'value': expected a number or a decimal string, got an object");
  CHECK(error_of(with(R"("m1")", R"("energy")", "1", "false")) ==
        "member 'unit': expected a string, got false");
  CHECK(error_of(R"({"device_id":"m1","metric_type":"energy","value":1,"unit":"kWh",
                     "timestamp":true})") ==
        "member 'timestamp': expected a string, a number or null, got true");
  CHECK(error_of(R"({"device_id":"m1","metric_type":"energy","value":1,"unit":"kWh",
                     "timestamp":[2024]})") ==
        "member 'timestamp': expected a string, a number or null, got an array");
}

TEST_CASE("errors show at most a short part of the offending value", "[decode]") {
  const std::string long_number(100, '9');
  CHECK(error_of(R"({"device_id":)" + long_number + "}") ==
        "member 'device_id': expected a string, got number " + std::string(32, '9') + "...");
}

TEST_CASE("an array is a batch of readings", "[decode]") {
  Decoded d = decoded(R"([
      {"device_id":"m1","metric_type":"energy","value":1.5,"unit":"kWh","timestamp":1704103200},
      {"device_id":"m2","metric_type":"power","value":"230.0","unit":"W"},
      {"device_id":"m1","metric_type":"energy","value":1.75,"unit":"kWh","timestamp":null}])");
  CHECK_FALSE(d.ignored_reason.has_value());
  REQUIRE(d.readings.size() == 3);
  CHECK(d.readings[0].device_id == "m1");
  CHECK(d.readings[0].value == "1.5");
  CHECK(d.readings[0].timestamp == "1704103200");
  CHECK(d.readings[1].device_id == "m2");
  CHECK(d.readings[1].value == "230.0");
  CHECK(d.readings[1].unit == "W");
  CHECK_FALSE(d.readings[1].timestamp.has_value());
  CHECK(d.readings[2].value == "1.75");
  CHECK_FALSE(d.readings[2].timestamp.has_value());
}

TEST_CASE("errors in an array name the element, from 0", "[decode]") {
  const std::string good = R"({"device_id":"m1","metric_type":"energy","value":1,"unit":"kWh"})";
  CHECK(error_of("[" + good + "," + good +
                 R"(,{"device_id":"m1","metric_type":"energy","value":1}])") ==
        "element 2: member 'unit' missing");
  CHECK(error_of("[" + good +
                 R"(,{"device_id":"m1","metric_type":"energy","value":false,"unit":"kWh"}])") ==
        "element 1: member 'value': expected a number or a decimal string, got false");
  CHECK(error_of("[" + good + ",5]") == "element 1: expected an object, got number 5");
  CHECK(error_of(R"(["online"])") == "element 0: expected an object, got a string");
  CHECK(error_of("[[" + good + "]]") == "element 0: expected an object, got an array");
  // Inside a batch, an object without reading members is not skipped.
  CHECK(error_of("[" + good + R"(,{"linkquality":80}])") ==
        "element 1: member 'device_id' missing");
  CHECK(error_of("[]") == "payload is an empty array");
  CHECK(error_of(" [ ] ") == "payload is an empty array");
}

TEST_CASE("empty payloads are ignored (MQTT clears retained messages with them)", "[decode]") {
  CHECK(ignored("") == "empty payload");
  CHECK(ignored(" \r\n\t") == "empty payload");
}

TEST_CASE("known non-reading words are ignored, whatever their case", "[decode]") {
  for (std::string_view word : {"online", "offline", "on", "off", "true", "false", "null", "nan",
                                "unavailable", "unknown"}) {
    CHECK(ignored(word) == "non-reading payload '" + std::string(word) + "'");
  }
  CHECK(ignored("Online") == "non-reading payload 'Online'");
  CHECK(ignored("OFFLINE") == "non-reading payload 'OFFLINE'");
  CHECK(ignored("NaN") == "non-reading payload 'NaN'");
  CHECK(ignored("  online\n") == "non-reading payload 'online'");
  CHECK(ignored(R"("offline")") == "non-reading payload 'offline'");  // as a JSON string
  CHECK(ignored(R"( "ON" )") == "non-reading payload 'ON'");
}

TEST_CASE("objects without any reading member are ignored", "[decode]") {
  const std::string reason = "object without device_id, metric_type or value";
  CHECK(ignored(R"({"linkquality": 80})") == reason);
  CHECK(ignored("{}") == reason);
  CHECK(ignored(R"({"state":"ON","unit":"kWh","timestamp":"2024-01-01T10:00:00Z"})") == reason);
  // One reading member is enough to make it a (broken) reading.
  CHECK(error_of(R"({"value": 3})") == "member 'device_id' missing");
  CHECK(error_of(R"({"linkquality": 80, "metric_type": "energy"})") ==
        "member 'device_id' missing");
}

TEST_CASE("other payloads are errors", "[decode]") {
  CHECK_THAT(error_of("hello"), Catch::StartsWith("payload is not JSON: syntax error at byte 0: "));
  CHECK_THAT(error_of("online!"),
             Catch::StartsWith("payload is not JSON: syntax error at byte 0: "));
  CHECK_THAT(error_of("onlin"), Catch::StartsWith("payload is not JSON: syntax error at byte 0: "));
  CHECK(error_of("23.5") == "payload is number 23.5, expected an object or an array of objects");
  CHECK(error_of(R"("hello")") == "payload is a string, expected an object or an array of objects");
  CHECK_THAT(error_of(R"({"device_id":"m1",)"),
             Catch::StartsWith("payload is not JSON: syntax error at byte 18: "));
  CHECK_THAT(error_of(R"({"device_id":"m1","metric_type":"energy","value":1,"unit":"kWh"} x)"),
             Catch::StartsWith("payload is not JSON: syntax error at byte 65: "));
  // C publishers sometimes send the string's terminating NUL too: not JSON.
  CHECK_THAT(error_of(std::string_view("{\"device_id\":\"m1\"}\0", 19)),
             Catch::StartsWith("payload is not JSON: syntax error at byte 18: "));
}

TEST_CASE("payloads must be valid UTF-8", "[decode]") {
  CHECK(error_of("\xFF") == "payload is not valid UTF-8 (byte 0)");
  CHECK(error_of("onl\xC3ne") == "payload is not valid UTF-8 (byte 3)");
  CHECK(error_of("{\"device_id\":\"m\xE9\"}") == "payload is not valid UTF-8 (byte 15)");
  CHECK(error_of("{\"device_id\":\"m\xED\xA0\x80\"}") == "payload is not valid UTF-8 (byte 15)");
  CHECK(error_of("{\"device_id\":\"m\xC0\x80\"}") == "payload is not valid UTF-8 (byte 15)");
  CHECK(error_of("{\"device_id\":\"m\xF0\x9F\x98\"}") == "payload is not valid UTF-8 (byte 15)");
  CHECK(error_of("\xC3") == "payload is not valid UTF-8 (byte 0)");
  // Valid multi-byte UTF-8 outside strings is still not JSON.
  CHECK_THAT(error_of("\xC3\xA9"),
             Catch::StartsWith("payload is not JSON: syntax error at byte 0: "));
}

TEST_CASE("nothing escapes as an exception for odd input", "[decode]") {
  CHECK_NOTHROW(decode_seed_json(std::string(100000, '[')));
  CHECK(error_of(std::string(100000, '[')).rfind("payload is not JSON: nesting too deep", 0) == 0);
  CHECK_NOTHROW(decode_seed_json(std::string(5, '\0')));
}
