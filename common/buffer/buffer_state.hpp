// Private to the buffer: its prepared statements, its per-series cache, and
// how its public methods turn exceptions into errors.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "common/buffer/buffer.hpp"
#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/series_engine.hpp"

namespace meter {

// Runs the body of a public Buffer method: inside the buffer exceptions only
// unwind a failed transaction (sqlite::Transaction rolls back in its
// destructor); here they become the Error the method returns.
template <class F>
auto guarded(F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return Error{e.what()};
  }
}

struct Buffer::Statements {
  explicit Statements(sqlite::Database& db)
      : append_raw(db, sql::kAppendRaw),
        raw_after(db, sql::kRawAfter),
        raw_content_range(db, sql::kRawContentRange),
        raw_content(db, sql::kRawContent),
        record_outcome(db, sql::kRecordOutcome),
        get_counter(db, sql::kGetCounter),
        add_counter(db, sql::kAddCounter),
        find_series(db, sql::kFindSeries),
        insert_series(db, sql::kInsertSeries),
        series_tail_timestamp(db, sql::kSeriesTailTimestamp),
        measurements_before(db, sql::kMeasurementsBefore),
        measurements_after(db, sql::kMeasurementsAfter),
        measurements_at(db, sql::kMeasurementsAt),
        insert_measurement(db, sql::kInsertMeasurement),
        revise_measurement(db, sql::kReviseMeasurement),
        update_series_unit(db, sql::kUpdateSeriesUnit),
        bump_generation(db, sql::kBumpGeneration) {}

  sqlite::Statement append_raw;
  sqlite::Statement raw_after;
  sqlite::Statement raw_content_range;
  sqlite::Statement raw_content;
  sqlite::Statement record_outcome;
  sqlite::Statement get_counter;
  sqlite::Statement add_counter;
  sqlite::Statement find_series;
  sqlite::Statement insert_series;
  sqlite::Statement series_tail_timestamp;
  sqlite::Statement measurements_before;
  sqlite::Statement measurements_after;
  sqlite::Statement measurements_at;
  sqlite::Statement insert_measurement;
  sqlite::Statement revise_measurement;
  sqlite::Statement update_series_unit;
  sqlite::Statement bump_generation;
};

// A value of the counters table (0 when it has none).
inline std::int64_t read_counter(sqlite::Database& db, std::string_view name) {
  auto statement = db.prepare(sql::kGetCounter);
  statement.bind(1, name);
  return statement.step() ? statement.column_int(0) : 0;
}

// A file's size in bytes; 0 when it does not exist (a WAL not yet created).
inline std::int64_t file_size(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? static_cast<std::int64_t>(info.st_size) : 0;
}

// What the normalizer remembers of a series between readings: its row and
// unit, and the series engine's state (the tail, so that the common case, a
// reading newer than everything stored, needs no query; the anchor). Valid
// only while the transaction that filled it commits; cleared on any failure
// and whenever another connection changed the series (check_series_cache).
struct Buffer::CachedSeries {
  std::int64_t id = 0;
  std::string unit;
  SeriesState state;
  // The scan's state was rebuilt from the stored rows (recover_state): once
  // per load, with the first reading, which brings the metric's rules.
  bool recovered = false;
  std::string device_id;
  std::string metric_type;
  // Sorted by at_ms; loaded with the series (load_boundaries).
  std::vector<SeriesBoundary> boundaries;
  bool boundaries_loaded = false;
};

}  // namespace meter
