#include "common/buffer/stored_neighbourhood.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace meter {
namespace {

StoredReading read_row(sqlite::Statement& statement, std::int64_t timestamp_ms) {
  StoredReading row;
  row.id = statement.column_int(0);
  const std::string value_text = statement.column_text(1);
  auto value = Decimal::parse(value_text);
  if (!value) throw std::runtime_error("stored value '" + value_text + "' is not canonical");
  row.key = SeriesKey{timestamp_ms, std::move(*value)};
  row.delta = statement.column_optional_text(2);
  row.flags = static_cast<FlagSet>(statement.column_int(3));
  row.first_received_ms = statement.column_int(4);
  if (!statement.column_is_null(5)) row.delta_from_ms = statement.column_int(5);
  return row;
}

}  // namespace

std::vector<StoredReading> stored_readings_at(sqlite::Statement& measurements_at,
                                              std::int64_t series_id, std::int64_t timestamp_ms) {
  auto& statement = measurements_at;
  std::vector<StoredReading> rows;
  statement.bind(1, series_id).bind(2, timestamp_ms);
  while (statement.step()) rows.push_back(read_row(statement, timestamp_ms));
  statement.reset();
  std::sort(rows.begin(), rows.end(), [](const StoredReading& a, const StoredReading& b) {
    return a.key.value < b.key.value;
  });
  return rows;
}

std::vector<StoredReading> StoredNeighbourhood::at(std::int64_t timestamp_ms) {
  return stored_readings_at(measurements_at_, series_id_, timestamp_ms);
}

// One range query for `count` rows, nearest first, then the farthest
// timestamp's whole group (the limit may cut it), in series order.
std::vector<StoredReading> StoredNeighbourhood::nearest(sqlite::Statement& statement,
                                                        std::int64_t timestamp_ms,
                                                        std::size_t count, bool before) {
  std::vector<StoredReading> rows;
  if (count == 0) return rows;
  statement.bind(1, series_id_).bind(2, timestamp_ms).bind(3, static_cast<std::int64_t>(count));
  while (statement.step()) rows.push_back(read_row(statement, statement.column_int(6)));
  statement.reset();
  if (rows.size() == count) {
    const std::int64_t farthest = rows.back().key.timestamp_ms;
    while (!rows.empty() && rows.back().key.timestamp_ms == farthest) rows.pop_back();
    auto group = stored_readings_at(measurements_at_, series_id_, farthest);
    if (before) std::reverse(group.begin(), group.end());
    for (auto& row : group) rows.push_back(std::move(row));
  }
  // Nearest first -> series order (timestamp, then value).
  if (before) std::reverse(rows.begin(), rows.end());
  std::stable_sort(rows.begin(), rows.end(), [](const StoredReading& a, const StoredReading& b) {
    return series_before(a.key, b.key);
  });
  return rows;
}

std::vector<StoredReading> StoredNeighbourhood::before(std::int64_t timestamp_ms,
                                                       std::size_t count) {
  return nearest(previous_timestamp_, timestamp_ms, count, true);
}

std::vector<StoredReading> StoredNeighbourhood::after(std::int64_t timestamp_ms,
                                                      std::size_t count) {
  return nearest(next_timestamp_, timestamp_ms, count, false);
}

}  // namespace meter
