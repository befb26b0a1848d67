// event_id and canonical forms against tests/vectors/event_id.json, which an
// independent Python implementation computed (tests/vectors/make_vectors.py).
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/config/config.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/normalize/event_id.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;

namespace {

nlohmann::json load_vectors() {
  std::ifstream file(std::string(METER_SOURCE_DIR) + "/tests/vectors/event_id.json");
  REQUIRE(file);
  return nlohmann::json::parse(file);
}

Result<Reading> canonicalize_input(const nlohmann::json& input, const Config& config) {
  DecodedReading decoded;
  decoded.device_id = input.at("device_id").get<std::string>();
  decoded.metric_type = input.at("metric_type").get<std::string>();
  decoded.value = input.at("value").get<std::string>();
  decoded.unit = input.at("unit").get<std::string>();
  if (!input.at("timestamp").is_null())
    decoded.timestamp = input.at("timestamp").get<std::string>();
  TimestampConfig timestamp;
  const auto format = input.at("timestamp_format").get<std::string>();
  if (format == "epoch_seconds") timestamp.format = TimestampFormat::epoch_seconds;
  if (format == "epoch_milliseconds") timestamp.format = TimestampFormat::epoch_milliseconds;
  if (!input.at("zone").is_null()) {
    auto zone = find_time_zone(input.at("zone").get<std::string>());
    if (!zone) return zone.error();
    timestamp.zone = *zone;
  }
  return canonicalize(decoded, config, timestamp, 0);
}

}  // namespace

TEST_CASE("event_id of the seed's rule, by hand", "[event_id]") {
  // printf 'm1|2024-01-01T09:00:00.000Z|energy|1.5' | sha256sum
  CHECK(to_hex(compute_event_id("m1", "2024-01-01T09:00:00.000Z", "energy", "1.5")) ==
        "f1d679212eed3db4b8f66bdddcfb001bdafb9c30fee5f80fa82b37723d8c1419");
}

TEST_CASE("canonical forms and event_ids equal the independent implementation's",
          "[event_id][vectors]") {
  const auto vectors = load_vectors();
  const Config config = test::make_config();
  REQUIRE(vectors.at("vectors").size() >= 30);
  std::set<std::string> names;
  for (const auto& vector : vectors.at("vectors")) {
    const auto name = vector.at("name").get<std::string>();
    INFO("vector " << name);
    names.insert(name);
    auto reading = canonicalize_input(vector.at("input"), config);
    REQUIRE(reading);
    const auto& expected = vector.at("canonical");
    CHECK(reading->device_id == expected.at("device_id").get<std::string>());
    CHECK(reading->metric_type == expected.at("metric_type").get<std::string>());
    CHECK(reading->timestamp_text() == expected.at("timestamp").get<std::string>());
    CHECK(reading->value.text() == expected.at("value").get<std::string>());
    CHECK(reading->unit == expected.at("unit").get<std::string>());
    std::vector<std::string> flags;
    for (auto flag : flag_names(reading->flags)) flags.emplace_back(flag);
    CHECK(flags == expected.at("flags").get<std::vector<std::string>>());
    CHECK(to_hex(reading->event_id()) == vector.at("event_id").get<std::string>());
  }
  CHECK(names.size() == vectors.at("vectors").size());
}

TEST_CASE("inputs the independent implementation rejects are rejected", "[event_id][vectors]") {
  const auto vectors = load_vectors();
  const Config config = test::make_config();
  REQUIRE_FALSE(vectors.at("invalid").empty());
  for (const auto& vector : vectors.at("invalid")) {
    INFO("invalid vector " << vector.at("name").get<std::string>() << ": "
                           << vector.at("why").get<std::string>());
    auto reading = canonicalize_input(vector.at("input"), config);
    CHECK_FALSE(reading);
  }
}
