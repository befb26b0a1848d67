// A series' stored measurements as the series engine asks for them
// (SeriesNeighbourhood), read with the buffer's prepared statements in the
// caller's transaction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/buffer/sqlite.hpp"
#include "common/normalize/series_engine.hpp"

namespace meter {

// The readings of a series at one timestamp (kMeasurementsAt), in series order.
std::vector<StoredReading> stored_readings_at(sqlite::Statement& measurements_at,
                                              std::int64_t series_id, std::int64_t timestamp_ms);

// One range query per side (kMeasurementsBefore, kMeasurementsAfter), whole
// timestamps.
class StoredNeighbourhood final : public SeriesNeighbourhood {
 public:
  StoredNeighbourhood(sqlite::Statement& measurements_at, sqlite::Statement& previous_timestamp,
                      sqlite::Statement& next_timestamp, std::int64_t series_id)
      : measurements_at_(measurements_at),
        previous_timestamp_(previous_timestamp),
        next_timestamp_(next_timestamp),
        series_id_(series_id) {}

  std::vector<StoredReading> at(std::int64_t timestamp_ms) override;
  std::vector<StoredReading> before(std::int64_t timestamp_ms, std::size_t count) override;
  std::vector<StoredReading> after(std::int64_t timestamp_ms, std::size_t count) override;

 private:
  std::vector<StoredReading> nearest(sqlite::Statement& statement, std::int64_t timestamp_ms,
                                     std::size_t count, bool before);
  sqlite::Statement& measurements_at_;
  sqlite::Statement& previous_timestamp_;
  sqlite::Statement& next_timestamp_;
  std::int64_t series_id_;
};

}  // namespace meter
