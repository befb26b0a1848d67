// What the buffer and the central exchange: a batch of raw events and
// measurement revisions selected for upload, and what the central answered
// for each record. The buffer selects and applies them (common/buffer/sync.cpp);
// the wire format encodes and decodes them (common/uplink/wire_format.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/model/measurement.hpp"
#include "common/model/raw_message.hpp"

namespace meter {

// Where a batch ended, so that the next one can be selected while it is still
// in flight: only records after it (raw seq, measurement row id). Zero: from
// the start (the watermark, the first unsynced measurement).
struct SyncCursor {
  std::int64_t raw_seq = 0;
  std::int64_t measurement_id = 0;
};

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

}  // namespace meter
