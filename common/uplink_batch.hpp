// The upload's wire format (docs/PROTOCOL.md, "Upload"): a batch of raw
// events and measurements encoded as the request's JSON envelope, and the
// central's 200 response decoded into what it confirms per record. Pure: the
// HTTP and the bookkeeping live in agent/uplink.cpp and common/buffer_sync.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/buffer.hpp"
#include "common/result.hpp"

namespace meter {

inline constexpr std::string_view kProtocolVersion = "1";

// A raw message as it is uploaded.
struct UplinkRawEvent {
  std::int64_t seq = 0;
  RawMessage message;
  std::optional<std::string> decode_error;  // why it produced no (or not all) measurements
};

// A measurement as it is uploaded; `row_id` names its buffer row.
struct UplinkMeasurement {
  std::int64_t row_id = 0;
  Measurement measurement;
};

struct UplinkBatch {
  std::vector<UplinkRawEvent> raw_events;
  std::vector<UplinkMeasurement> measurements;
  // What is still waiting after this batch (informational, the envelope's backlog).
  std::int64_t backlog_records = 0;
  std::optional<std::int64_t> oldest_received_ms;

  // The raw events after the watermark are the run (raw_run_from, through.raw_seq];
  // requeued ones (at or below the watermark) come before it.
  std::int64_t raw_run_from = 0;
  SyncCursor through;    // where this batch ended: the next one may start after it
  bool limited = false;  // a limit ended it: more may be waiting

  bool empty() const { return raw_events.empty() && measurements.empty(); }
  std::size_t records() const { return raw_events.size() + measurements.size(); }
};

struct UplinkEnvelope {
  std::string gateway_id;
  std::string buffer_id;  // of the buffer the raw events come from (and the measurements' raw)
  std::int64_t sent_at_ms = 0;
};

// The request body (uncompressed JSON).
std::string encode_batch(const UplinkEnvelope& envelope, const UplinkBatch& batch);
// The JSON text of one record (tests), and a cheap estimate of it that bounds
// a batch's size while it is selected (exact unless strings need escapes; a
// 413 splits a batch the estimate let grow too big).
std::size_t encoded_size(const UplinkRawEvent& raw);
std::size_t encoded_size(const UplinkMeasurement& measurement);
std::size_t estimated_size(const UplinkRawEvent& raw);
std::size_t estimated_size(const UplinkMeasurement& measurement);

std::string base64_encode(std::string_view bytes);

enum class RecordOutcome {
  confirmed,  // stored, duplicate or superseded: the central holds it (or something newer)
  rejected,   // invalid: quarantine with the reason, never resend unchanged
  missing,    // the response named no outcome for it (or one that does not match): resend
};

struct RecordResult {
  RecordOutcome outcome = RecordOutcome::missing;
  std::string reason;  // rejected: the central's code
  std::string detail;  // rejected: for people
};

// One result per record of the batch, in request order.
struct IngestResponse {
  std::vector<RecordResult> raw_events;
  std::vector<RecordResult> measurements;
};

// Decodes a 200 response to `batch`. An outcome counts only when its index,
// seq (raw) or event_id and revision (measurement) match what was sent;
// anything else leaves that record `missing`, so it is sent again (harmless:
// the central deduplicates). An unreadable body is an error: nothing confirmed.
Result<IngestResponse> parse_ingest_response(std::string_view body, const UplinkBatch& batch);

// The `error` code and `detail` of a whole-request error body, when it has them.
struct IngestError {
  std::string error;
  std::string detail;
};
IngestError parse_ingest_error(std::string_view body);

}  // namespace meter
