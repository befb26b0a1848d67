// The uplink's outcomes (common/uplink/outcome.hpp): every kind of answer a
// request can get, as docs/PROTOCOL.md ("Whole-request errors", "The agent's
// side") describes it.
// Pure: no SQLite, no network, no threads.
#include <catch2/catch.hpp>
#include <string>

#include "common/uplink/outcome.hpp"
#include "common/uplink/wire_format.hpp"

using namespace meter;
using Kind = UploadOutcome::Kind;

namespace {

const UploadTarget kTarget{"https://central.test/api/v1/ingest", ""};

// Two raw events (seq 7, 8) and one measurement (ev-1 revision 2).
UplinkBatch small_batch() {
  UplinkBatch batch;
  for (std::int64_t seq : {7, 8}) {
    UplinkRawEvent raw;
    raw.seq = seq;
    raw.message.topic = "meters/m1";
    raw.message.payload = "{}";
    batch.raw_events.push_back(raw);
  }
  UplinkMeasurement m;
  m.row_id = 1;
  m.measurement.event_id = "ev-1";
  m.measurement.revision = 2;
  m.measurement.device_id = "m1";
  m.measurement.metric_type = "energy";
  batch.measurements.push_back(m);
  return batch;
}

UplinkBatch one_record() {
  UplinkBatch batch = small_batch();
  batch.raw_events.resize(1);
  batch.measurements.clear();
  return batch;
}

HttpAnswer answer(long status, std::string body = "",
                  std::optional<std::int64_t> retry_after_ms = std::nullopt) {
  HttpAnswer a;
  a.status = status;
  a.body = std::move(body);
  a.retry_after_ms = retry_after_ms;
  return a;
}

HttpAnswer no_answer(std::string error, bool tls = false) {
  HttpAnswer a;
  a.transport_error = std::move(error);
  a.tls_failure = tls;
  return a;
}

const char* kAllConfirmed = R"({"protocol_version":"2",
  "raw_events":[{"index":0,"seq":7,"outcome":"stored"},{"index":1,"seq":8,"outcome":"duplicate"}],
  "measurements":[{"index":0,"event_id":"ev-1","revision":2,"outcome":"superseded"}]})";

std::string error_body(const std::string& code, const std::string& detail) {
  return R"({"protocol_version":"2","error":")" + code + R"(","detail":")" + detail + R"("})";
}

UploadOutcome classify(const HttpAnswer& a, const UplinkBatch& batch = small_batch()) {
  return classify_answer(a, batch, kTarget);
}

}  // namespace

TEST_CASE("a readable 200 is delivered, with an outcome per record", "[uplink_outcome]") {
  const auto outcome = classify(answer(200, kAllConfirmed));
  REQUIRE(outcome.kind == Kind::delivered);
  REQUIRE(outcome.response.raw_events.size() == 2);
  REQUIRE(outcome.response.measurements.size() == 1);
  CHECK(outcome.response.raw_events[0].outcome == RecordOutcome::confirmed);
  CHECK(outcome.response.raw_events[1].outcome == RecordOutcome::confirmed);
  CHECK(outcome.response.measurements[0].outcome == RecordOutcome::confirmed);
  CHECK_FALSE(outcome.retry_after_ms);
}

TEST_CASE("a 200 rejecting one record delivers the rest and names the rejection",
          "[uplink_outcome]") {
  const auto outcome = classify(answer(200, R"({"protocol_version":"2",
    "raw_events":[{"index":0,"seq":7,"outcome":"stored"},{"index":1,"seq":8,"outcome":"stored"}],
    "measurements":[{"index":0,"event_id":"ev-1","revision":2,"outcome":"rejected",
                     "reason":"unit_mismatch","detail":"Wh is not kWh"}]})"));
  REQUIRE(outcome.kind == Kind::delivered);
  CHECK(outcome.response.raw_events[0].outcome == RecordOutcome::confirmed);
  const auto& rejected = outcome.response.measurements[0];
  CHECK(rejected.outcome == RecordOutcome::rejected);
  CHECK(rejected.reason == "unit_mismatch");
  CHECK(rejected.detail == "Wh is not kWh");
}

TEST_CASE("a partial 200 is delivered: what it does not answer is missing, sent again",
          "[uplink_outcome]") {
  const auto outcome = classify(answer(200, R"({"protocol_version":"2",
    "raw_events":[{"index":0,"seq":7,"outcome":"stored"}]})"));
  REQUIRE(outcome.kind == Kind::delivered);
  CHECK(outcome.response.raw_events[0].outcome == RecordOutcome::confirmed);
  CHECK(outcome.response.raw_events[1].outcome == RecordOutcome::missing);
  CHECK(outcome.response.measurements[0].outcome == RecordOutcome::missing);
}

TEST_CASE("a 200 naming records that were not sent confirms none of them", "[uplink_outcome]") {
  const auto outcome = classify(answer(200, R"({"protocol_version":"2",
    "raw_events":[{"index":0,"seq":99,"outcome":"stored"},{"index":5,"seq":8,"outcome":"stored"},
                  {"index":-1,"seq":7,"outcome":"stored"}],
    "measurements":[{"index":0,"event_id":"ev-1","revision":3,"outcome":"stored"},
                    {"index":1,"event_id":"ev-2","revision":1,"outcome":"stored"}]})"));
  REQUIRE(outcome.kind == Kind::delivered);
  CHECK(outcome.response.raw_events[0].outcome == RecordOutcome::missing);
  CHECK(outcome.response.raw_events[1].outcome == RecordOutcome::missing);
  CHECK(outcome.response.measurements[0].outcome == RecordOutcome::missing);
}

TEST_CASE("a 200 the agent cannot read is retried later, nothing confirmed", "[uplink_outcome]") {
  for (const char* body : {"", "<html>proxy login</html>", "[1,2]", R"({"raw_events":[]})",
                           R"({"protocol_version":"1","raw_events":[]})",
                           R"({"protocol_version":"2","raw_events":[)"}) {
    CAPTURE(body);
    const auto outcome = classify(answer(200, body, 30000));
    CHECK(outcome.kind == Kind::retry_later);
    CHECK(outcome.reason.rfind("HTTP 200 without a readable answer: ", 0) == 0);
    CHECK_FALSE(outcome.retry_after_ms);  // as today: only a non-200 status carries it
    CHECK(outcome.response.raw_events.empty());
  }
}

TEST_CASE("a 413 halves a batch of several records", "[uplink_outcome]") {
  UplinkBatch batch = small_batch();
  for (std::int64_t seq = 9; seq < 15; ++seq) {
    UplinkRawEvent raw;
    raw.seq = seq;
    raw.message.payload = std::string(3000, 'x');
    batch.raw_events.push_back(raw);
  }
  REQUIRE(batch.raw_events.size() == 8);
  const auto outcome = classify(answer(413, error_body("payload_too_large", "over 64 MiB")), batch);
  REQUIRE(outcome.kind == Kind::split);
  CHECK(outcome.split_records == 4);  // half the largest array
  std::size_t bytes = 0;
  for (const auto& r : batch.raw_events) bytes += estimated_size(r);
  for (const auto& m : batch.measurements) bytes += estimated_size(m);
  CHECK(outcome.split_bytes == bytes / 2);
  CHECK(outcome.reason == "HTTP 413 payload_too_large: over 64 MiB");

  SECTION("never below one record and 4096 bytes") {
    const auto two = classify(answer(413), small_batch());
    REQUIRE(two.kind == Kind::split);
    CHECK(two.split_records == 1);
    CHECK(two.split_bytes == 4096);
  }
}

TEST_CASE("a 413 for a single record quarantines it with the central's code", "[uplink_outcome]") {
  const auto coded = classify(answer(413, error_body("too_many_records", "limit 1")), one_record());
  REQUIRE(coded.kind == Kind::too_large);
  REQUIRE(coded.response.raw_events.size() == 1);
  CHECK(coded.response.raw_events[0].outcome == RecordOutcome::rejected);
  CHECK(coded.response.raw_events[0].reason == "too_many_records");
  CHECK(coded.response.raw_events[0].detail == "limit 1");

  const auto bare = classify(answer(413, "<html>nginx</html>"), one_record());
  REQUIRE(bare.kind == Kind::too_large);
  CHECK(bare.response.raw_events[0].reason == "payload_too_large");
}

TEST_CASE("401 and 403 are authentication failures", "[uplink_outcome]") {
  const auto unauthorized =
      classify(answer(401, error_body("unauthorized", "unknown token"), 5000));
  CHECK(unauthorized.kind == Kind::auth_failed);
  CHECK(unauthorized.reason == "HTTP 401 unauthorized: unknown token");
  CHECK_FALSE(unauthorized.retry_after_ms);  // uplink.auth_retry decides, not the server

  const auto mismatch = classify(answer(403, error_body("gateway_mismatch", "gw-2")));
  CHECK(mismatch.kind == Kind::auth_failed);
  CHECK(mismatch.reason == "HTTP 403 gateway_mismatch: gw-2");

  CHECK(no_credentials("uplink.token_file t is empty").kind == Kind::auth_failed);
  CHECK(no_credentials("uplink.token_file t is empty").reason == "uplink.token_file t is empty");
}

TEST_CASE("408, 429 and every 5xx are retried later, with their Retry-After", "[uplink_outcome]") {
  for (long status : {408L, 429L, 500L, 502L, 503L, 504L, 599L}) {
    CAPTURE(status);
    const auto plain = classify(answer(status));
    CHECK(plain.kind == Kind::retry_later);
    CHECK_FALSE(plain.retry_after_ms);
    CHECK(plain.reason == "HTTP " + std::to_string(status));
    const auto waiting = classify(answer(status, "", 120000));
    CHECK(waiting.kind == Kind::retry_later);
    CHECK(waiting.retry_after_ms == 120000);
  }
  const auto unavailable = classify(answer(503, error_body("maintenance", "back at 3"), 60000));
  CHECK(unavailable.reason == "HTTP 503 maintenance: back at 3");
}

TEST_CASE("any other status refuses the batch as a whole, Retry-After kept", "[uplink_outcome]") {
  for (long status : {201L, 204L, 301L, 302L, 304L, 307L, 400L, 404L, 405L, 409L, 415L, 422L}) {
    CAPTURE(status);
    const auto outcome = classify(answer(status, "", 2000));
    CHECK(outcome.kind == Kind::refused);
    CHECK(outcome.retry_after_ms == 2000);
    CHECK(outcome.response.raw_events.empty());  // nothing confirmed, nothing rejected
  }
  const auto invalid = classify(answer(422, error_body("invalid_envelope", "sent_at missing")));
  CHECK(invalid.reason == "HTTP 422 invalid_envelope: sent_at missing");
  const auto bad_json = classify(answer(400, error_body("invalid_json", "")));
  CHECK(bad_json.reason == "HTTP 400 invalid_json");
}

TEST_CASE("no answer at all (refused, reset, timeout, TLS) is retried later", "[uplink_outcome]") {
  const auto refused = classify(no_answer("Couldn't connect to server"));
  CHECK(refused.kind == Kind::retry_later);
  CHECK(refused.reason ==
        "cannot reach https://central.test/api/v1/ingest: Couldn't connect to "
        "server");
  CHECK_FALSE(refused.retry_after_ms);

  const auto timeout = classify(no_answer("Timeout was reached: Operation timed out"));
  CHECK(timeout.kind == Kind::retry_later);

  const auto tls = classify(no_answer("SSL peer certificate was not OK", true));
  CHECK(tls.kind == Kind::retry_later);
  CHECK(tls.reason ==
        "cannot reach https://central.test/api/v1/ingest: SSL peer certificate was not OK (the "
        "server's certificate could not be verified against the system's CA certificates)");
  const auto pinned = classify_answer(no_answer("bad", true), small_batch(),
                                      UploadTarget{"https://c/api/v1/ingest", "/etc/ca.pem"});
  CHECK(pinned.reason ==
        "cannot reach https://c/api/v1/ingest: bad (the server's certificate "
        "could not be verified against uplink.ca_file /etc/ca.pem)");
}

TEST_CASE("400 unsupported_protocol_version to version 2 means an older central, to 1 a refusal",
          "[uplink_outcome]") {
  const auto body =
      error_body("unsupported_protocol_version", "protocol_version must be \\\"1\\\"");
  const auto older = classify(answer(400, body));
  CHECK(older.kind == Kind::protocol_unsupported);
  CHECK(older.reason.rfind("HTTP 400 unsupported_protocol_version", 0) == 0);
  // Sent in version 1 already: nothing older to fall back to, a bug somewhere.
  const UploadTarget version1{"https://central.test/api/v1/ingest", "", "1"};
  CHECK(classify_answer(answer(400, body), small_batch(), version1).kind == Kind::refused);
  // Another 400, or the code with another status, is no fallback.
  CHECK(classify(answer(400, error_body("invalid_json", ""))).kind == Kind::refused);
  CHECK(classify(answer(422, body)).kind == Kind::refused);
  // A version 1 answer is read as such only when the request was version 1.
  const char* version1_answer = R"({"protocol_version":"1",
    "raw_events":[{"index":0,"seq":7,"outcome":"stored"},{"index":1,"seq":8,"outcome":"stored"}],
    "measurements":[]})";
  CHECK(classify_answer(answer(200, version1_answer), small_batch(), version1).kind ==
        Kind::delivered);
  CHECK(classify(answer(200, version1_answer)).kind == Kind::retry_later);
}

TEST_CASE("only an HTTP 500 is a server error that may come from a record", "[uplink_outcome]") {
  const auto error = classify(answer(500, R"({"protocol_version":"1","error":"internal_error"})"));
  CHECK(error.kind == Kind::retry_later);
  CHECK(error.server_error);
  CHECK(error.reason == "HTTP 500 internal_error");
  // Gateways and overload are outages: never a reason to split anything.
  for (long status : {502L, 503L, 504L, 408L, 429L}) {
    CAPTURE(status);
    CHECK_FALSE(classify(answer(status)).server_error);
  }
  CHECK_FALSE(classify(no_answer("Operation timed out after 30000 milliseconds")).server_error);
  CHECK_FALSE(classify(no_answer("Couldn't connect to server")).server_error);
}

TEST_CASE("a 413 keeps its Retry-After", "[uplink_outcome]") {
  CHECK(classify(answer(413, "", 5000)).retry_after_ms == 5000);
  CHECK_FALSE(classify(answer(413)).retry_after_ms);
}
