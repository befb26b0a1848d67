// The series engine without SQLite: every series rule as a scenario on an
// in-memory series, and the order-independence property (values, deltas and
// every flag but out_of_order do not depend on the arrival order) over random
// streams and arrival orders.
#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/normalize/series.hpp"
#include "common/normalize/series_engine.hpp"
#include "support/memory_series.hpp"

using namespace meter;
using meter::test::MemorySeries;

namespace {

constexpr std::int64_t kTolerance = 300'000;  // 5 min

Decimal number(const std::string& text) { return *Decimal::parse(text); }

MetricConfig counter() {
  MetricConfig metric;
  metric.name = "energy";
  metric.kind = MetricKind::counter;
  metric.unit = "kWh";
  metric.jump_threshold = number("10000");
  // The seed's rules are the case without a glitch window: every reading is
  // decided at once against its predecessor. test_series_rules.cpp has the
  // window.
  metric.glitch_window = 0;
  return metric;
}

MetricConfig gauge() {
  MetricConfig metric;
  metric.name = "power";
  metric.kind = MetricKind::gauge;
  metric.unit = "kW";
  return metric;
}

SeriesKey key(std::int64_t timestamp_ms, const std::string& value) {
  return SeriesKey{timestamp_ms, number(value)};
}

// A reading received when it was taken, unless told otherwise.
SeriesReading reading(std::int64_t timestamp_ms, const std::string& value, FlagSet flags = 0,
                      std::optional<std::int64_t> received_ms = std::nullopt) {
  return SeriesReading{key(timestamp_ms, value), flags, received_ms.value_or(timestamp_ms)};
}

constexpr FlagSet bit(Flag flag) { return flag_bit(flag); }

// A series whose readings up to `anchor` were pruned.
SeriesState anchored(SeriesKey anchor) {
  SeriesState state;
  state.anchor = std::move(anchor);
  return state;
}

const StoredReading& row_at(const MemorySeries& series, std::int64_t timestamp_ms,
                            const std::string& value) {
  for (const auto& row : series.rows()) {
    if (row.key.timestamp_ms == timestamp_ms && row.key.value == number(value)) return row;
  }
  FAIL("no row " << timestamp_ms << " " << value);
  throw;  // unreachable
}

}  // namespace

TEST_CASE("compute_delta: counters get deltas and neighbour flags, gauges neither",
          "[series_engine]") {
  const auto metric = counter();
  SECTION("first reading") {
    const auto outcome = compute_delta(metric, number("5"), std::nullopt, false);
    CHECK_FALSE(outcome.delta);
    CHECK(outcome.flags == bit(Flag::first_reading));
  }
  SECTION("delta") {
    const auto outcome = compute_delta(metric, number("10.5"), number("5"), false);
    REQUIRE(outcome.delta);
    CHECK(outcome.delta->text() == "5.5");
    CHECK(outcome.flags == 0);
  }
  SECTION("a jump above the threshold keeps its delta; one at the threshold is no jump") {
    auto outcome = compute_delta(metric, number("10005.001"), number("5"), false);
    REQUIRE(outcome.delta);
    CHECK(outcome.delta->text() == "10000.001");
    CHECK(outcome.flags == bit(Flag::suspicious_jump));
    outcome = compute_delta(metric, number("10005"), number("5"), false);
    CHECK(outcome.flags == 0);
  }
  SECTION("reset") {
    const auto outcome = compute_delta(metric, number("4"), number("5"), false);
    CHECK_FALSE(outcome.delta);
    CHECK(outcome.flags == bit(Flag::counter_reset));
  }
  SECTION("beyond retention wins over everything") {
    const auto outcome = compute_delta(metric, number("4"), number("5"), true);
    CHECK_FALSE(outcome.delta);
    CHECK(outcome.flags == bit(Flag::beyond_retention));
  }
  SECTION("gauges") {
    const auto outcome = compute_delta(gauge(), number("4"), number("5"), false);
    CHECK_FALSE(outcome.delta);
    CHECK(outcome.flags == 0);
  }
  SECTION("series order: timestamp, then value") {
    CHECK(series_before(key(1, "9"), key(2, "1")));
    CHECK(series_before(key(2, "1"), key(2, "1.5")));
    CHECK_FALSE(series_before(key(2, "1"), key(2, "1")));
  }
}

TEST_CASE("Series engine: in-order readings are decided from the state alone", "[series_engine]") {
  const auto metric = counter();
  const SeriesRules rules{metric, kTolerance};
  MemorySeries series;

  auto first = series.store(rules, reading(1000, "100"));
  CHECK_FALSE(first.repeat_of);
  CHECK_FALSE(first.delta);
  CHECK(first.flags == bit(Flag::first_reading));
  CHECK(first.revisions.empty());
  REQUIRE(first.state.tail);
  CHECK(first.state.tail->timestamp_ms == 1000);

  auto second = series.store(rules, reading(2000, "150.25"));
  CHECK(second.delta == "50.25");
  CHECK(second.flags == 0);

  auto reset = series.store(rules, reading(3000, "7"));
  CHECK_FALSE(reset.delta);
  CHECK(reset.flags == bit(Flag::counter_reset));

  auto jump = series.store(rules, reading(4000, "10008"));
  CHECK(jump.delta == "10001");
  CHECK(jump.flags == bit(Flag::suspicious_jump));

  auto negative = series.store(rules, reading(5000, "-1"));
  CHECK_FALSE(negative.delta);
  CHECK(negative.flags == (bit(Flag::counter_reset) | bit(Flag::negative_value)));

  CHECK(series.queries() == 0);
  CHECK(series.state().tail->timestamp_ms == 5000);
  CHECK(series.rows().size() == 5);
}

TEST_CASE("Series engine: gauges get no delta and no neighbour flags", "[series_engine]") {
  const auto metric = gauge();
  const SeriesRules rules{metric, kTolerance};
  MemorySeries series;
  auto first = series.store(rules, reading(2000, "-5"));
  CHECK_FALSE(first.delta);
  CHECK(first.flags == 0);  // no first_reading, no negative_value
  auto earlier = series.store(rules, reading(1000, "3"));
  CHECK_FALSE(earlier.delta);
  CHECK(earlier.flags == bit(Flag::out_of_order));
  CHECK(earlier.revisions.empty());  // the successor's content does not change
}

TEST_CASE("Series engine: future_timestamp and the reading's own flags", "[series_engine]") {
  const auto metric = counter();
  const SeriesRules rules{metric, kTolerance};
  MemorySeries series;
  auto at_tolerance = series.store(rules, reading(1'000'000, "1", 0, 700'000));
  CHECK(at_tolerance.flags == bit(Flag::first_reading));
  auto beyond = series.store(
      rules, reading(2'000'000, "2", bit(Flag::gateway_timestamp) | bit(Flag::dst_gap), 1'699'999));
  CHECK(beyond.flags ==
        (bit(Flag::future_timestamp) | bit(Flag::gateway_timestamp) | bit(Flag::dst_gap)));
}

TEST_CASE("Series engine: a repeat merges into the stored row", "[series_engine]") {
  const auto metric = counter();
  const SeriesRules rules{metric, kTolerance};
  MemorySeries series;
  series.store(rules, reading(1'000'000, "100", bit(Flag::gateway_timestamp), 800'000));
  const auto id = series.rows().front().id;
  CHECK(series.rows().front().flags == (bit(Flag::first_reading) | bit(Flag::gateway_timestamp)));

  SECTION("an identical later copy changes nothing") {
    auto repeat =
        series.store(rules, reading(1'000'000, "100", bit(Flag::gateway_timestamp), 900'000));
    CHECK(repeat.repeat_of == id);
    CHECK(repeat.revisions.empty());
    CHECK(repeat.state.tail->timestamp_ms == 1'000'000);  // unmoved
  }
  SECTION("an earlier copy moves first_received_ms only: no new revision") {
    auto repeat = series.store(rules, reading(1'000'000, "100", 0, 700'000));
    CHECK(repeat.repeat_of == id);
    REQUIRE(repeat.revisions.size() == 1);
    CHECK(repeat.revisions[0].first_received_ms == 700'000);
    CHECK_FALSE(repeat.revisions[0].content_changed);
    CHECK(series.revision(id) == 1);
  }
  SECTION("intrinsic flags unite; only intrinsic ones") {
    auto repeat = series.store(
        rules,
        reading(1'000'000, "100", bit(Flag::clock_unsynced) | bit(Flag::out_of_order), 900'000));
    REQUIRE(repeat.revisions.size() == 1);
    CHECK(repeat.revisions[0].flags ==
          (bit(Flag::first_reading) | bit(Flag::gateway_timestamp) | bit(Flag::clock_unsynced)));
    CHECK(repeat.revisions[0].first_received_ms == 800'000);
    CHECK(repeat.revisions[0].content_changed);
    CHECK(series.revision(id) == 2);
  }
  SECTION("future_timestamp is re-decided from the earliest receive time") {
    auto repeat = series.store(rules, reading(1'000'000, "100", 0, 699'999));
    REQUIRE(repeat.revisions.size() == 1);
    CHECK(repeat.revisions[0].flags ==
          (bit(Flag::first_reading) | bit(Flag::gateway_timestamp) | bit(Flag::future_timestamp)));
    CHECK(repeat.revisions[0].first_received_ms == 699'999);
    // A copy's own future_timestamp does not carry over: the row's earliest
    // receive time decides.
    MemorySeries other;
    other.store(rules, reading(1'000'000, "100", 0, 800'000));
    auto flagged =
        other.store(rules, reading(1'000'000, "100", bit(Flag::future_timestamp), 900'000));
    CHECK(flagged.revisions.empty());
    auto earliest = other.store(rules, reading(1'000'000, "100", 0, 1));
    REQUIRE(earliest.revisions.size() == 1);
    CHECK(earliest.revisions[0].flags == (bit(Flag::first_reading) | bit(Flag::future_timestamp)));
  }
  CHECK(series.rows().size() == 1);
}

TEST_CASE("Series engine: an out-of-order reading revises its successor", "[series_engine]") {
  const auto metric = counter();
  const SeriesRules rules{metric, kTolerance};
  MemorySeries series;
  series.store(rules, reading(1000, "100"));
  series.store(rules, reading(3000, "300"));
  const auto successor = row_at(series, 3000, "300").id;

  auto late = series.store(rules, reading(2000, "180"));
  CHECK(late.delta == "80");
  CHECK(late.flags == bit(Flag::out_of_order));
  REQUIRE(late.revisions.size() == 1);
  CHECK(late.revisions[0].id == successor);
  CHECK(late.revisions[0].delta == "120");
  CHECK(late.revisions[0].flags == 0);
  CHECK(late.revisions[0].content_changed);
  CHECK(late.state.tail->timestamp_ms == 3000);  // older than the tail: unmoved
  CHECK(series.state().tail->timestamp_ms == 3000);

  SECTION("before the first reading: first_reading moves to it") {
    auto earliest = series.store(rules, reading(500, "90"));
    CHECK_FALSE(earliest.delta);
    CHECK(earliest.flags == (bit(Flag::first_reading) | bit(Flag::out_of_order)));
    REQUIRE(earliest.revisions.size() == 1);
    CHECK(earliest.revisions[0].delta == "10");
    CHECK(earliest.revisions[0].flags == 0);
  }
  SECTION("a successor that becomes a reset keeps its other flags") {
    auto high = series.store(rules, reading(2500, "400", bit(Flag::dst_ambiguous)));
    CHECK(high.delta == "220");
    REQUIRE(high.revisions.size() == 1);
    CHECK_FALSE(high.revisions[0].delta);
    CHECK(high.revisions[0].flags == bit(Flag::counter_reset));
    CHECK(row_at(series, 3000, "300").flags == bit(Flag::counter_reset));
    CHECK(series.revision(successor) == 3);
  }
}

TEST_CASE("Series engine: timestamp_conflict marks the whole group", "[series_engine]") {
  const auto metric = counter();
  const SeriesRules rules{metric, kTolerance};
  MemorySeries series;
  series.store(rules, reading(1000, "50"));
  series.store(rules, reading(2000, "100"));
  auto second = series.store(rules, reading(2000, "120"));
  CHECK(second.delta == "20");  // its predecessor is the lower value at the same time
  CHECK(second.flags == bit(Flag::timestamp_conflict));  // same timestamp as the tail: in order
  REQUIRE(second.revisions.size() == 1);
  CHECK(second.revisions[0].id == row_at(series, 2000, "100").id);
  CHECK(second.revisions[0].flags == bit(Flag::timestamp_conflict));
  CHECK(second.revisions[0].delta == "50");
  REQUIRE(second.state.tail);
  CHECK(second.state.tail->value == number("120"));

  auto middle = series.store(rules, reading(2000, "110"));
  CHECK(middle.delta == "10");
  CHECK(middle.flags == bit(Flag::timestamp_conflict));
  REQUIRE(middle.revisions.size() == 1);  // 100 is flagged already; 120 gets a new delta
  CHECK(middle.revisions[0].id == row_at(series, 2000, "120").id);
  CHECK(middle.revisions[0].delta == "10");
  CHECK(middle.revisions[0].flags == bit(Flag::timestamp_conflict));
  CHECK(middle.state.tail->value == number("120"));  // unmoved

  auto lowest = series.store(rules, reading(2000, "40"));
  CHECK_FALSE(lowest.delta);
  CHECK(lowest.flags == (bit(Flag::timestamp_conflict) | bit(Flag::counter_reset)));
  REQUIRE(lowest.revisions.size() == 1);
  CHECK(lowest.revisions[0].delta == "60");  // 100's predecessor is now 40
}

TEST_CASE("Series engine: the anchor (the newest pruned reading)", "[series_engine]") {
  const auto metric = counter();
  const SeriesRules rules{metric, kTolerance};
  SECTION("no stored reading: the next one's predecessor is the anchor") {
    MemorySeries series(anchored(key(5000, "500")));
    auto next = series.store(rules, reading(6000, "600"));
    CHECK(next.delta == "100");
    CHECK(next.flags == 0);
    CHECK(series.queries() == 0);
  }
  SECTION("no stored reading: at or before the anchor is beyond_retention, tail unmoved") {
    MemorySeries series(anchored(key(5000, "500")));
    for (const auto& old : {reading(5000, "500"), reading(4000, "600")}) {
      auto decision = series.store(rules, old);
      CHECK_FALSE(decision.delta);
      CHECK(decision.flags == bit(Flag::beyond_retention));
      CHECK_FALSE(decision.state.tail);
    }
    CHECK_FALSE(series.state().tail);
    auto after = series.store(rules, reading(5000, "501"));
    CHECK(after.delta == "1");
  }
  SECTION("no stored reading: an old reading's repeat merges, a second value conflicts") {
    // The store's unique index refuses a second row with the same timestamp
    // and value (MemorySeries throws like it): a repeat must merge.
    MemorySeries series(anchored(key(5000, "500")));
    series.store(rules, reading(4000, "450"));
    auto repeat = series.store(rules, reading(4000, "450", bit(Flag::gateway_timestamp)));
    CHECK(repeat.repeat_of);
    CHECK(row_at(series, 4000, "450").flags ==
          (bit(Flag::beyond_retention) | bit(Flag::gateway_timestamp)));
    auto other = series.store(rules, reading(4000, "440"));
    CHECK(other.flags == (bit(Flag::beyond_retention) | bit(Flag::timestamp_conflict)));
    CHECK(row_at(series, 4000, "450").flags ==
          (bit(Flag::beyond_retention) | bit(Flag::gateway_timestamp) |
           bit(Flag::timestamp_conflict)));
    CHECK(series.rows().size() == 2);
    CHECK_FALSE(series.state().tail);
  }
  SECTION("with stored readings") {
    MemorySeries series(anchored(key(5000, "500")));
    series.store(rules, reading(8000, "800"));
    auto old = series.store(rules, reading(4000, "450"));
    CHECK_FALSE(old.delta);
    CHECK(old.flags == (bit(Flag::beyond_retention) | bit(Flag::out_of_order)));
    CHECK(old.revisions.empty());  // the successor keeps the anchor as predecessor

    // Between the anchor and the oldest kept reading: the predecessor is the
    // anchor, not the beyond-retention row stored before it.
    auto between = series.store(rules, reading(6000, "650"));
    CHECK(between.delta == "150");
    CHECK(between.flags == bit(Flag::out_of_order));
    REQUIRE(between.revisions.size() == 1);
    CHECK(between.revisions[0].delta == "150");
  }
}

// The order-independence property. Each stream is one series' readings with
// repeats (other receive times and intrinsic flags), several values at one
// timestamp, resets, jumps and future timestamps; every arrival order must
// end in the same rows, deltas, flags (but out_of_order) and first receive
// times. Some streams have an anchor, with readings on both sides of it.
namespace {

struct Stream {
  MetricConfig metric;
  SeriesState initial;
  std::optional<SeriesReading> seed;  // stored before the shuffled readings
  std::vector<SeriesReading> readings;
};

Stream random_stream(std::mt19937_64& random, int index) {
  Stream stream;
  stream.metric = index % 5 == 4 ? gauge() : counter();
  auto uniform = [&](std::int64_t low, std::int64_t high) {
    return std::uniform_int_distribution<std::int64_t>(low, high)(random);
  };
  const int count = static_cast<int>(uniform(3, 30));
  const std::int64_t timestamps = uniform(2, count);  // few timestamps: many conflicts
  const FlagSet intrinsic[] = {0, 0, bit(Flag::gateway_timestamp), bit(Flag::clock_unsynced),
                               bit(Flag::dst_ambiguous) | bit(Flag::leap_second)};
  auto make = [&](std::int64_t slot) {
    const std::int64_t timestamp_ms = 1'000'000 + slot * 100'000;
    // Mostly rising with time, sometimes reset or jumping; whole and decimal values.
    std::int64_t milli = slot * 50'000 + uniform(0, 40'000);
    if (uniform(0, 9) == 0) milli = uniform(-5'000, 5'000);
    if (uniform(0, 9) == 0) milli += 20'000'000;
    std::ostringstream text;
    text << milli / 1000 << '.' << std::abs(milli % 1000);
    if (milli < 0 && milli > -1000) text.str("-" + text.str());
    const std::int64_t received_ms = timestamp_ms + uniform(-600'000, 600'000);
    return SeriesReading{SeriesKey{timestamp_ms, number(text.str())}, intrinsic[uniform(0, 4)],
                         received_ms};
  };
  for (int i = 0; i < count; ++i) {
    if (!stream.readings.empty() && uniform(0, 3) == 0) {
      // A repeat: same timestamp and value, its own receive time and flags.
      auto copy = stream.readings[static_cast<std::size_t>(
          uniform(0, static_cast<std::int64_t>(stream.readings.size()) - 1))];
      copy.received_ms = copy.key.timestamp_ms + uniform(-600'000, 600'000);
      copy.flags = intrinsic[uniform(0, 4)];
      stream.readings.push_back(copy);
    } else {
      stream.readings.push_back(make(uniform(0, timestamps - 1)));
    }
  }
  if (index % 3 == 2) {
    // Pruned up to an anchor in the middle; a reading after everything is
    // stored first (as pruning leaves the newest readings in place).
    const auto anchor_slot = uniform(0, timestamps - 1);
    stream.initial.anchor =
        SeriesKey{1'000'000 + anchor_slot * 100'000, number(std::to_string(anchor_slot * 50 + 20))};
    stream.seed = SeriesReading{SeriesKey{1'000'000 + timestamps * 100'000, number("1000000")}, 0,
                                1'000'000 + timestamps * 100'000};
  }
  return stream;
}

struct FinalRow {
  std::int64_t timestamp_ms;
  std::string value;
  std::optional<std::string> delta;
  FlagSet flags;
  std::int64_t first_received_ms;
  bool operator==(const FinalRow&) const = default;
};

std::ostream& operator<<(std::ostream& out, const FinalRow& row) {
  return out << row.timestamp_ms << ' ' << row.value << " delta=" << row.delta.value_or("null")
             << " flags=" << row.flags << " first_received=" << row.first_received_ms;
}

std::vector<FinalRow> run(const Stream& stream, const std::vector<SeriesReading>& order) {
  const SeriesRules rules{stream.metric, kTolerance};
  MemorySeries series(stream.initial);
  if (stream.seed) series.store(rules, *stream.seed);
  for (const auto& r : order) series.store(rules, r);
  std::vector<FinalRow> rows;
  for (const auto& row : series.rows()) {
    rows.push_back(FinalRow{row.key.timestamp_ms, row.key.value.text(), row.delta,
                            row.flags & ~bit(Flag::out_of_order), row.first_received_ms});
  }
  return rows;
}

}  // namespace

TEST_CASE("Series engine: the outcome does not depend on the arrival order", "[series_engine]") {
  std::mt19937_64 random(20261206);
  for (int s = 0; s < 120; ++s) {
    const Stream stream = random_stream(random, s);
    const auto expected = run(stream, stream.readings);
    // Every reading is stored once, whatever the repeats.
    std::vector<SeriesKey> distinct;
    for (const auto& r : stream.readings) {
      const bool seen = std::any_of(distinct.begin(), distinct.end(), [&](const SeriesKey& k) {
        return k.timestamp_ms == r.key.timestamp_ms && k.value == r.key.value;
      });
      if (!seen) distinct.push_back(r.key);
    }
    REQUIRE(expected.size() == distinct.size() + (stream.seed ? 1 : 0));

    auto order = stream.readings;
    for (int o = 0; o < 100; ++o) {
      std::shuffle(order.begin(), order.end(), random);
      const auto actual = run(stream, order);
      if (actual != expected) {
        std::ostringstream arrival;
        for (const auto& r : order) {
          arrival << r.key.timestamp_ms << ' ' << r.key.value.text() << " flags=" << r.flags
                  << " received=" << r.received_ms << '\n';
        }
        INFO("stream " << s << ", arrival order:\n" << arrival.str());
        REQUIRE(actual == expected);
      }
    }
  }
}
