// The operator event's payload (common/normalize/operator_event.hpp) as
// docs/PROTOCOL.md ("Operator events") writes it, and the rule that the
// latest record of an identity wins. Pure: no SQLite.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/normalize/operator_event.hpp"
#include "common/normalize/timestamp.hpp"

using namespace meter;

namespace {

std::int64_t ms(const char* timestamp) {
  return parse_timestamp(timestamp, TimestampFormat::rfc3339)->ms;
}

OperatorEvent replacement() {
  OperatorEvent event;
  event.device_id = "m1";
  event.metric_type = "energy";
  event.at_ms = ms("2024-03-01T12:00:00Z");
  event.old_final = Decimal::parse("12345.6").value();
  event.new_initial = Decimal::parse("0.5").value();
  event.recorded_ms = ms("2024-03-01T12:03:10.25Z");
  return event;
}

// printf 'meter_replaced\0m1\0energy\0002024-03-01T12:00:00.000Z' | sha256sum
const std::string kIdentity = "7de3710742d6fb458e49d16eb97c69b70c0111ec443d6fead01658f00c4ab12e";

}  // namespace

TEST_CASE("an operator event encodes as compact JSON with sorted keys", "[operator_event]") {
  const OperatorEvent event = replacement();
  CHECK(event.identity() == kIdentity);
  CHECK(encode_operator_event(event) ==
        R"({"at":"2024-03-01T12:00:00.000Z","device_id":"m1","event":"meter_replaced",)"
        R"("identity":")" +
            kIdentity +
            R"(","metric_type":"energy","new_initial":"0.5","old_final":"12345.6",)"
            R"("recorded_at":"2024-03-01T12:03:10.250Z","withdrawn":false})");
  OperatorEvent withdrawal = event;
  withdrawal.withdrawn = true;
  withdrawal.old_final.reset();
  withdrawal.new_initial.reset();
  CHECK(encode_operator_event(withdrawal).find(R"("new_initial":null,"old_final":null)") !=
        std::string::npos);
  CHECK(encode_operator_event(withdrawal).ends_with(R"("withdrawn":true})"));
  CHECK(withdrawal.identity() == kIdentity);  // the same replacement
}

TEST_CASE("an operator event reads back exactly, anything off is an error", "[operator_event]") {
  const OperatorEvent event = replacement();
  const std::string payload = encode_operator_event(event);
  auto parsed = parse_operator_event(payload);
  REQUIRE(parsed);
  CHECK(parsed->same_content(event));
  CHECK(parsed->recorded_ms == event.recorded_ms);
  CHECK(encode_operator_event(*parsed) == payload);

  const auto broken = [&](const std::string& from, const std::string& to) {
    std::string text = payload;
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    auto result = parse_operator_event(text);
    REQUIRE_FALSE(result);
    return result.error().message;
  };
  CHECK(broken("\"2024-03-01T12:00:00.000Z\"", "\"2024-03-01T13:00:00+01:00\"") ==
        "at is not a canonical timestamp");
  CHECK(broken("\"0.5\"", "\"0.50\"") == "new_initial is not a canonical decimal");
  CHECK(broken("\"0.5\"", "0.5") == "new_initial is not a string or null");
  CHECK(broken("\"m1\"", "\"m2\"") == "identity does not match device_id, metric_type and at");
  CHECK(broken("meter_replaced", "meter_moved") == "unknown event 'meter_moved'");
  CHECK(broken("\"withdrawn\":false", "\"withdrawn\":0") ==
        "withdrawn is missing or not true/false");
  CHECK(broken("\"m1\"", "\"\"") == "device_id is empty");
  CHECK_FALSE(parse_operator_event("not json"));
  CHECK_FALSE(parse_operator_event("[]"));
}

TEST_CASE("the latest record of each identity wins, withdrawals included", "[operator_event]") {
  OperatorEvent first = replacement();
  first.seq = 3;
  OperatorEvent corrected = first;
  corrected.new_initial = Decimal::parse("0.7").value();
  corrected.seq = 9;
  OperatorEvent other = replacement();
  other.device_id = "m0";
  other.seq = 5;
  OperatorEvent withdrawn = other;
  withdrawn.withdrawn = true;
  withdrawn.seq = 7;
  const auto latest = latest_operator_events({first, other, withdrawn, corrected});
  REQUIRE(latest.size() == 2);
  CHECK(latest[0].device_id == "m0");  // sorted by device, metric, at
  CHECK(latest[0].withdrawn);
  CHECK(latest[0].seq == 7);
  CHECK(latest[1].device_id == "m1");
  CHECK(latest[1].new_initial == Decimal::parse("0.7").value());
  CHECK(latest[1].seq == 9);
  // recorded_at and seq are not content: repeating a command is the same event.
  OperatorEvent repeat = first;
  repeat.recorded_ms += 1000;
  CHECK(repeat.same_content(first));
  CHECK_FALSE(corrected.same_content(first));
}

TEST_CASE("a device_id is canonical as the protocol says: as sent, UTF-8, no controls",
          "[operator_event]") {
  CHECK_FALSE(device_id_problem("m1"));
  CHECK_FALSE(device_id_problem("compteur-\xc3\xa9 |x"));
  CHECK(device_id_problem("") == std::optional<std::string>("is empty"));
  CHECK(device_id_problem("a\nb") == std::optional<std::string>("contains a control character"));
  CHECK(device_id_problem("\xff") == std::optional<std::string>("is not valid UTF-8"));
  CHECK(device_id_problem(std::string(257, 'a')) ==
        std::optional<std::string>("is longer than 256 bytes"));
}
