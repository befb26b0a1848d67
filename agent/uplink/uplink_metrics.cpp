#include "agent/uplink/uplink_metrics.hpp"

#include <algorithm>
#include <utility>

#include "agent/ops/prometheus.hpp"

namespace meter::agent {

using prometheus::metric;

void UplinkMetrics::set_last_error(std::string error) {
  std::lock_guard lock(mutex_);
  last_error_ = std::move(error);
}

std::string UplinkMetrics::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

std::string UplinkMetrics::render_prometheus(std::int64_t now) const {
  std::string out;
  metric(out, "meter_agent_uplink_enabled", "gauge", "1 when uplink.url is configured",
         enabled ? 1 : 0);
  metric(out, "meter_agent_uplink_requests_total", "counter", "upload requests sent",
         requests.load());
  metric(out, "meter_agent_uplink_requests_in_flight", "gauge",
         "upload requests waiting for their answer (up to uplink.max_in_flight)", in_flight.load());
  metric(out, "meter_agent_uplink_request_failures_total", "counter",
         "upload requests without a 200 (connection errors, timeouts, non-200 statuses)",
         request_failures.load());
  metric(out, "meter_agent_uplink_consecutive_failures", "gauge",
         "failed requests since the last 200", consecutive_failures.load());
  metric(out, "meter_agent_uplink_raw_confirmed_total", "counter",
         "raw events the central confirmed (stored or duplicate)", raw_confirmed.load());
  metric(out, "meter_agent_uplink_measurements_confirmed_total", "counter",
         "measurement revisions the central confirmed (stored, duplicate or superseded)",
         measurements_confirmed.load());
  metric(out, "meter_agent_uplink_rejected_total", "counter",
         "records the central rejected (quarantined)", rejected.load());
  metric(out, "meter_agent_uplink_unanswered_total", "counter",
         "records a 200 response named no matching outcome for (sent again)", missing.load());
  metric(out, "meter_agent_uplink_splits_total", "counter", "batches halved after a 413",
         splits.load());
  metric(out, "meter_agent_uplink_bytes_sent_total", "counter",
         "request body bytes sent (after gzip)", bytes_sent.load());
  metric(out, "meter_agent_uplink_bytes_uncompressed_total", "counter",
         "request body bytes before gzip", bytes_uncompressed.load());
  metric(out, "meter_agent_uplink_auth_failed", "gauge",
         "1 while the central refuses the token (401/403): nothing is uploaded",
         auth_failed ? 1 : 0);
  metric(out, "meter_agent_uplink_last_success_timestamp_seconds", "gauge",
         "time of the last 200 response (0: none since start)", last_success_ms.load() / 1000);
  metric(out, "meter_agent_uplink_last_error_timestamp_seconds", "gauge",
         "time of the last failed request (0: none since start)", last_error_ms.load() / 1000);
  metric(out, "meter_agent_uplink_backlog_records", "gauge",
         "raw events and measurement revisions waiting for the central (quarantined excluded)",
         waiting.load());
  const auto oldest = oldest_waiting_received_ms.load();
  metric(out, "meter_agent_uplink_backlog_age_seconds", "gauge",
         "age of the oldest waiting record by receive time; 0 when none",
         oldest > 0 ? std::max<std::int64_t>(0, (now - oldest) / 1000) : 0);
  metric(out, "meter_agent_uplink_quarantined_records", "gauge",
         "records the central rejected, kept until `meter-agent requeue`", quarantined.load());
  metric(out, "meter_agent_uplink_confirmed_last_minute", "gauge",
         "records confirmed by the central in the last minute", rate_per_minute.load());
  metric(out, "meter_agent_uplink_pruned_measurements_total", "counter",
         "synced measurements pruned (after uplink.retention, or for the disk budget)",
         pruned_measurements.load());
  metric(out, "meter_agent_clock_synchronized", "gauge",
         "1 while the gateway clock is known to be synchronized (else readings stamped with it "
         "get clock_unsynced)",
         clock_synchronized ? 1 : 0);
  metric(out, "meter_agent_uplink_pruned_raw_total", "counter",
         "synced raw messages pruned (after uplink.retention, or for the disk budget)",
         pruned_raw.load());
  metric(out, "meter_agent_uplink_budget_prunes_total", "counter",
         "times confirmed data was pruned before uplink.retention to keep the buffer within "
         "buffer.max_size_mib",
         budget_prunes.load());
  metric(out, "meter_agent_uplink_protocol_version", "gauge",
         "the upload protocol version in use: 2, or 1 while the central does not speak 2",
         protocol_version.load());
  metric(out, "meter_agent_uplink_held_measurements", "gauge",
         "measurements held back because the central speaks protocol 1 (their flags are new in "
         "2); sent once it is upgraded",
         held.load());
  return out;
}

}  // namespace meter::agent
