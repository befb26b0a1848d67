// The order-independence property of the core rules: for any set of readings,
// values, deltas and every flag except out_of_order are the same whatever the
// arrival order and however often each reading repeats; and renormalize
// reproduces what incremental normalization built.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <random>

#include "common/normalize/timestamp.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using meter::test::BufferFixture;
using meter::test::seed_payload;

namespace {

struct Copy {
  std::string payload;
  std::int64_t received_ms;
};

struct Reading {
  std::string device;
  std::string metric;
  std::int64_t timestamp_ms;
  std::int64_t milli_value;  // value in thousandths of the canonical unit
};

// Writes thousandths of a unit as decimal text scaled by 10^-extra_places
// (so the same quantity can be written in kWh, Wh or MWh without rounding).
std::string milli_text(std::int64_t milli, int extra_places) {
  const bool negative = milli < 0;
  std::string digits = std::to_string(negative ? -milli : milli);
  const std::size_t places = static_cast<std::size_t>(3 + extra_places);
  if (digits.size() <= places) digits.insert(0, places + 1 - digits.size(), '0');
  digits.insert(digits.size() - places, ".");
  return (negative ? "-" : "") + digits;
}

// One spelling of the reading, chosen at random: unit and UTC offset vary.
std::string spell(const Reading& r, std::mt19937_64& rng) {
  std::string value;
  std::string unit;
  const bool energy = r.metric == "energy";
  switch (rng() % 3) {
    case 0:
      value = milli_text(r.milli_value, 0);
      unit = energy ? "kWh" : "kW";
      break;
    case 1:
      value = std::to_string(r.milli_value);
      unit = energy ? "Wh" : "W";
      break;
    default:
      value = milli_text(r.milli_value, 3);
      unit = energy ? "MWh" : "MW";
      break;
  }
  static const std::pair<std::int64_t, const char*> offsets[] = {
      {0, "Z"}, {3600000, "+01:00"}, {20700000, "+05:45"}, {-12600000, "-03:30"}};
  const auto& [offset_ms, suffix] = offsets[rng() % 4];
  std::string ts = format_timestamp(r.timestamp_ms + offset_ms);
  ts.pop_back();  // 'Z'
  ts += suffix;
  return seed_payload(r.device, ts, r.metric, value, unit);
}

std::vector<Reading> make_stream(int stream, std::mt19937_64& rng) {
  std::vector<Reading> readings;
  const int devices = 1 + static_cast<int>(rng() % 2);
  for (int d = 0; d < devices; ++d) {
    const std::string device = "s" + std::to_string(stream) + "-d" + std::to_string(d);
    for (const char* metric : {"energy", "power"}) {
      if (rng() % 3 == 0) continue;
      const int count = 2 + static_cast<int>(rng() % 11);
      std::int64_t ts = 1704067200000 + static_cast<std::int64_t>(rng() % 86400) * 1000;
      std::int64_t value = static_cast<std::int64_t>(rng() % 1000000);
      for (int i = 0; i < count; ++i) {
        const auto roll = rng() % 100;
        if (roll < 8 && i > 0) {
          // Same timestamp, different value: a conflict.
          value += 1 + static_cast<std::int64_t>(rng() % 500);
        } else {
          ts += 1000 * (1 + static_cast<std::int64_t>(rng() % (roll < 15 ? 86400 : 900)));
          if (roll < 20) {
            value = static_cast<std::int64_t>(rng() % 1000);  // reset
          } else if (roll < 25) {
            value += 10000000 + static_cast<std::int64_t>(rng() % 5000000);  // jump > 10,000
          } else if (roll < 28) {
            value = -static_cast<std::int64_t>(rng() % 5000);  // negative register
          } else {
            value += static_cast<std::int64_t>(rng() % 20000);  // may be 0
          }
        }
        readings.push_back(Reading{device, metric, ts, value});
      }
    }
  }
  return readings;
}

struct Comparable {
  std::string event_id;
  std::string value;
  std::optional<std::string> delta;
  FlagSet flags;
  bool operator==(const Comparable&) const = default;
};

std::vector<Comparable> comparable(BufferFixture& f, bool keep_out_of_order) {
  std::vector<Comparable> rows;
  for (const auto& m : f.measurements()) {
    FlagSet flags = m.flags;
    if (!keep_out_of_order) flags &= ~flag_bit(Flag::out_of_order);
    rows.push_back(Comparable{m.event_id, m.value, m.delta, flags});
  }
  return rows;
}

void feed(BufferFixture& f, const std::vector<Copy>& copies, std::mt19937_64& rng) {
  std::vector<RawMessage> chunk;
  std::size_t next = 0;
  while (next < copies.size()) {
    const auto size = static_cast<std::size_t>(1 + rng() % 3000);
    for (; next < copies.size() && chunk.size() < size; ++next) {
      RawMessage message;
      message.topic = "meters/x";
      message.payload = copies[next].payload;
      message.received_ms = copies[next].received_ms;
      chunk.push_back(std::move(message));
    }
    REQUIRE(f.buffer().append_raw_batch(chunk));
    chunk.clear();
    // Normalize in batches of varying size; sometimes with a cold cache.
    if (rng() % 4 == 0) f.reopen();
    auto stats =
        f.buffer().normalize_pending(f.config(), static_cast<std::size_t>(1 + rng() % 2000));
    REQUIRE(stats);
  }
  f.normalize();
}

// METER_PROPERTY_STREAMS if set to a positive number, else `full`.
int property_streams(int full) {
  const char* set = std::getenv("METER_PROPERTY_STREAMS");
  if (set == nullptr) return full;
  const int streams = std::atoi(set);
  return streams > 0 ? streams : full;
}

}  // namespace

TEST_CASE("measurements do not depend on arrival order or repeats, renormalize reproduces them",
          "[normalizer][property]") {
  // 10,000 streams (about 17 s natively). METER_PROPERTY_STREAMS makes it fewer
  // where the suite runs emulated (scripts/package-test.sh under qemu-user,
  // scripts/vm-test.sh under TCG: 40 times slower), with the same rules checked.
  const int streams = property_streams(10000);
  std::mt19937_64 rng(20261127);
  std::vector<Copy> arrival;
  std::vector<Copy> reference;
  std::size_t readings_total = 0;
  std::size_t out_of_order_arrivals = 0;

  for (int stream = 0; stream < streams; ++stream) {
    auto readings = make_stream(stream, rng);
    readings_total += readings.size();
    // Every copy of a reading is received at some time near the reading's own,
    // sometimes well before it (a fast meter clock: future_timestamp).
    std::vector<std::pair<std::size_t, Copy>> copies;
    std::vector<std::int64_t> earliest(readings.size(), INT64_MAX);
    for (std::size_t i = 0; i < readings.size(); ++i) {
      const int repeats = rng() % 5 == 0 ? 1 + static_cast<int>(rng() % 3) : 0;
      for (int c = 0; c <= repeats; ++c) {
        std::int64_t received = readings[i].timestamp_ms +
                                static_cast<std::int64_t>(rng() % 3600000) -
                                (rng() % 10 == 0 ? 1200000 : 0);
        earliest[i] = std::min(earliest[i], received);
        copies.emplace_back(i, Copy{spell(readings[i], rng), received});
      }
    }
    std::shuffle(copies.begin(), copies.end(), rng);
    std::int64_t newest_seen = INT64_MIN;
    for (auto& [index, copy] : copies) {
      if (readings[index].timestamp_ms < newest_seen) ++out_of_order_arrivals;
      newest_seen = std::max(newest_seen, readings[index].timestamp_ms);
      arrival.push_back(std::move(copy));
    }
    // The reference: each reading once, in timestamp order, received at its
    // earliest receipt.
    std::vector<std::size_t> order(readings.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return readings[a].timestamp_ms < readings[b].timestamp_ms;
    });
    for (auto i : order) reference.push_back(Copy{spell(readings[i], rng), earliest[i]});
  }
  INFO(readings_total << " readings, " << arrival.size() << " copies delivered, "
                      << out_of_order_arrivals << " out-of-order arrivals");
  REQUIRE(out_of_order_arrivals > static_cast<std::size_t>(streams / 10));

  BufferFixture shuffled;
  BufferFixture ordered;
  feed(shuffled, arrival, rng);
  feed(ordered, reference, rng);

  const auto expected = comparable(ordered, false);
  const auto actual = comparable(shuffled, false);
  REQUIRE(expected.size() == readings_total);
  REQUIRE(actual.size() == expected.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < expected.size() && mismatches < 10; ++i) {
    if (!(actual[i] == expected[i])) {
      ++mismatches;
      UNSCOPED_INFO("row " << i << " event " << expected[i].event_id << ": expected value "
                           << expected[i].value << " delta " << expected[i].delta.value_or("null")
                           << " flags " << join_flags(expected[i].flags, ';') << "; got value "
                           << actual[i].value << " delta " << actual[i].delta.value_or("null")
                           << " flags " << join_flags(actual[i].flags, ';'));
    }
  }
  CHECK(mismatches == 0);

  // The flags the generator aims for all occur, so the property covers them.
  FlagSet seen = 0;
  for (const auto& row : expected) seen |= row.flags;
  for (Flag f : {Flag::first_reading, Flag::counter_reset, Flag::suspicious_jump,
                 Flag::timestamp_conflict, Flag::negative_value, Flag::future_timestamp}) {
    CHECK(has_flag(seen, f));
  }

  // Renormalize rebuilds exactly what incremental normalization built,
  // out_of_order included (it replays the raw log in arrival order).
  const auto before = comparable(shuffled, true);
  REQUIRE(shuffled.buffer().renormalize(shuffled.config()));
  CHECK(comparable(shuffled, true) == before);
}
