// The counter rules of docs/QUALITY.md as scenarios on an in-memory series
// (the cases of issue #14, each with the register's real advance), and two
// properties over random streams: the sum of deltas across injected glitches
// is the register's real advance, and deciding reading by reading in any
// arrival order ends where one scan over the whole series does.
#include <date/tz.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/normalize/series_engine.hpp"
#include "common/normalize/series_scan.hpp"
#include "support/memory_series.hpp"

using namespace meter;
using meter::test::MemorySeries;

namespace {

constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kStart = 1'700'000'000'000;  // 2023-11-14T22:13:20Z

Decimal number(const std::string& text) { return *Decimal::parse(text); }
constexpr FlagSet bit(Flag flag) { return flag_bit(flag); }

MetricConfig energy() {
  MetricConfig metric;
  metric.name = "energy";
  metric.kind = MetricKind::counter;
  metric.unit = "kWh";
  return metric;
}

SeriesReading hourly(int hour, const std::string& value) {
  const std::int64_t timestamp_ms = kStart + hour * kHour;
  return SeriesReading{SeriesKey{timestamp_ms, number(value)}, 0, timestamp_ms};
}

struct Row {
  std::string value;
  std::optional<std::string> delta;
  FlagSet flags;
};

std::vector<Row> rows(const MemorySeries& series) {
  std::vector<Row> result;
  for (const auto& row : series.rows()) {
    result.push_back(Row{row.key.value.text(), row.delta, row.flags & kSeriesRuleFlags});
  }
  return result;
}

// Stores `values` hourly, in order.
MemorySeries store_hourly(const MetricConfig& metric, const std::vector<std::string>& values,
                          std::span<const SeriesBoundary> boundaries = {}) {
  MemorySeries series;
  const SeriesRules rules{metric, 300'000, boundaries};
  for (std::size_t i = 0; i < values.size(); ++i) {
    series.store(rules, hourly(static_cast<int>(i), values[i]));
  }
  return series;
}

std::string delta_sum(const MemorySeries& series) {
  Decimal sum;
  for (const auto& row : series.rows()) {
    if (row.delta) sum = add(sum, number(*row.delta)).value();
  }
  return sum.text();
}

void check_row(const Row& row, const std::string& value, std::optional<std::string> delta,
               FlagSet flags) {
  INFO("row " << row.value);
  CHECK(row.value == value);
  CHECK(row.delta == delta);
  CHECK(row.flags == flags);
}

}  // namespace

TEST_CASE("Rules: one reading of 0 is a glitch, the energy is conserved", "[series_rules]") {
  auto series = store_hourly(energy(), {"1000", "1001", "0", "1002", "1003"});
  const auto r = rows(series);
  REQUIRE(r.size() == 5);
  check_row(r[0], "1000", std::nullopt, bit(Flag::first_reading));
  check_row(r[1], "1001", "1", 0);
  check_row(r[2], "0", std::nullopt, bit(Flag::glitch));
  check_row(r[3], "1002", "1", 0);
  check_row(r[4], "1003", "1", 0);
  CHECK(delta_sum(series) == "3");
}

TEST_CASE("Rules: the 0 is a provisional reset until the series returns", "[series_rules]") {
  MemorySeries series;
  const auto metric = energy();
  const SeriesRules rules{metric, 300'000};
  series.store(rules, hourly(0, "1000"));
  series.store(rules, hourly(1, "1001"));
  auto zero = series.store(rules, hourly(2, "0"));
  CHECK(zero.flags == bit(Flag::counter_reset));
  CHECK_FALSE(zero.delta);
  const auto zero_id = series.rows()[2].id;
  auto back = series.store(rules, hourly(3, "1002"));
  CHECK(back.delta == "1");
  REQUIRE(back.revisions.size() == 1);
  CHECK(back.revisions[0].id == zero_id);
  CHECK(back.revisions[0].flags == bit(Flag::glitch));
  CHECK(series.revision(zero_id) == 2);
  CHECK(series.queries() == 0);  // in order: decided from the state alone
}

TEST_CASE("Rules: a corrupt spike beyond the jump threshold is a glitch", "[series_rules]") {
  auto metric = energy();
  metric.jump_threshold = number("100");
  auto series = store_hourly(metric, {"1000", "1001", "99999.9", "1002", "1003"});
  const auto r = rows(series);
  check_row(r[2], "99999.9", std::nullopt, bit(Flag::glitch));
  check_row(r[3], "1002", "1", 0);
  CHECK(delta_sum(series) == "3");
}

TEST_CASE("Rules: last-digit jitter is a glitch, not a reset", "[series_rules]") {
  auto series = store_hourly(energy(), {"1000.001", "1000.003", "1000.002", "1000.004"});
  const auto r = rows(series);
  check_row(r[2], "1000.002", std::nullopt, bit(Flag::glitch));
  check_row(r[3], "1000.004", "0.001", 0);
  CHECK(delta_sum(series) == "0.003");
}

TEST_CASE("Rules: several bad readings in a row within the window", "[series_rules]") {
  auto metric = energy();
  metric.jump_threshold = number("50");
  auto series = store_hourly(metric, {"500", "510", "0", "9999", "505", "520", "530"});
  const auto r = rows(series);
  check_row(r[2], "0", std::nullopt, bit(Flag::glitch));
  check_row(r[3], "9999", std::nullopt, bit(Flag::glitch));
  check_row(r[4], "505", std::nullopt, bit(Flag::glitch));  // a partial drop
  check_row(r[5], "520", "10", 0);
  CHECK(delta_sum(series) == "30");
}

TEST_CASE("Rules: no return within the window decides", "[series_rules]") {
  SECTION("a large drop that stays is a counter_reset") {
    auto series = store_hourly(energy(), {"1000", "1001", "3", "4", "5", "6"});
    const auto r = rows(series);
    check_row(r[2], "3", std::nullopt, bit(Flag::counter_reset));
    check_row(r[3], "4", "1", 0);
    check_row(r[5], "6", "1", 0);
  }
  SECTION("a small drop within rollback_max is a rollback") {
    auto metric = energy();
    metric.rollback_max = number("5");
    auto series = store_hourly(metric, {"1000", "1001", "998", "999", "1000", "1000.5"});
    const auto r = rows(series);
    check_row(r[2], "998", std::nullopt, bit(Flag::rollback));
    check_row(r[3], "999", "1", 0);
    // Until the window has passed it is provisional, and a drop is a reset.
    auto early = store_hourly(metric, {"1000", "1001", "998", "999"});
    check_row(rows(early)[2], "998", std::nullopt, bit(Flag::counter_reset));
  }
  SECTION("a jump the next readings confirm is a suspicious_jump with its delta") {
    auto metric = energy();
    metric.jump_threshold = number("100");
    auto series = store_hourly(metric, {"1000", "1001", "5000", "5001", "5002", "5003"});
    const auto r = rows(series);
    check_row(r[2], "5000", "3999", bit(Flag::suspicious_jump));
    check_row(r[3], "5001", "1", 0);
  }
  SECTION("glitch wins over a jump the next reading seems to confirm") {
    auto metric = energy();
    metric.jump_threshold = number("100");
    auto series = store_hourly(metric, {"1000", "1001", "5000", "5001", "1002"});
    const auto r = rows(series);
    check_row(r[2], "5000", std::nullopt, bit(Flag::glitch));
    check_row(r[3], "5001", std::nullopt, bit(Flag::glitch));
    check_row(r[4], "1002", "1", 0);
  }
  SECTION("glitch_window 0: every drop decides at once") {
    auto metric = energy();
    metric.glitch_window = 0;
    auto series = store_hourly(metric, {"1000", "1001", "0", "1002"});
    const auto r = rows(series);
    check_row(r[2], "0", std::nullopt, bit(Flag::counter_reset));
    check_row(r[3], "1002", "1002", 0);
  }
}

TEST_CASE("Rules: max_rate bounds the advance by the time elapsed", "[series_rules]") {
  auto metric = energy();
  metric.max_rate = number("10");  // kW: at most 10 kWh per hour
  SECTION("a spike faster than the circuit can draw is a glitch") {
    auto series = store_hourly(metric, {"100", "105", "150", "112"});
    check_row(rows(series)[2], "150", std::nullopt, bit(Flag::glitch));
  }
  SECTION("a rise that stays is implausible_rate, delta kept") {
    auto series = store_hourly(metric, {"100", "105", "150", "155", "160", "165"});
    check_row(rows(series)[2], "150", "45", bit(Flag::implausible_rate));
  }
  SECTION("after a silence more is allowed: on course") {
    MemorySeries series;
    const SeriesRules rules{metric, 300'000};
    series.store(rules, hourly(0, "100"));
    series.store(rules, hourly(10, "190"));
    CHECK(rows(series)[1].delta == "90");
    CHECK(rows(series)[1].flags == 0);
  }
}

TEST_CASE("Rules: a long silence is a gap with its whole delta", "[series_rules]") {
  MemorySeries series;
  const auto metric = energy();
  const SeriesRules rules{metric, 300'000};
  for (int hour = 0; hour < 6; ++hour) {
    series.store(rules, hourly(hour, std::to_string(1000 + hour)));
  }
  auto back = series.store(rules, hourly(5 + 72, "1100"));  // three days silent
  CHECK(back.delta == "95");
  CHECK(back.flags == bit(Flag::gap));
  CHECK(back.delta_from_ms == kStart + 5 * kHour);
  // Ten intervals is not a gap (gap_factor 10: more than ten).
  MemorySeries steady;
  for (int hour = 0; hour < 6; ++hour) steady.store(rules, hourly(hour, std::to_string(hour)));
  CHECK(steady.store(rules, hourly(15, "20")).flags == 0);
  // Too few intervals to learn a pace: no gap.
  MemorySeries young;
  young.store(rules, hourly(0, "1"));
  young.store(rules, hourly(1, "2"));
  CHECK(young.store(rules, hourly(500, "3")).flags == 0);
}

TEST_CASE("Rules: direction net registers fall without resets", "[series_rules]") {
  auto metric = energy();
  metric.direction = Direction::net;
  auto series = store_hourly(metric, {"100", "90", "95", "80"});
  const auto r = rows(series);
  check_row(r[1], "90", "-10", 0);
  check_row(r[2], "95", "5", 0);
  check_row(r[3], "80", "-15", 0);
  metric.max_rate = number("20");
  auto spiky = store_hourly(metric, {"100", "90", "-900", "85"});
  check_row(rows(spiky)[2], "-900", std::nullopt, bit(Flag::glitch));
  check_row(rows(spiky)[3], "85", "-5", 0);
}

TEST_CASE("Rules: a daily register resets at local midnight", "[series_rules]") {
  auto metric = energy();
  metric.period = Period::daily;
  metric.period_zone_name = "Europe/Berlin";
  metric.period_zone = date::locate_zone("Europe/Berlin");
  // 2024-03-05 20:00 UTC = 21:00 Berlin; hourly to 02:00 Berlin.
  const std::int64_t base = 1'709'668'800'000;
  MemorySeries series;
  const SeriesRules rules{metric, 300'000};
  const std::vector<std::string> values = {"7.5", "7.9", "8.0", "0.1", "0.3", "0.4"};
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::int64_t t = base + static_cast<std::int64_t>(i) * kHour;
    series.store(rules, SeriesReading{SeriesKey{t, number(values[i])}, 0, t});
  }
  const auto r = rows(series);
  check_row(r[3], "0.1", "0.1", bit(Flag::period_reset));      // 00:00 Berlin
  CHECK(series.rows()[3].delta_from_ms == 1'709'679'600'000);  // 2024-03-05T23:00:00Z
  check_row(r[4], "0.3", "0.2", 0);
  // A reset at any other time is a counter_reset.
  MemorySeries noon;
  const std::vector<std::string> day = {"1", "2", "3", "0.1", "0.2", "0.3", "0.4"};
  for (std::size_t i = 0; i < day.size(); ++i) {
    const std::int64_t t = base - 10 * kHour + static_cast<std::int64_t>(i) * kHour;
    noon.store(rules, SeriesReading{SeriesKey{t, number(day[i])}, 0, t});
  }
  check_row(rows(noon)[3], "0.1", std::nullopt, bit(Flag::counter_reset));
}

TEST_CASE("Rules: a replacement starts a new epoch, never a reset", "[series_rules]") {
  const std::vector<SeriesBoundary> replaced = {SeriesBoundary{
      kStart + 3 * kHour, SeriesBoundary::Kind::replacement, number("1003.5"), number("0")}};
  auto series = store_hourly(energy(), {"1000", "1001", "1003", "0.5", "1.5"}, replaced);
  const auto r = rows(series);
  // The old register's last stretch (1003 -> 1003.5) and the new one's (0 -> 0.5).
  check_row(r[3], "0.5", "1", bit(Flag::meter_replaced));
  check_row(r[4], "1.5", "1", 0);
  CHECK(delta_sum(series) == "5");  // 1 + 2 + (0.5 + 0.5) + 1
  const std::vector<SeriesBoundary> bare = {
      SeriesBoundary{kStart + 3 * kHour, SeriesBoundary::Kind::replacement, {}, {}}};
  auto unknown = store_hourly(energy(), {"1000", "1001", "1003", "0.5", "1.5"}, bare);
  check_row(rows(unknown)[3], "0.5", std::nullopt, bit(Flag::meter_replaced));
  // A glitch just before the replacement cannot return across it.
  auto edge = store_hourly(energy(), {"1000", "1001", "5", "0.5", "1.5"}, bare);
  check_row(rows(edge)[2], "5", std::nullopt, bit(Flag::counter_reset));
}

TEST_CASE("Rules: restart evidence: a drop after a restart is never a glitch", "[series_rules]") {
  auto metric = energy();
  metric.rollback_max = number("2");
  const std::vector<SeriesBoundary> restarted = {
      SeriesBoundary{kStart + 2 * kHour + 1, SeriesBoundary::Kind::restart, {}, {}}};
  auto series = store_hourly(metric, {"1000", "1001", "1002", "1000.5", "1003"}, restarted);
  const auto r = rows(series);
  check_row(r[3], "1000.5", std::nullopt, bit(Flag::device_restarted) | bit(Flag::rollback));
  check_row(r[4], "1003", "2.5", 0);
  auto reset = store_hourly(metric, {"1000", "1001", "1002", "3", "1003"}, restarted);
  check_row(rows(reset)[3], "3", std::nullopt,
            bit(Flag::device_restarted) | bit(Flag::counter_reset));
  check_row(rows(reset)[4], "1003", "1000", 0);
  auto survived = store_hourly(metric, {"1000", "1001", "1002", "1004", "1005"}, restarted);
  check_row(rows(survived)[3], "1004", "2", bit(Flag::device_restarted));
}

TEST_CASE("Rules: a late reading re-decides its neighbours", "[series_rules]") {
  MemorySeries series;
  const auto metric = energy();
  const SeriesRules rules{metric, 300'000};
  for (const auto& [hour, value] : std::vector<std::pair<int, std::string>>{
           {0, "1000"}, {1, "1001"}, {2, "0"}, {3, "1"}, {4, "2"}, {5, "3"}}) {
    series.store(rules, hourly(hour, value));
  }
  check_row(rows(series)[2], "0", std::nullopt, bit(Flag::counter_reset));
  // 1001.5 arriving late at hour 2.5 is not a return (it is before the 0).
  // 1002 at hour 3.5 is: the 0 and 1 at hours 2 and 3 become glitches.
  series.store(rules, SeriesReading{SeriesKey{kStart + 3 * kHour + kHour / 2, number("1002")}, 0,
                                    kStart + 7 * kHour});
  const auto r = rows(series);
  check_row(r[2], "0", std::nullopt, bit(Flag::glitch));
  check_row(r[3], "1", std::nullopt, bit(Flag::glitch));
  check_row(r[4], "1002", "1", 0);
  check_row(r[5], "2", std::nullopt, bit(Flag::counter_reset));
}

// Conservation and order independence over random streams.
namespace {

struct TrueStream {
  std::vector<SeriesReading> readings;
  Decimal advance;  // the register's real advance over the stream
};

// A register read hourly with glitches: drops to 0, partial drops, spikes and
// last-digit jitter, up to two bad readings in a row, never at the ends.
TrueStream glitchy_stream(std::mt19937_64& random) {
  auto uniform = [&](std::int64_t low, std::int64_t high) {
    return std::uniform_int_distribution<std::int64_t>(low, high)(random);
  };
  TrueStream stream;
  std::int64_t register_milli = uniform(0, 10'000'000);
  std::int64_t first = 0;
  const int count = static_cast<int>(uniform(8, 40));
  int bad_run = 0;
  auto text = [](std::int64_t milli) {
    std::ostringstream out;
    out << milli / 1000 << '.' << (milli % 1000 < 100 ? (milli % 1000 < 10 ? "00" : "0") : "")
        << milli % 1000;
    return out.str();
  };
  for (int i = 0; i < count; ++i) {
    register_milli += uniform(0, 3'000);  // at most 3 kWh an hour
    if (i == 0) first = register_milli;
    std::int64_t shown = register_milli;
    const bool may_be_bad = i > 1 && i < count - 1 && bad_run < 2;
    if (may_be_bad && uniform(0, 4) == 0) {
      switch (uniform(0, 3)) {
        case 0:
          shown = 0;
          break;
        case 1:
          shown = register_milli - uniform(1, register_milli / 2 + 1);
          break;
        // Beyond what 3 kW can add in the 3 hours back to the last good reading.
        case 2:
          shown = register_milli + uniform(20'000, 90'000'000);
          break;
        default:
          shown = register_milli - uniform(1, 9);
          break;
      }
      shown = std::max<std::int64_t>(shown, 0);
      ++bad_run;
    } else {
      bad_run = 0;
    }
    const std::int64_t t = kStart + i * kHour;
    stream.readings.push_back(SeriesReading{SeriesKey{t, number(text(shown))}, 0, t});
  }
  stream.advance = number(text(register_milli - first));
  return stream;
}

}  // namespace

TEST_CASE("Rules property: the deltas add up to the register's real advance, in any order",
          "[series_rules]") {
  auto metric = energy();
  metric.max_rate = number("3");  // the circuit's most: 3 kW
  const SeriesRules rules{metric, 300'000};
  std::mt19937_64 random(14);
  for (int s = 0; s < 150; ++s) {
    auto stream = glitchy_stream(random);
    std::vector<std::vector<Row>> outcomes;
    auto order = stream.readings;
    for (int o = 0; o < 30; ++o) {
      if (o > 0) std::shuffle(order.begin(), order.end(), random);
      MemorySeries series;
      for (const auto& r : order) series.store(rules, r);
      INFO("stream " << s << " order " << o);
      std::ostringstream dump;
      for (const auto& row : series.rows()) {
        dump << (row.key.timestamp_ms - kStart) / kHour << ' ' << row.key.value.text() << ' '
             << row.delta.value_or("-") << ' ' << join_flags(row.flags, ';') << '\n';
      }
      INFO(dump.str());
      CHECK(delta_sum(series) == stream.advance.text());
      auto final_rows = rows(series);
      for (auto& row : final_rows) row.flags &= kSeriesRuleFlags;
      outcomes.push_back(std::move(final_rows));
    }
    for (const auto& outcome : outcomes) {
      REQUIRE(outcome.size() == outcomes.front().size());
      for (std::size_t i = 0; i < outcome.size(); ++i) {
        CHECK(outcome[i].delta == outcomes.front()[i].delta);
        CHECK(outcome[i].flags == outcomes.front()[i].flags);
      }
    }
  }
}

TEST_CASE("Rules property: reading by reading ends where one scan of the whole series does",
          "[series_rules]") {
  std::mt19937_64 random(1406);
  for (int s = 0; s < 150; ++s) {
    auto metric = energy();
    metric.glitch_window = static_cast<std::size_t>(s % 4);
    if (s % 3 == 0) metric.jump_threshold = number("50");
    if (s % 3 == 1) metric.max_rate = number("2");
    if (s % 5 == 0) metric.rollback_max = number("1");
    const SeriesRules rules{metric, 300'000};
    auto stream = glitchy_stream(random);
    std::shuffle(stream.readings.begin(), stream.readings.end(), random);
    MemorySeries series;
    for (const auto& r : stream.readings) series.store(rules, r);

    SeriesScan scan(metric, {}, ScanStart{});
    for (const auto& row : series.rows()) scan.feed(ScanReading{row.id, row.key});
    scan.finish();
    INFO("stream " << s);
    REQUIRE(scan.decided().size() == series.rows().size());
    for (const auto& [id, verdict] : scan.decided()) {
      for (const auto& row : series.rows()) {
        if (row.id != id) continue;
        INFO("row " << row.key.timestamp_ms << " " << row.key.value.text());
        CHECK((row.flags & kSeriesRuleFlags) == verdict.flags);
        CHECK(row.delta == (verdict.delta ? std::optional(verdict.delta->text()) : std::nullopt));
        CHECK(row.delta_from_ms == verdict.delta_from_ms);
      }
    }
  }
}
