// decode: turns one raw message payload into readings as sent (no
// normalization yet). A payload that holds no reading is not an error when it
// is one of the non-readings meters publish (e.g. "online"): it is "ignored".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/result.hpp"

namespace meter {

// One reading exactly as the message carried it: all texts, nothing converted.
struct DecodedReading {
  std::string device_id;
  std::optional<std::string>
      timestamp;  // text as sent (number text for epoch); none: use receive time
  std::string metric_type;
  std::string value;  // decimal text as sent
  std::string unit;
  // A mapping's `scale` rounded the value (its exact quotient is no finite
  // decimal); the value as sent stays in the raw log.
  bool rounded = false;
};

struct Decoded {
  std::vector<DecodedReading> readings;
  // Set when the payload is a known non-reading (readings is then empty).
  std::optional<std::string> ignored_reason;
};

// Whether `word` (surrounding whitespace aside) is one of the plain words
// devices publish on the topics their readings share instead of a value:
// "online", "offline", "on", "off", "true", "false", "null", "nan",
// "unavailable", "unknown" (case-insensitive).
bool is_non_reading_word(std::string_view word);

// The seed's JSON format: one object
//   {"device_id": "m1", "timestamp": "2024-01-01T10:00:00Z",
//    "metric_type": "energy", "value": 1234.5, "unit": "kWh"}
// or an array of such objects. `value` is a JSON number or a string holding a
// decimal; `timestamp` a string, a number (epoch formats), or absent/null (the
// receive time is used). Unknown members are ignored. Errors name the member
// and what is wrong with it ("member 'value': expected a number, got true").
Result<Decoded> decode_seed_json(std::string_view payload);

}  // namespace meter
