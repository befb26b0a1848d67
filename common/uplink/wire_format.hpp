// The upload's wire format (docs/PROTOCOL.md, "Upload"): a batch of raw
// events and measurements encoded as the request's JSON envelope, and the
// central's 200 response decoded into what it confirms per record. Pure: the
// HTTP and the bookkeeping live in agent/uplink/ and common/buffer/sync.cpp;
// the records and outcomes themselves in common/model/sync.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/model/flags.hpp"
#include "common/model/sync.hpp"
#include "common/util/result.hpp"

namespace meter {

// The protocol the agent speaks (docs/PROTOCOL.md), and the one it falls back
// to with a central that answers 400 unsupported_protocol_version: version 1
// carries the raw events and the measurements without version 2's flags; the
// agent holds the others until the central is upgraded.
inline constexpr std::string_view kProtocolVersion = "2";
inline constexpr std::string_view kProtocolVersion1 = "1";

// The flags version 2 added: a measurement carrying one cannot travel in version 1.
inline constexpr FlagSet kVersion2Flags =
    flag_bit(Flag::glitch) | flag_bit(Flag::rollback) | flag_bit(Flag::implausible_rate) |
    flag_bit(Flag::gap) | flag_bit(Flag::meter_replaced) | flag_bit(Flag::device_restarted) |
    flag_bit(Flag::period_reset) | flag_bit(Flag::scale_rounded);

struct UplinkEnvelope {
  std::string gateway_id;
  std::string buffer_id;  // of the buffer the raw events come from (and the measurements' raw)
  std::int64_t sent_at_ms = 0;
  // "2", or "1" to a central that does not speak 2 (then no `delta_from`).
  std::string_view protocol_version = kProtocolVersion;
};

// The request body (uncompressed JSON).
std::string encode_batch(const UplinkEnvelope& envelope, const UplinkBatch& batch);
// The JSON text's size of one record (tests; a measurement in version 2), and
// a cheap estimate of it that bounds a batch's size while it is selected
// (exact unless strings need escapes; a 413 splits a batch the estimate let
// grow too big).
std::size_t encoded_size(const UplinkRawEvent& raw);
std::size_t encoded_size(const UplinkMeasurement& measurement);
std::size_t estimated_size(const UplinkRawEvent& raw);
std::size_t estimated_size(const UplinkMeasurement& measurement);

std::string base64_encode(std::string_view bytes);

// Decodes a 200 response to `batch`, sent in `protocol_version` (the central
// answers in the version it was sent). An outcome counts only when its index,
// seq (raw) or event_id and revision (measurement) match what was sent;
// anything else leaves that record `missing`, so it is sent again (harmless:
// the central deduplicates). An unreadable body, or one in another version,
// is an error: nothing confirmed.
Result<IngestResponse> parse_ingest_response(std::string_view body, const UplinkBatch& batch,
                                             std::string_view protocol_version);

// The `error` code and `detail` of a whole-request error body, when it has them.
struct IngestError {
  std::string error;
  std::string detail;
};
IngestError parse_ingest_error(std::string_view body);

}  // namespace meter
