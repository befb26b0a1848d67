// A stored measurement: one distinct event of a series with its delta, flags
// and sync state, as the buffer keeps it and the uplink sends it. Values are
// the canonical decimal texts (common/normalize/decimal.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/model/flags.hpp"

namespace meter {

struct Measurement {
  std::string event_id;  // lowercase hex
  std::string device_id;
  std::string metric_type;
  std::int64_t timestamp_ms = 0;
  std::string value;  // canonical decimal text
  std::string unit;
  std::optional<std::string>
      delta;  // canonical decimal text, none for first readings, resets, gauges
  FlagSet flags = 0;
  // The timestamp of the reading the delta is measured from (the series' last
  // good reading); none when the delta is none (or not yet recorded).
  std::optional<std::int64_t> delta_from_ms;
  std::int64_t revision = 1;         // rises whenever delta or flags change
  std::int64_t synced_revision = 0;  // highest revision the central side confirmed
  std::int64_t raw_seq = 0;          // the raw message that first carried it
  std::int64_t first_received_ms = 0;
};

}  // namespace meter
