// Operator events: what an operator records about a meter (today: its
// replacement, `meter-agent meter replace`), kept as raw messages with the
// reserved topic kOperatorTopic so they are audited, uploaded and kept by
// renormalize like everything else (docs/PROTOCOL.md, "Operator events").
// Pure: the payload's format and the rule "for one identity the record with
// the highest seq wins"; the buffer stores and lists them
// (Buffer::operator_events), the series engine uses them as boundaries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/normalize/decimal.hpp"
#include "common/util/result.hpp"

namespace meter {

// MQTT never delivers `$` topics to `#` or `+` subscriptions, and the config
// refuses mappings for topics starting with `$meter-agent` (config.hpp).
inline constexpr std::string_view kOperatorTopic = "$meter-agent/operator";
inline constexpr std::string_view kMeterReplaced = "meter_replaced";

struct OperatorEvent {
  std::string device_id;               // canonical
  std::string metric_type;             // a counter metric of the config
  std::int64_t at_ms = 0;              // readings at or after it belong to the new meter
  std::optional<Decimal> old_final;    // the old register's last value
  std::optional<Decimal> new_initial;  // the new register's value at `at`
  std::int64_t recorded_ms = 0;        // when the operator recorded it (informational)
  bool withdrawn = false;              // a retraction of the event with this identity
  std::int64_t seq = 0;                // the raw message it was read from (0: not stored)

  // Lowercase hex SHA-256 of "meter_replaced\0device_id\0metric_type\0at":
  // the same replacement always has the same identity.
  std::string identity() const;
  // What repeating a command compares: identity, values and withdrawn, not
  // recorded_ms or seq.
  bool same_content(const OperatorEvent& other) const;
};

// The raw message's payload: compact JSON, keys sorted (docs/PROTOCOL.md).
std::string encode_operator_event(const OperatorEvent& event);

// Reads a payload back; every field checked (canonical forms, the identity
// matching the fields). `seq` stays 0.
Result<OperatorEvent> parse_operator_event(std::string_view payload);

// Of records in seq order, the latest per identity (withdrawn ones included),
// sorted by (device_id, metric_type, at_ms).
std::vector<OperatorEvent> latest_operator_events(const std::vector<OperatorEvent>& records);

// Why `device_id` is not canonical (PROTOCOL.md "device_id": exactly as sent,
// non-empty, at most 256 bytes, valid UTF-8, no control characters), or none.
std::optional<std::string> device_id_problem(std::string_view device_id);

}  // namespace meter
