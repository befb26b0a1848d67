#include "common/buffer/stored_neighbourhood.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace meter {
namespace {

// The nearest timestamp on one side (a max() or min() that is NULL when there
// is none).
std::optional<std::int64_t> nearest_timestamp(sqlite::Statement& statement, std::int64_t series_id,
                                              std::int64_t timestamp_ms) {
  std::optional<std::int64_t> result;
  statement.bind(1, series_id).bind(2, timestamp_ms);
  if (statement.step() && !statement.column_is_null(0)) result = statement.column_int(0);
  statement.reset();
  return result;
}

}  // namespace

std::vector<StoredReading> stored_readings_at(sqlite::Statement& measurements_at,
                                              std::int64_t series_id, std::int64_t timestamp_ms) {
  auto& statement = measurements_at;
  std::vector<StoredReading> rows;
  statement.bind(1, series_id).bind(2, timestamp_ms);
  while (statement.step()) {
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
    rows.push_back(std::move(row));
  }
  statement.reset();
  std::sort(rows.begin(), rows.end(), [](const StoredReading& a, const StoredReading& b) {
    return a.key.value < b.key.value;
  });
  return rows;
}

std::vector<StoredReading> StoredNeighbourhood::at(std::int64_t timestamp_ms) {
  return stored_readings_at(measurements_at_, series_id_, timestamp_ms);
}

std::vector<StoredReading> StoredNeighbourhood::before(std::int64_t timestamp_ms,
                                                       std::size_t count) {
  std::vector<StoredReading> result;  // nearest first while collecting
  while (result.size() < count) {
    const auto previous = nearest_timestamp(previous_timestamp_, series_id_, timestamp_ms);
    if (!previous) break;
    auto rows = stored_readings_at(measurements_at_, series_id_, *previous);
    // Whole timestamps: a group is never cut.
    for (auto row = rows.rbegin(); row != rows.rend(); ++row) {
      result.push_back(std::move(*row));
    }
    timestamp_ms = *previous;
  }
  std::reverse(result.begin(), result.end());
  return result;
}

std::vector<StoredReading> StoredNeighbourhood::after(std::int64_t timestamp_ms,
                                                      std::size_t count) {
  std::vector<StoredReading> result;
  while (result.size() < count) {
    const auto next = nearest_timestamp(next_timestamp_, series_id_, timestamp_ms);
    if (!next) break;
    auto rows = stored_readings_at(measurements_at_, series_id_, *next);
    for (auto row = rows.begin(); row != rows.end(); ++row) {
      result.push_back(std::move(*row));
    }
    timestamp_ms = *next;
  }
  return result;
}

}  // namespace meter
