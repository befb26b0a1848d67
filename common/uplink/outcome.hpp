// What one upload request came to (docs/PROTOCOL.md, "Whole-request errors"):
// the HTTP answer the transport got for a batch, classified into exactly one
// outcome the uplink acts on. Pure: the uplink (agent/uplink/uplink.cpp) does
// the effects, the buffer the bookkeeping, the backoff policy its arithmetic
// (common/uplink/backoff.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/model/sync.hpp"
#include "common/uplink/wire_format.hpp"

namespace meter {

// One HTTP answer as a transport got it (agent/uplink/http_client.hpp).
struct HttpAnswer {
  // 0: no HTTP response (connection refused or reset, timeout, TLS failure).
  long status = 0;
  std::string body;
  std::string transport_error;  // when status is 0: what the transport said
  // Retry-After, delta-seconds or an HTTP date, already turned into a wait by
  // the transport (libcurl parses both forms); absent, or not positive: none.
  std::optional<std::int64_t> retry_after_ms;
  std::int64_t bytes_sent = 0;  // request body bytes put on the wire
  bool tls_failure = false;     // the server's certificate could not be verified (or TLS failed)
};

// What the answer means for the batch and the uploads after it.
struct UploadOutcome {
  enum class Kind {
    // A 200 the agent can read: per record confirmed, rejected (quarantine)
    // or missing (sent again), in `response`.
    delivered,
    // No answer, a timeout, 408, 429, 5xx, or a 200 without a readable body:
    // nothing was stored; the batch is sent again after a backoff, never
    // sooner than `retry_after_ms`.
    retry_later,
    // 413 for a batch of several records: sent again in halves, at most
    // `split_records` per array and `split_bytes` per request.
    split,
    // 413 for a single record: it can never be accepted as it is; `response`
    // rejects it with the central's error code (quarantined, not dropped).
    too_large,
    // 401/403: the central refuses the token; uploads stop until it changes.
    auth_failed,
    // Any other status (400, 404, 422, 3xx, 201...): the central refused the
    // whole batch as invalid, a bug on one side: the longest backoff, nothing
    // dropped, never sooner than `retry_after_ms`.
    refused,
    // 400 unsupported_protocol_version to a version 2 request: an older
    // central. The agent falls back to version 1 and holds what 1 cannot
    // carry (docs/PROTOCOL.md, "Versions").
    protocol_unsupported,
  };

  Kind kind = Kind::retry_later;
  std::string reason;  // all but delivered: for logs, status and metrics
  IngestResponse response;
  std::optional<std::int64_t> retry_after_ms;
  std::size_t split_records = 0;
  std::size_t split_bytes = 0;
  // retry_later for an HTTP 500 exactly: the central failed on this request,
  // perhaps because of a record in it (poison, common/uplink/isolation.hpp);
  // 502/503/504 and no answer at all are outages and never set it.
  bool server_error = false;
};

// What the request was, for the reason given when there was no answer.
struct UploadTarget {
  std::string url;
  std::string ca_file;                             // empty: the system's CA certificates
  std::string protocol_version{kProtocolVersion};  // the request's
};

// Classifies `answer`, the answer to a request carrying `batch`.
UploadOutcome classify_answer(const HttpAnswer& answer, const UplinkBatch& batch,
                              const UploadTarget& target);

// An outcome the agent decides itself, before any request: no token to send.
UploadOutcome no_credentials(std::string problem);

}  // namespace meter
