#include "common/uplink/outcome.hpp"

#include <algorithm>
#include <utility>

#include "common/uplink/wire_format.hpp"

namespace meter {
namespace {

using Kind = UploadOutcome::Kind;

std::string describe_status(long status, const IngestError& error) {
  std::string text = "HTTP " + std::to_string(status);
  if (!error.error.empty()) text += " " + error.error;
  if (!error.detail.empty()) text += ": " + error.detail;
  return text;
}

UploadOutcome make(Kind kind, std::string reason) {
  UploadOutcome outcome;
  outcome.kind = kind;
  outcome.reason = std::move(reason);
  return outcome;
}

// 413: halves of the batch (records per array and bytes), or, for a single
// record, its quarantine with the central's error code.
UploadOutcome too_big(const UplinkBatch& batch, const IngestError& error, std::string reason,
                      std::optional<std::int64_t> retry_after_ms) {
  if (batch.records() > 1) {
    UploadOutcome outcome = make(Kind::split, std::move(reason));
    const std::size_t largest = std::max(batch.raw_events.size(), batch.measurements.size());
    outcome.split_records = std::max<std::size_t>(1, (largest + 1) / 2);
    std::size_t bytes = 0;
    for (const auto& r : batch.raw_events) bytes += estimated_size(r);
    for (const auto& m : batch.measurements) bytes += estimated_size(m);
    outcome.split_bytes = std::max<std::size_t>(4096, bytes / 2);
    outcome.retry_after_ms = retry_after_ms;
    return outcome;
  }
  UploadOutcome outcome = make(Kind::too_large, std::move(reason));
  const RecordResult rejected{RecordOutcome::rejected,
                              error.error.empty() ? "payload_too_large" : error.error,
                              error.detail};
  outcome.response.raw_events.assign(batch.raw_events.size(), rejected);
  outcome.response.measurements.assign(batch.measurements.size(), rejected);
  return outcome;
}

}  // namespace

UploadOutcome classify_answer(const HttpAnswer& answer, const UplinkBatch& batch,
                              const UploadTarget& target) {
  if (answer.status == 0) {
    std::string what = "cannot reach " + target.url + ": " + answer.transport_error;
    if (answer.tls_failure) {
      what += " (the server's certificate could not be verified against " +
              (target.ca_file.empty() ? std::string("the system's CA certificates")
                                      : "uplink.ca_file " + target.ca_file) +
              ")";
    }
    return make(Kind::retry_later, std::move(what));
  }
  if (answer.status == 200) {
    auto response = parse_ingest_response(answer.body, batch, target.protocol_version);
    if (!response) {
      // Not a protocol answer (a proxy's page?): nothing confirmed, sent again.
      return make(Kind::retry_later,
                  "HTTP 200 without a readable answer: " + response.error().message);
    }
    UploadOutcome outcome = make(Kind::delivered, "");
    outcome.response = std::move(*response);
    return outcome;
  }
  const auto error = parse_ingest_error(answer.body);
  auto what = describe_status(answer.status, error);
  if (answer.status == 413) return too_big(batch, error, std::move(what), answer.retry_after_ms);
  if (answer.status == 401 || answer.status == 403) {
    return make(Kind::auth_failed, std::move(what));
  }
  if (answer.status == 400 && error.error == "unsupported_protocol_version" &&
      target.protocol_version != kProtocolVersion1) {
    return make(Kind::protocol_unsupported, std::move(what));
  }
  // Transient: the same request may pass later. Any other status says the
  // request itself is wrong: sending it unchanged soon would not help.
  const bool transient = answer.status == 408 || answer.status == 429 || answer.status >= 500;
  UploadOutcome outcome = make(transient ? Kind::retry_later : Kind::refused, std::move(what));
  outcome.retry_after_ms = answer.retry_after_ms;
  outcome.server_error = answer.status == 500;
  return outcome;
}

UploadOutcome no_credentials(std::string problem) {
  return make(Kind::auth_failed, std::move(problem));
}

}  // namespace meter
