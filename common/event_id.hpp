// Deterministic dedup: event_id = lowercase hex sha256 of
//   device_id "|" timestamp "|" metric_type "|" value
// over the canonical forms (UTF-8): timestamp YYYY-MM-DDTHH:MM:SS.sssZ, value
// in the canonical unit in plain decimal notation. docs/PROTOCOL.md has the rule.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace meter {

using EventId = std::array<unsigned char, 32>;

EventId compute_event_id(std::string_view device_id, std::string_view canonical_timestamp,
                         std::string_view metric_type, std::string_view canonical_value);

std::string to_hex(const EventId& id);

}  // namespace meter
