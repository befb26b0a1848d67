// The upload's wire format against docs/PROTOCOL.md's example request and response.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/normalize/timestamp.hpp"
#include "common/uplink/wire_format.hpp"

using namespace meter;

namespace {

// The JSON block after an HTML marker comment in docs/PROTOCOL.md.
std::string protocol_block(const std::string& marker) {
  std::ifstream file(std::string(METER_SOURCE_DIR) + "/docs/PROTOCOL.md");
  std::stringstream content;
  content << file.rdbuf();
  const std::string text = content.str();
  const auto at = text.find("<!-- " + marker + " -->");
  REQUIRE(at != std::string::npos);
  const auto start = text.find("```json\n", at) + 8;
  const auto end = text.find("```", start);
  return text.substr(start, end - start);
}

std::int64_t ms(const char* timestamp) {
  return parse_timestamp(timestamp, TimestampFormat::rfc3339)->ms;
}

UplinkBatch example_batch() {
  UplinkBatch batch;
  auto raw = [](std::int64_t seq, std::string payload, const char* received) {
    UplinkRawEvent event;
    event.seq = seq;
    event.message.topic = "site/m1/energy";
    event.message.payload = std::move(payload);
    event.message.qos = 1;
    event.message.received_ms = ms(received);
    return event;
  };
  batch.raw_events.push_back(raw(41, R"({"id":"m1","ts":"2024-01-01T10:15:00+01:00","kWh":1.75})",
                                 "2024-01-01T09:15:00.412Z"));
  batch.raw_events.push_back(
      raw(42, R"({"id":"m1","ts":"2024-01-01T10:30:00+01:00","kWh":"2","u":"Wh"})",
          "2024-01-01T09:30:00.087Z"));
  auto measurement = [](const char* event_id, const char* ts, const char* value, const char* unit,
                        std::optional<std::string> delta, const char* delta_from, FlagSet flags,
                        std::int64_t raw_seq) {
    UplinkMeasurement m;
    m.row_id = raw_seq;
    m.measurement.event_id = event_id;
    m.measurement.device_id = "m1";
    m.measurement.metric_type = "energy";
    m.measurement.timestamp_ms = ms(ts);
    m.measurement.value = value;
    m.measurement.unit = unit;
    if (delta) m.measurement.delta_from_ms = ms(delta_from);
    m.measurement.delta = std::move(delta);
    m.measurement.flags = flags;
    m.measurement.revision = 1;
    m.measurement.raw_seq = raw_seq;
    return m;
  };
  batch.measurements.push_back(
      measurement("f1d679212eed3db4b8f66bdddcfb001bdafb9c30fee5f80fa82b37723d8c1419",
                  "2024-01-01T09:00:00.000Z", "1.5", "kWh", std::nullopt, "",
                  flag_bit(Flag::first_reading), 40));
  batch.measurements.push_back(measurement(
      "2d2efb36671167cd7ef02bc78b1f10a728a8fdaf632ae4e5f67aecd6f2353856",
      "2024-01-01T09:15:00.000Z", "1.75", "kWh", "0.25", "2024-01-01T09:00:00.000Z", 0, 41));
  batch.measurements.push_back(measurement(
      "c36a2f6ebd3e73bffe499b209df66bb3560fa9c01590b3b864cc880dcff83d2f",
      "2024-01-01T09:30:00.000Z", "2", "Wh", "0.25", "2024-01-01T09:15:00.000Z", 0, 42));
  return batch;
}

}  // namespace

TEST_CASE("a batch encodes exactly as docs/PROTOCOL.md's example request", "[uplink_batch]") {
  UplinkEnvelope envelope{"gw-berlin-01", "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90",
                          ms("2024-01-01T09:30:05.123Z")};
  const auto body = encode_batch(envelope, example_batch());
  const auto expected = nlohmann::json::parse(protocol_block("example-request"));
  const auto actual = nlohmann::json::parse(body);
  CHECK(actual == expected);
  // Decimals stay exact text on the wire.
  CHECK(body.find("\"value\":1.75,") != std::string::npos);
  CHECK(body.find("\"delta\":0.25,") != std::string::npos);
}

TEST_CASE("protocol version 1 carries no delta_from, version 2 sends null with a null delta",
          "[uplink_batch]") {
  UplinkEnvelope envelope{"gw-berlin-01", "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90",
                          ms("2024-01-01T09:30:05.123Z"), kProtocolVersion1};
  const auto version1 = nlohmann::json::parse(encode_batch(envelope, example_batch()));
  // The example request as a version 1 central reads it: the same without delta_from.
  auto expected = nlohmann::json::parse(protocol_block("example-request"));
  expected["protocol_version"] = "1";
  for (auto& m : expected["measurements"]) m.erase("delta_from");
  CHECK(version1 == expected);

  // A delta_from left from an earlier revision is not sent beside a null delta.
  UplinkBatch batch = example_batch();
  batch.measurements[1].measurement.delta.reset();
  envelope.protocol_version = kProtocolVersion;
  const auto version2 = nlohmann::json::parse(encode_batch(envelope, batch));
  CHECK(version2["protocol_version"] == "2");
  CHECK(version2["measurements"][1]["delta_from"].is_null());
  CHECK(version2["measurements"][2]["delta_from"] == "2024-01-01T09:15:00.000Z");
}

TEST_CASE("the flags protocol version 1 cannot carry are exactly version 2's eight",
          "[uplink_batch]") {
  FlagSet version1 = 0;
  for (const Flag flag :
       {Flag::first_reading, Flag::counter_reset, Flag::suspicious_jump, Flag::out_of_order,
        Flag::timestamp_conflict, Flag::negative_value, Flag::future_timestamp,
        Flag::gateway_timestamp, Flag::beyond_retention, Flag::leap_second, Flag::dst_ambiguous,
        Flag::dst_gap, Flag::clock_unsynced}) {
    version1 |= flag_bit(flag);
  }
  FlagSet all = 0;
  for (const auto& entry : all_flags()) all |= flag_bit(entry.flag);
  CHECK((version1 & kVersion2Flags) == 0);
  CHECK((version1 | kVersion2Flags) == all);
  CHECK(flag_names(kVersion2Flags).size() == 8);
}

TEST_CASE("every byte of a payload survives base64, and odd strings stay valid JSON",
          "[uplink_batch]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode(std::string("\x00\xff\x10", 3)) == "AP8Q");
  UplinkBatch batch;
  UplinkRawEvent raw;
  raw.seq = 1;
  raw.message.topic = "a\"b\\c";
  raw.message.payload = std::string("\x00\x01", 2);
  raw.decode_error = std::string(5000, 'e');
  batch.raw_events.push_back(raw);
  const auto body =
      encode_batch(UplinkEnvelope{"gw", "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90", 0}, batch);
  const auto json = nlohmann::json::parse(body);
  CHECK(json["raw_events"][0]["topic"] == "a\"b\\c");
  CHECK(json["raw_events"][0]["payload"] == "AAE=");
  CHECK(json["raw_events"][0]["decode_error"].get<std::string>().size() <= 4096);
  CHECK(json["backlog"]["oldest_received_at"].is_null());
  CHECK(json["sent_at"] == "1970-01-01T00:00:00.000Z");
  CHECK(encoded_size(raw) > 4000);
}

TEST_CASE("the example response confirms and rejects exactly what it names", "[uplink_batch]") {
  const auto batch = example_batch();
  auto response = parse_ingest_response(protocol_block("example-response"), batch, "2");
  REQUIRE(response);
  REQUIRE(response->raw_events.size() == 2);
  CHECK(response->raw_events[0].outcome == RecordOutcome::confirmed);
  CHECK(response->raw_events[1].outcome == RecordOutcome::confirmed);
  REQUIRE(response->measurements.size() == 3);
  CHECK(response->measurements[0].outcome == RecordOutcome::confirmed);
  CHECK(response->measurements[1].outcome == RecordOutcome::confirmed);
  CHECK(response->measurements[2].outcome == RecordOutcome::rejected);
  CHECK(response->measurements[2].reason == "wrong_unit");
  CHECK(response->measurements[2].detail.find("kWh") != std::string::npos);
}

TEST_CASE("outcomes that do not match what was sent confirm nothing", "[uplink_batch]") {
  const auto batch = example_batch();
  // Wrong seq, wrong revision, wrong event_id, index out of range, unknown outcome.
  const std::string body = R"({"protocol_version":"1",
    "raw_events":[{"index":0,"seq":40,"outcome":"stored"},{"index":7,"seq":42,"outcome":"stored"}],
    "measurements":[
      {"index":0,"event_id":"f1d679212eed3db4b8f66bdddcfb001bdafb9c30fee5f80fa82b37723d8c1419","revision":2,"outcome":"stored"},
      {"index":1,"event_id":"c36a2f6ebd3e73bffe499b209df66bb3560fa9c01590b3b864cc880dcff83d2f","revision":1,"outcome":"stored"},
      {"index":2,"event_id":"c36a2f6ebd3e73bffe499b209df66bb3560fa9c01590b3b864cc880dcff83d2f","revision":1,"outcome":"maybe"}]})";
  auto response = parse_ingest_response(body, batch, "1");
  REQUIRE(response);
  for (const auto& r : response->raw_events) CHECK(r.outcome == RecordOutcome::missing);
  for (const auto& r : response->measurements) CHECK(r.outcome == RecordOutcome::missing);
  CHECK_FALSE(parse_ingest_response("<html>", batch, "1"));
  // Another version than the one sent: not an answer to this request.
  CHECK_FALSE(parse_ingest_response(R"({"protocol_version":"2"})", batch, "1"));
  CHECK_FALSE(parse_ingest_response(R"({"protocol_version":"1"})", batch, "2"));
  const auto error = parse_ingest_error(
      R"({"protocol_version":"1","error":"payload_too_large","detail":"too big","limit":5})");
  CHECK(error.error == "payload_too_large");
  CHECK(error.detail == "too big");
}

TEST_CASE("the size estimate that bounds a batch is not below the encoded size", "[uplink_batch]") {
  const auto batch = example_batch();
  for (const auto& raw : batch.raw_events) CHECK(estimated_size(raw) >= encoded_size(raw));
  for (const auto& m : batch.measurements) CHECK(estimated_size(m) >= encoded_size(m));
  auto flagged = batch.measurements[0];
  flagged.measurement.flags = ~FlagSet{0} & 0xfffff;  // every flag, version 2's too
  flagged.measurement.delta_from_ms = ms("2024-01-01T09:00:00.000Z");
  flagged.measurement.delta = "0.25";
  CHECK(estimated_size(flagged) >= encoded_size(flagged));
}
