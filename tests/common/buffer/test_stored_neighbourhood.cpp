// The buffer's SeriesNeighbourhood answers what the series engine asks as the
// stored measurements say: the rows at a timestamp, and the nearest `count`
// rows on each side in series order, across timestamps holding several
// values, and only of the series asked about.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/buffer/stored_neighbourhood.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using meter::test::BufferFixture;
using meter::test::seed_payload;

namespace {

struct Row {
  std::int64_t timestamp_ms;
  std::string value;
  std::optional<std::string> delta;
  FlagSet flags;
  bool operator==(const Row&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Row& row) {
  return out << row.timestamp_ms << ' ' << row.value << " delta=" << row.delta.value_or("null")
             << " flags=" << row.flags;
}

std::vector<Row> rows(const std::vector<StoredReading>& readings) {
  std::vector<Row> result;
  for (const auto& r : readings) {
    result.push_back(Row{r.key.timestamp_ms, r.key.value.text(), r.delta, r.flags});
  }
  return result;
}

}  // namespace

TEST_CASE("StoredNeighbourhood: the rows at, before and after a timestamp, in series order",
          "[buffer][series_engine]") {
  BufferFixture fixture;
  // m1's readings: several values at 01:00 and 03:00, one at 02:00 and 05:00.
  const std::vector<std::pair<std::string, std::string>> m1 = {
      {"2024-03-01T03:00:00Z", "300"},   {"2024-03-01T01:00:00Z", "120"},
      {"2024-03-01T01:00:00Z", "100"},   {"2024-03-01T05:00:00Z", "500"},
      {"2024-03-01T03:00:00Z", "290.5"}, {"2024-03-01T02:00:00Z", "200"},
      {"2024-03-01T01:00:00Z", "110"},   {"2024-03-01T03:00:00Z", "310"}};
  for (const auto& [ts, value] : m1) fixture.append(seed_payload("m1", ts, "energy", value, "kWh"));
  // Another series in between, which must never show.
  for (const auto& ts : {"2024-03-01T00:30:00Z", "2024-03-01T02:00:00Z", "2024-03-01T04:00:00Z",
                         "2024-03-01T06:00:00Z"}) {
    fixture.append(seed_payload("m2", std::string(ts), "energy", "7", "kWh"));
    fixture.append(seed_payload("m1", std::string(ts), "power", "1", "kW"));
  }
  fixture.normalize();

  std::vector<Row> expected;
  for (const auto& m : fixture.measurements()) {
    if (m.device_id == "m1" && m.metric_type == "energy") {
      expected.push_back(Row{m.timestamp_ms, m.value, m.delta, m.flags});
    }
  }
  std::sort(expected.begin(), expected.end(), [](const Row& a, const Row& b) {
    return series_before(SeriesKey{a.timestamp_ms, *Decimal::parse(a.value)},
                         SeriesKey{b.timestamp_ms, *Decimal::parse(b.value)});
  });
  REQUIRE(expected.size() == m1.size());

  sqlite::Database db(fixture.config().buffer.path);
  auto find_series = db.prepare(sql::kFindSeries);
  find_series.bind(1, std::string_view("m1")).bind(2, std::string_view("energy"));
  REQUIRE(find_series.step());
  const std::int64_t series_id = find_series.column_int(0);
  find_series.reset();
  auto measurements_at = db.prepare(sql::kMeasurementsAt);
  auto previous_timestamp = db.prepare(sql::kMeasurementsBefore);
  auto next_timestamp = db.prepare(sql::kMeasurementsAfter);
  StoredNeighbourhood neighbourhood(measurements_at, previous_timestamp, next_timestamp, series_id);

  const std::int64_t hour = 3'600'000;
  const std::int64_t midnight = 1709251200000;  // 2024-03-01T00:00:00Z
  for (std::int64_t probe = midnight; probe <= midnight + 6 * hour; probe += hour / 2) {
    INFO("probe " << format_timestamp(probe));
    std::vector<Row> at;
    std::vector<Row> before;
    std::vector<Row> after;
    for (const auto& row : expected) {
      if (row.timestamp_ms == probe) at.push_back(row);
      if (row.timestamp_ms < probe) before.push_back(row);
      if (row.timestamp_ms > probe) after.push_back(row);
    }
    CHECK(rows(neighbourhood.at(probe)) == at);
    for (std::size_t count = 0; count <= expected.size() + 1; ++count) {
      INFO("count " << count);
      // At least `count` rows, whole timestamps: the group of the last row
      // counted comes whole.
      std::size_t before_count = std::min(count, before.size());
      while (before_count > 0 && before_count < before.size() &&
             before[before.size() - before_count - 1].timestamp_ms ==
                 before[before.size() - before_count].timestamp_ms) {
        ++before_count;
      }
      std::size_t after_count = std::min(count, after.size());
      while (after_count > 0 && after_count < after.size() &&
             after[after_count].timestamp_ms == after[after_count - 1].timestamp_ms) {
        ++after_count;
      }
      const auto nearest_before =
          std::vector<Row>(before.end() - static_cast<std::ptrdiff_t>(before_count), before.end());
      const auto nearest_after =
          std::vector<Row>(after.begin(), after.begin() + static_cast<std::ptrdiff_t>(after_count));
      CHECK(rows(neighbourhood.before(probe, count)) == nearest_before);
      CHECK(rows(neighbourhood.after(probe, count)) == nearest_after);
    }
  }
}
