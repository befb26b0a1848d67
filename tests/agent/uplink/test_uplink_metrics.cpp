// The uplink's /metrics text (agent/uplink/uplink_metrics.cpp), byte for byte
// as the uplink wrote it before the one Prometheus writer
// (agent/ops/prometheus.hpp): dashboards, alerts and the end-to-end tests read
// these names. The expected text is what commit cc1b410 rendered for these values,
// plus the protocol fallback's two gauges at the end (issue #14).
#include <catch2/catch.hpp>
#include <string>

#include "agent/uplink/uplink_metrics.hpp"

using namespace meter::agent;

TEST_CASE("the uplink's metrics render exactly as before", "[uplink_metrics]") {
  UplinkMetrics u;
  u.enabled = true;
  u.requests = 12;
  u.in_flight = 2;
  u.request_failures = 3;
  u.raw_confirmed = 40;
  u.measurements_confirmed = 41;
  u.rejected = 2;
  u.missing = 5;
  u.splits = 1;
  u.bytes_sent = 123456;
  u.bytes_uncompressed = 654321;
  u.pruned_measurements = 7;
  u.pruned_raw = 8;
  u.budget_prunes = 1;
  u.auth_failed = true;
  u.last_success_ms = 1735689600123;
  u.last_error_ms = 1735689650999;
  u.consecutive_failures = 4;
  u.waiting = 99;
  u.oldest_waiting_received_ms = 1735689500000;
  u.quarantined = 3;
  u.rate_per_minute = 60;
  u.clock_synchronized = false;
  u.protocol_version = 1;
  u.held = 17;
  const std::string expected =
      R"(# HELP meter_agent_uplink_enabled 1 when uplink.url is configured
# TYPE meter_agent_uplink_enabled gauge
meter_agent_uplink_enabled 1
# HELP meter_agent_uplink_requests_total upload requests sent
# TYPE meter_agent_uplink_requests_total counter
meter_agent_uplink_requests_total 12
# HELP meter_agent_uplink_requests_in_flight upload requests waiting for their answer (up to uplink.max_in_flight)
# TYPE meter_agent_uplink_requests_in_flight gauge
meter_agent_uplink_requests_in_flight 2
# HELP meter_agent_uplink_request_failures_total upload requests without a 200 (connection errors, timeouts, non-200 statuses)
# TYPE meter_agent_uplink_request_failures_total counter
meter_agent_uplink_request_failures_total 3
# HELP meter_agent_uplink_consecutive_failures failed requests since the last 200
# TYPE meter_agent_uplink_consecutive_failures gauge
meter_agent_uplink_consecutive_failures 4
# HELP meter_agent_uplink_raw_confirmed_total raw events the central confirmed (stored or duplicate)
# TYPE meter_agent_uplink_raw_confirmed_total counter
meter_agent_uplink_raw_confirmed_total 40
# HELP meter_agent_uplink_measurements_confirmed_total measurement revisions the central confirmed (stored, duplicate or superseded)
# TYPE meter_agent_uplink_measurements_confirmed_total counter
meter_agent_uplink_measurements_confirmed_total 41
# HELP meter_agent_uplink_rejected_total records the central rejected (quarantined)
# TYPE meter_agent_uplink_rejected_total counter
meter_agent_uplink_rejected_total 2
# HELP meter_agent_uplink_unanswered_total records a 200 response named no matching outcome for (sent again)
# TYPE meter_agent_uplink_unanswered_total counter
meter_agent_uplink_unanswered_total 5
# HELP meter_agent_uplink_splits_total batches halved after a 413
# TYPE meter_agent_uplink_splits_total counter
meter_agent_uplink_splits_total 1
# HELP meter_agent_uplink_bytes_sent_total request body bytes sent (after gzip)
# TYPE meter_agent_uplink_bytes_sent_total counter
meter_agent_uplink_bytes_sent_total 123456
# HELP meter_agent_uplink_bytes_uncompressed_total request body bytes before gzip
# TYPE meter_agent_uplink_bytes_uncompressed_total counter
meter_agent_uplink_bytes_uncompressed_total 654321
# HELP meter_agent_uplink_auth_failed 1 while the central refuses the token (401/403): nothing is uploaded
# TYPE meter_agent_uplink_auth_failed gauge
meter_agent_uplink_auth_failed 1
# HELP meter_agent_uplink_last_success_timestamp_seconds time of the last 200 response (0: none since start)
# TYPE meter_agent_uplink_last_success_timestamp_seconds gauge
meter_agent_uplink_last_success_timestamp_seconds 1735689600
# HELP meter_agent_uplink_last_error_timestamp_seconds time of the last failed request (0: none since start)
# TYPE meter_agent_uplink_last_error_timestamp_seconds gauge
meter_agent_uplink_last_error_timestamp_seconds 1735689650
# HELP meter_agent_uplink_backlog_records raw events and measurement revisions waiting for the central (quarantined excluded)
# TYPE meter_agent_uplink_backlog_records gauge
meter_agent_uplink_backlog_records 99
# HELP meter_agent_uplink_backlog_age_seconds age of the oldest waiting record by receive time; 0 when none
# TYPE meter_agent_uplink_backlog_age_seconds gauge
meter_agent_uplink_backlog_age_seconds 200
# HELP meter_agent_uplink_quarantined_records records the central rejected, kept until `meter-agent requeue`
# TYPE meter_agent_uplink_quarantined_records gauge
meter_agent_uplink_quarantined_records 3
# HELP meter_agent_uplink_confirmed_last_minute records confirmed by the central in the last minute
# TYPE meter_agent_uplink_confirmed_last_minute gauge
meter_agent_uplink_confirmed_last_minute 60
# HELP meter_agent_uplink_pruned_measurements_total synced measurements pruned (after uplink.retention, or for the disk budget)
# TYPE meter_agent_uplink_pruned_measurements_total counter
meter_agent_uplink_pruned_measurements_total 7
# HELP meter_agent_clock_synchronized 1 while the gateway clock is known to be synchronized (else readings stamped with it get clock_unsynced)
# TYPE meter_agent_clock_synchronized gauge
meter_agent_clock_synchronized 0
# HELP meter_agent_uplink_pruned_raw_total synced raw messages pruned (after uplink.retention, or for the disk budget)
# TYPE meter_agent_uplink_pruned_raw_total counter
meter_agent_uplink_pruned_raw_total 8
# HELP meter_agent_uplink_budget_prunes_total times confirmed data was pruned before uplink.retention to keep the buffer within buffer.max_size_mib
# TYPE meter_agent_uplink_budget_prunes_total counter
meter_agent_uplink_budget_prunes_total 1
# HELP meter_agent_uplink_protocol_version the upload protocol version in use: 2, or 1 while the central does not speak 2
# TYPE meter_agent_uplink_protocol_version gauge
meter_agent_uplink_protocol_version 1
# HELP meter_agent_uplink_held_measurements measurements held back because the central speaks protocol 1 (their flags are new in 2); sent once it is upgraded
# TYPE meter_agent_uplink_held_measurements gauge
meter_agent_uplink_held_measurements 17
)";
  CHECK(u.render_prometheus(1735689700000) == expected);
}
