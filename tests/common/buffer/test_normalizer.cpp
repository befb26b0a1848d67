// The normalization stage (common/buffer/normalizer.cpp) against a real SQLite
// buffer: every case of the seed's test list and every rule of the core issue.
#include <catch2/catch.hpp>

#include "common/model/flags.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using meter::test::BufferFixture;
using meter::test::seed_payload;

namespace {

FlagSet flags_of(std::initializer_list<Flag> flags) {
  FlagSet set = 0;
  for (auto f : flags) set |= flag_bit(f);
  return set;
}

std::string energy(const std::string& ts, const std::string& value, const std::string& unit = "kWh",
                   const std::string& device = "m1") {
  return seed_payload(device, ts, "energy", value, unit);
}

}  // namespace

TEST_CASE("a repeated reading is stored once and counted as a duplicate", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.append(energy("2024-01-01T10:00:00Z", "100.000"));  // same value, other spelling
  auto stats = f.normalize();
  CHECK(stats.messages == 3);
  CHECK(stats.new_measurements == 1);
  CHECK(stats.duplicates == 2);
  REQUIRE(f.measurements().size() == 1);
  auto status = f.buffer().status();
  REQUIRE(status);
  CHECK(status->duplicates == 2);
  CHECK(status->raw_messages == 3);  // the raw log keeps every copy
}

TEST_CASE("the same reading in other units and offsets is one event", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00+01:00", "1500", "Wh"));
  f.append(energy("2024-01-01T09:00:00Z", "1.5", "kWh"));
  f.append(energy("2024-01-01T09:00:00.000Z", "0.0015", "MWh"));
  f.normalize();
  auto all = f.measurements();
  REQUIRE(all.size() == 1);
  CHECK(all[0].value == "1.5");
  CHECK(all[0].unit == "kWh");
  CHECK(
      all[0].event_id ==
      "f1d679212eed3db4b8f66bdddcfb001bdafb9c30fee5f80fa82b37723d8c1419");  // sha256("m1|2024-01-01T09:00:00.000Z|energy|1.5")
}

TEST_CASE("unit conversion is exact, never through binary floating point", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T09:00:00Z", "10.172886", "MWh"));
  f.append(energy("2024-01-01T10:00:00Z", "10.172887", "MWh"));
  f.normalize();
  auto second = f.at("m1", "energy", "2024-01-01T10:00:00.000Z");
  CHECK(second.value == "10172.887");
  CHECK(second.delta == std::optional<std::string>("0.001"));
}

TEST_CASE("timestamps become UTC, local times through the mapping's zone", "[normalizer]") {
  BufferFixture f;                                     // mapping zone Europe/Berlin
  f.append(energy("2024-07-01T12:00:00", "1"));        // CEST, +02:00
  f.append(energy("2024-01-01T12:00:00+05:45", "2"));  // Kathmandu
  f.append(energy("2024-01-01T12:00:00-03:30", "3"));  // Newfoundland
  f.normalize();
  CHECK(f.at("m1", "energy", "2024-07-01T10:00:00.000Z").value == "1");
  CHECK(f.at("m1", "energy", "2024-01-01T06:15:00.000Z").value == "2");
  CHECK(f.at("m1", "energy", "2024-01-01T15:30:00.000Z").value == "3");
}

TEST_CASE("first reading and normal deltas", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.append(energy("2024-01-01T11:00:00Z", "102.5"));
  f.normalize();
  auto first = f.at("m1", "energy", "2024-01-01T10:00:00.000Z");
  CHECK(first.flags == flags_of({Flag::first_reading}));
  CHECK_FALSE(first.delta);
  auto second = f.at("m1", "energy", "2024-01-01T11:00:00.000Z");
  CHECK(second.flags == 0);
  CHECK(second.delta == std::optional<std::string>("2.5"));
  CHECK(second.revision == 1);
}

TEST_CASE("a counter reset gets a null delta and a flag, the next delta counts from it",
          "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "500"));
  f.append(energy("2024-01-01T11:00:00Z", "3"));
  f.append(energy("2024-01-01T12:00:00Z", "5"));
  f.normalize();
  auto reset = f.at("m1", "energy", "2024-01-01T11:00:00.000Z");
  CHECK(reset.flags == flags_of({Flag::counter_reset}));
  CHECK_FALSE(reset.delta);
  CHECK(f.at("m1", "energy", "2024-01-01T12:00:00.000Z").delta == std::optional<std::string>("2"));
}

TEST_CASE("a jump above the threshold is flagged and its delta kept", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "0"));
  f.append(energy("2024-01-01T11:00:00Z", "10000"));      // exactly the threshold: not a jump
  f.append(energy("2024-01-01T12:00:00Z", "20000.001"));  // 10000.001 above
  f.normalize();
  CHECK(f.at("m1", "energy", "2024-01-01T11:00:00.000Z").flags == 0);
  auto jump = f.at("m1", "energy", "2024-01-01T12:00:00.000Z");
  CHECK(jump.flags == flags_of({Flag::suspicious_jump}));
  CHECK(jump.delta == std::optional<std::string>("10000.001"));
}

TEST_CASE("an out-of-order reading is inserted at its place and its successor recomputed",
          "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.append(energy("2024-01-01T12:00:00Z", "300"));
  f.normalize();
  CHECK(f.at("m1", "energy", "2024-01-01T12:00:00.000Z").delta ==
        std::optional<std::string>("200"));

  f.append(energy("2024-01-01T11:00:00Z", "180"));
  auto stats = f.normalize();
  CHECK(stats.revised == 1);
  auto late = f.at("m1", "energy", "2024-01-01T11:00:00.000Z");
  CHECK(late.flags == flags_of({Flag::out_of_order}));
  CHECK(late.delta == std::optional<std::string>("80"));
  auto successor = f.at("m1", "energy", "2024-01-01T12:00:00.000Z");
  CHECK(successor.delta == std::optional<std::string>("120"));
  CHECK(successor.revision == 2);  // so the uplink sends it again
  CHECK(successor.flags == 0);
}

TEST_CASE("a late first reading takes first_reading from its successor", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T12:00:00Z", "300"));
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.normalize();
  auto early = f.at("m1", "energy", "2024-01-01T10:00:00.000Z");
  CHECK(early.flags == flags_of({Flag::first_reading, Flag::out_of_order}));
  auto later = f.at("m1", "energy", "2024-01-01T12:00:00.000Z");
  CHECK(later.flags == 0);
  CHECK(later.delta == std::optional<std::string>("200"));
  CHECK(later.revision == 2);
}

TEST_CASE("a late reading can turn its successor into a reset or out of one", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.append(energy("2024-01-01T12:00:00Z", "150"));
  f.append(energy("2024-01-01T11:00:00Z", "200"));  // successor 150 is now below 200
  f.normalize();
  auto successor = f.at("m1", "energy", "2024-01-01T12:00:00.000Z");
  CHECK(successor.flags == flags_of({Flag::counter_reset}));
  CHECK_FALSE(successor.delta);
}

TEST_CASE("negative counter values are kept and flagged, negative power is not", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "-5"));
  f.append(seed_payload("m1", "2024-01-01T10:00:00Z", "power", "-2500", "W"));
  f.normalize();
  auto counter = f.at("m1", "energy", "2024-01-01T10:00:00.000Z");
  CHECK(counter.value == "-5");
  CHECK(counter.flags == flags_of({Flag::first_reading, Flag::negative_value}));
  auto power = f.at("m1", "power", "2024-01-01T10:00:00.000Z");
  CHECK(power.value == "-2.5");
  CHECK(power.flags == 0);
  CHECK_FALSE(power.delta);
}

TEST_CASE("gauges get canonical units and flags but no delta", "[normalizer]") {
  BufferFixture f;
  f.append(seed_payload("m1", "2024-01-01T10:00:00Z", "power", "1500", "W"));
  f.append(seed_payload("m1", "2024-01-01T11:00:00Z", "power", "0.002", "MW"));
  f.append(seed_payload("m1", "2024-01-01T10:30:00Z", "power", "1", "kW"));
  f.normalize();
  CHECK(f.at("m1", "power", "2024-01-01T10:00:00.000Z").value == "1.5");
  auto late = f.at("m1", "power", "2024-01-01T10:30:00.000Z");
  CHECK(late.flags == flags_of({Flag::out_of_order}));
  CHECK_FALSE(late.delta);
  auto last = f.at("m1", "power", "2024-01-01T11:00:00.000Z");
  CHECK(last.value == "2");
  CHECK(last.flags == 0);
  CHECK(last.revision == 1);  // gauges have no successor to recompute
}

TEST_CASE("equal timestamps with different values are ordered by value and flagged",
          "[normalizer]") {
  for (bool reversed : {false, true}) {
    BufferFixture f;
    f.append(energy("2024-01-01T10:00:00Z", "100"));
    if (!reversed) {
      f.append(energy("2024-01-01T11:00:00Z", "110"));
      f.append(energy("2024-01-01T11:00:00Z", "105"));
    } else {
      f.append(energy("2024-01-01T11:00:00Z", "105"));
      f.append(energy("2024-01-01T11:00:00Z", "110"));
    }
    f.append(energy("2024-01-01T12:00:00Z", "120"));
    f.normalize();
    auto all = f.measurements();
    REQUIRE(all.size() == 4);
    CHECK(all[1].value == "105");
    CHECK(all[1].delta == std::optional<std::string>("5"));
    CHECK(has_flag(all[1].flags, Flag::timestamp_conflict));
    CHECK(all[2].value == "110");
    CHECK(all[2].delta == std::optional<std::string>("5"));
    CHECK(has_flag(all[2].flags, Flag::timestamp_conflict));
    CHECK(all[3].delta == std::optional<std::string>("10"));
    CHECK_FALSE(has_flag(all[3].flags, Flag::timestamp_conflict));
  }
}

TEST_CASE("readings ahead of the gateway clock beyond the tolerance are flagged", "[normalizer]") {
  BufferFixture f;                                              // tolerance 5 minutes
  const std::int64_t received = 1704103200000;                  // 2024-01-01T10:00:00Z
  f.append(energy("2024-01-01T10:05:00Z", "1"), received);      // exactly at the tolerance
  f.append(energy("2024-01-01T10:05:00.001Z", "2"), received);  // beyond it
  f.normalize();
  CHECK_FALSE(
      has_flag(f.at("m1", "energy", "2024-01-01T10:05:00.000Z").flags, Flag::future_timestamp));
  CHECK(has_flag(f.at("m1", "energy", "2024-01-01T10:05:00.001Z").flags, Flag::future_timestamp));
}

TEST_CASE("a later copy received before the reading's time clears future_timestamp",
          "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T12:00:00Z", "7"), 1704103200000);  // received 10:00: two hours early
  f.append(energy("2024-01-01T12:00:00Z", "7"), 1704110400000);  // received 12:00
  f.normalize();
  // Earliest receipt wins, whatever the order: still two hours early.
  CHECK(has_flag(f.at("m1", "energy", "2024-01-01T12:00:00.000Z").flags, Flag::future_timestamp));

  BufferFixture g;
  g.append(energy("2024-01-01T12:00:00Z", "7"), 1704110400000);
  g.append(energy("2024-01-01T12:00:00Z", "7"), 1704103200000);
  g.normalize();
  auto m = g.at("m1", "energy", "2024-01-01T12:00:00.000Z");
  CHECK(has_flag(m.flags, Flag::future_timestamp));
  CHECK(m.first_received_ms == 1704103200000);
}

TEST_CASE("a reading without timestamp takes the receive time and says so", "[normalizer]") {
  BufferFixture f;
  f.append(seed_payload("m1", std::nullopt, "energy", "5", "kWh"), 1704103200123);
  f.normalize();
  auto m = f.at("m1", "energy", "2024-01-01T10:00:00.123Z");
  CHECK(m.flags == flags_of({Flag::first_reading, Flag::gateway_timestamp}));
}

TEST_CASE("an MQTT redelivery reuses the original's receive time", "[normalizer]") {
  BufferFixture f;
  const auto payload = seed_payload("m1", std::nullopt, "energy", "5", "kWh");
  f.append(payload, 1704103200000);
  // The agent crashed between commit and PUBACK; the broker redelivers with DUP.
  f.append(payload, 1704103260000, /*dup=*/true);
  auto stats = f.normalize();
  CHECK(stats.new_measurements == 1);
  CHECK(stats.duplicates == 1);
  REQUIRE(f.measurements().size() == 1);

  // A DUP whose original never reached the log is an ordinary first arrival.
  f.append(seed_payload("m1", std::nullopt, "energy", "6", "kWh"), 1704103320000, true);
  CHECK(f.normalize().new_measurements == 1);
  // The same payload sent again later without DUP is a new reading (new receive time).
  f.append(payload, 1704103380000);
  CHECK(f.normalize().new_measurements == 1);
}

TEST_CASE("a retained message without timestamp is kept raw, not stamped now", "[normalizer]") {
  BufferFixture f;
  const auto seq = f.append(seed_payload("m1", std::nullopt, "energy", "5", "kWh"), 1704103200000,
                            false, /*retained=*/true);
  // A retained message that carries its own timestamp is a real reading.
  f.append(energy("2024-01-01T09:00:00Z", "4"), 1704103200000, false, true);
  auto stats = f.normalize();
  CHECK(stats.ignored == 1);
  CHECK(stats.new_measurements == 1);
  auto outcomes = f.outcomes();
  REQUIRE(outcomes.size() == 1);
  CHECK(outcomes[0].seq == seq);
  CHECK(outcomes[0].kind == "ignored");
  CHECK_THAT(outcomes[0].reason, Catch::Contains("retained"));
}

TEST_CASE("undecodable messages stay in the raw log with their reason", "[normalizer]") {
  BufferFixture f;
  f.append("{not json");
  f.append(energy("2024-01-01T10:00:00Z", "5", "kVAh"));
  f.append(energy("2024-01-01T10:00:00", "5"), 0, false, false, "other/topic");
  f.append(seed_payload("m1", "2024-01-01T10:00:00Z", "water", "5", "m3"));
  f.append(energy("2024-01-01T10:00:00Z", "\"NaN\""));  // a string: JSON has no NaN
  f.append("online");
  auto stats = f.normalize();
  CHECK(stats.decode_errors == 5);
  CHECK(stats.ignored == 1);
  CHECK(stats.new_measurements == 0);
  auto outcomes = f.outcomes();
  REQUIRE(outcomes.size() == 6);
  CHECK(outcomes[0].kind == "decode_error");
  CHECK_THAT(outcomes[1].reason, Catch::Contains("kVAh"));
  CHECK_THAT(outcomes[2].reason, Catch::Contains("no mapping matches topic 'other/topic'"));
  CHECK_THAT(outcomes[3].reason, Catch::Contains("water"));
  CHECK_THAT(outcomes[4].reason, Catch::Contains("NaN"));
  CHECK(outcomes[5].kind == "ignored");
  auto status = f.buffer().status();
  REQUIRE(status);
  CHECK(status->raw_messages == 6);
  CHECK(status->decode_errors == 5);
}

TEST_CASE("one bad reading in a message does not lose the others", "[normalizer]") {
  BufferFixture f;
  f.append("[" + energy("2024-01-01T10:00:00Z", "1") + "," +
           energy("2024-01-01T11:00:00Z", "2", "furlongs") + "," +
           energy("2024-01-01T12:00:00Z", "3") + "]");
  auto stats = f.normalize();
  CHECK(stats.new_measurements == 2);
  CHECK(stats.decode_errors == 1);
  auto outcomes = f.outcomes();
  REQUIRE(outcomes.size() == 1);
  CHECK_THAT(outcomes[0].reason, Catch::StartsWith("reading 2: "));
}

TEST_CASE("normalization resumes where it stopped, across reopen", "[normalizer]") {
  BufferFixture f;
  for (int i = 0; i < 10; ++i) {
    f.append(energy("2024-01-01T1" + std::to_string(i) + ":00:00Z", std::to_string(100 + i)));
  }
  auto first = f.buffer().normalize_pending(f.config(), 4);
  REQUIRE(first);
  CHECK(first->messages == 4);
  f.reopen();  // cold cache: the series tail comes from the database
  auto rest = f.normalize();
  CHECK(rest.messages == 6);
  auto all = f.measurements();
  REQUIRE(all.size() == 10);
  for (std::size_t i = 1; i < all.size(); ++i) {
    CHECK(all[i].delta == std::optional<std::string>("1"));
    CHECK(all[i].flags == 0);
  }
}

TEST_CASE("renormalize is idempotent and revises only what changed", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "0"));
  f.append(energy("2024-01-01T11:00:00Z", "5000"));
  f.append(energy("2024-01-01T12:00:00Z", "20000"));
  f.normalize();
  REQUIRE(f.measurements().size() == 3);
  const std::string confirmed = f.measurements()[1].event_id;
  REQUIRE(f.confirm_measurements([&](const Measurement& m) { return m.event_id == confirmed; }) ==
          1);
  const auto before = f.measurements();
  REQUIRE(before[1].synced_revision == 1);

  auto again = f.buffer().renormalize(f.config());
  REQUIRE(again);
  CHECK(again->new_measurements == 3);
  const auto same = f.measurements();
  REQUIRE(same.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(same[i].event_id == before[i].event_id);
    CHECK(same[i].delta == before[i].delta);
    CHECK(same[i].flags == before[i].flags);
    CHECK(same[i].revision == before[i].revision);
    CHECK(same[i].synced_revision == before[i].synced_revision);
  }

  // Lower the jump threshold: the 5000 delta becomes suspicious, only it changes.
  f.config().metrics["energy"].jump_threshold = *Decimal::parse("1000");
  REQUIRE(f.buffer().renormalize(f.config()));
  const auto after = f.measurements();
  REQUIRE(after.size() == 3);
  CHECK(after[0].revision == 1);
  CHECK(after[1].revision == 2);
  CHECK(has_flag(after[1].flags, Flag::suspicious_jump));
  CHECK(after[1].synced_revision == 1);            // revision 2 is unsynced again
  CHECK(after[2].revision == before[2].revision);  // was already suspicious

  REQUIRE(f.buffer().renormalize(f.config()));
  const auto twice = f.measurements();
  for (std::size_t i = 0; i < 3; ++i) CHECK(twice[i].revision == after[i].revision);
}

TEST_CASE("a unit change in the config is not mixed into stored series", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "1"));
  f.normalize();
  f.config().metrics["energy"].unit = "Wh";
  f.append(energy("2024-01-01T11:00:00Z", "2"));
  auto stats = f.normalize();
  CHECK(stats.decode_errors == 1);
  CHECK_THAT(f.outcomes().back().reason, Catch::Contains("renormalize"));
  // renormalize moves the whole series to the new unit.
  REQUIRE(f.buffer().renormalize(f.config()));
  auto all = f.measurements();
  REQUIRE(all.size() == 2);
  CHECK(all[0].value == "1000");
  CHECK(all[0].unit == "Wh");
  CHECK(all[1].delta == std::optional<std::string>("1000"));
}

TEST_CASE("readings older than the pruned history get beyond_retention", "[normalizer]") {
  BufferFixture f;
  for (int hour = 10; hour <= 14; ++hour) {
    f.append(energy("2024-01-01T" + std::to_string(hour) + ":00:00Z", std::to_string(hour * 10)));
  }
  f.normalize();
  f.confirm_measurements([](const Measurement&) { return true; });
  // Prune everything before 13:00 -> 10, 11, 12 go; 12:00 (value 120) is the anchor.
  auto pruned = f.buffer().prune_measurements(1704114000000);  // 2024-01-01T13:00:00Z
  REQUIRE(pruned);
  CHECK(pruned->measurements_deleted == 3);

  f.append(energy("2024-01-01T11:30:00Z", "115"));  // before the anchor
  f.append(energy("2024-01-01T12:30:00Z", "125"));  // between anchor and 13:00
  f.normalize();
  auto old = f.at("m1", "energy", "2024-01-01T11:30:00.000Z");
  CHECK(has_flag(old.flags, Flag::beyond_retention));
  CHECK_FALSE(old.delta);
  auto between = f.at("m1", "energy", "2024-01-01T12:30:00.000Z");
  CHECK(between.delta == std::optional<std::string>("5"));  // from the anchor, exactly
  CHECK_FALSE(has_flag(between.flags, Flag::beyond_retention));
  CHECK(f.at("m1", "energy", "2024-01-01T13:00:00.000Z").delta == std::optional<std::string>("5"));
  // The newest of the series is never pruned.
  CHECK(f.at("m1", "energy", "2024-01-01T14:00:00.000Z").value == "140");
}

TEST_CASE("unsynced measurements are not pruned", "[normalizer]") {
  BufferFixture f;
  f.append(energy("2024-01-01T10:00:00Z", "1"));
  f.append(energy("2024-01-01T11:00:00Z", "2"));
  f.normalize();
  auto pruned = f.buffer().prune_measurements(1704200000000);
  REQUIRE(pruned);
  CHECK(pruned->measurements_deleted == 0);
}

TEST_CASE("two connections normalizing the same buffer keep each other's series exact",
          "[normalizer]") {
  BufferFixture f;
  auto other = Buffer::open(f.config().buffer);
  REQUIRE(other);
  f.append(energy("2024-01-01T10:00:00Z", "100"));
  f.normalize();  // f's cache: tail 10:00 = 100
  f.append(energy("2024-01-01T11:00:00Z", "110"));
  REQUIRE((*other)->normalize_all(f.config()));  // the other connection stores 11:00
  f.append(energy("2024-01-01T12:00:00Z", "125"));
  f.normalize();  // must see 11:00 as the predecessor, not its stale 10:00
  CHECK(f.at("m1", "energy", "2024-01-01T12:00:00.000Z").delta == std::optional<std::string>("15"));
  CHECK_FALSE(has_flag(f.at("m1", "energy", "2024-01-01T11:00:00.000Z").flags, Flag::out_of_order));
}

TEST_CASE("redeliveries whose first delivery never reached the log are one reading",
          "[normalizer]") {
  BufferFixture f;
  const auto payload = seed_payload("m1", std::nullopt, "energy", "5", "kWh");
  // The agent died before committing the first delivery: every copy is DUP.
  // A kill between a copy's commit and its acknowledgement stores it twice.
  f.append(payload, 1704103200000, /*dup=*/true);
  f.append(payload, 1704103260000, /*dup=*/true);
  f.append(payload, 1704103320000, /*dup=*/true);
  auto stats = f.normalize();
  CHECK(stats.new_measurements == 1);
  CHECK(stats.duplicates == 2);
  CHECK(f.measurements().at(0).timestamp_ms == 1704103200000);  // the earliest copy's time

  // A first delivery stored before wins over earlier DUP copies of the same message.
  const auto other = seed_payload("m2", std::nullopt, "energy", "7", "kWh");
  f.append(other, 1704103400000, true);
  f.append(other, 1704103500000, false);
  f.append(other, 1704103600000, true);  // the redelivery of the 1704103500000 delivery
  stats = f.normalize();
  CHECK(stats.new_measurements == 2);
  CHECK(stats.duplicates == 1);

  // renormalize, cold, reproduces the same events.
  const auto before = f.measurements();
  f.reopen();
  REQUIRE(f.buffer().renormalize(f.config()));
  const auto after = f.measurements();
  REQUIRE(after.size() == before.size());
  for (std::size_t i = 0; i < after.size(); ++i) CHECK(after[i].event_id == before[i].event_id);
}

TEST_CASE("a redelivery is found across batches and after reopening", "[normalizer]") {
  BufferFixture f;
  const auto payload = seed_payload("m1", std::nullopt, "energy", "5", "kWh");
  f.append(payload, 1704103200000);
  for (int i = 0; i < 50; ++i) f.append("online");
  REQUIRE(f.buffer().normalize_pending(f.config(), 10));
  f.reopen();  // the index is rebuilt from the raw log's tail
  f.append(payload, 1704103900000, /*dup=*/true);
  auto stats = f.normalize();
  CHECK(stats.duplicates == 1);
  CHECK(f.measurements().size() == 1);
}
