// Deterministic dedup: event_id = lowercase hex sha256 of
//   device_id "|" timestamp "|" metric_type "|" value
// over the canonical forms (UTF-8): timestamp YYYY-MM-DDTHH:MM:SS.sssZ, value
// in the canonical unit in plain decimal notation. docs/PROTOCOL.md has the rule.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace meter {

using EventId = std::array<unsigned char, 32>;

EventId compute_event_id(std::string_view device_id, std::string_view canonical_timestamp,
                         std::string_view metric_type, std::string_view canonical_value);

std::string to_hex(const EventId& id);

// The buffer stores event_ids as 32-byte blobs: their hex (a shorter blob is
// padded with zeros), and the id of a lowercase hex text (none if it is not one).
std::string hex_of_blob(std::string_view blob);
std::optional<EventId> event_id_of_hex(std::string_view hex);

}  // namespace meter
