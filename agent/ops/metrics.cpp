#include "agent/ops/metrics.hpp"

#include <algorithm>

#include "agent/ops/prometheus.hpp"

namespace meter::agent {
using prometheus::metric;

void Metrics::add(const NormalizeStats& stats) {
  normalized += stats.messages;
  new_measurements += stats.new_measurements;
  duplicates += stats.duplicates;
  decode_errors += stats.decode_errors;
  ignored += stats.ignored;
  if (!stats.no_reading_by_mapping.empty()) {
    std::lock_guard lock(mutex_);
    for (const auto& [mapping, count] : stats.no_reading_by_mapping) {
      no_reading_by_mapping_[mapping] += count;
    }
  }
}

void Metrics::set_buffer_status(const BufferStatus& status) {
  std::lock_guard lock(mutex_);
  buffer_status_ = status;
}

std::optional<BufferStatus> Metrics::buffer_status() const {
  std::lock_guard lock(mutex_);
  return buffer_status_;
}

std::string Metrics::render_prometheus(std::int64_t now_ms) const {
  std::string out;
  metric(out, "meter_agent_messages_received_total", "counter",
         "MQTT messages handed to the agent since it started", received.load());
  metric(out, "meter_agent_messages_appended_total", "counter",
         "MQTT messages committed to the inbox (and then acknowledged) since start",
         appended.load());
  metric(out, "meter_agent_messages_raw_logged_total", "counter",
         "acknowledged messages moved from the inbox into the raw log since start",
         raw_logged.load());
  metric(out, "meter_agent_buffer_over_budget", "gauge",
         "1 while the buffer has used its disk budget (buffer.max_size_mib): not acknowledging",
         over_budget.load() ? 1 : 0);
  metric(out, "meter_agent_buffer_used_bytes", "gauge",
         "database pages in use + WAL + inbox (at twice its size: what it takes once stored), as "
         "the disk budget counts them (0: no budget)",
         buffer_used_bytes.load());
  metric(out, "meter_agent_inbox_full_waits_total", "counter",
         "acknowledgements held back until the normalizer took in a full inbox",
         inbox_full_waits.load());
  metric(out, "meter_agent_append_failures_total", "counter",
         "failed raw log commits (disk full, I/O error); the message is not acknowledged",
         append_failures.load());
  metric(out, "meter_agent_append_blocked", "gauge",
         "1 while the acknowledge path retries a failed commit", append_blocked.load() ? 1 : 0);
  metric(out, "meter_agent_messages_normalized_total", "counter",
         "raw messages normalized since start", normalized.load());
  metric(out, "meter_agent_measurements_new_total", "counter", "distinct events stored since start",
         new_measurements.load());
  metric(out, "meter_agent_duplicates_total", "counter",
         "readings whose event was already stored, since start", duplicates.load());
  metric(out, "meter_agent_decode_errors_total", "counter",
         "messages or readings that could not be decoded, since start", decode_errors.load());
  metric(out, "meter_agent_ignored_total", "counter",
         "messages kept in the raw log as ignored (e.g. retained without timestamp), since start",
         ignored.load());
  {
    std::lock_guard lock(mutex_);
    if (!no_reading_by_mapping_.empty()) {
      prometheus::header(out, "meter_agent_mapping_no_reading_total", "counter",
                         "messages a mapping took that gave no reading (ignored or a decode "
                         "error), since start; an empty mapping label: topics no mapping takes");
      for (const auto& [mapping, count] : no_reading_by_mapping_) {
        prometheus::sample(out, "meter_agent_mapping_no_reading_total", count,
                           "mapping=\"" + prometheus::escape_label(mapping) + "\"");
      }
    }
  }
  metric(out, "meter_agent_normalize_failures_total", "counter",
         "normalization batches that failed (retried)", normalize_failures.load());
  metric(out, "meter_agent_checkpoints_total", "counter", "WAL checkpoints run",
         checkpoints.load());
  metric(out, "meter_agent_mqtt_connected", "gauge", "1 while connected to the broker",
         mqtt_connected.load() ? 1 : 0);
  metric(out, "meter_agent_ingest_workers", "gauge",
         "ingest worker processes running (mqtt.ingest_workers)", ingest_workers.load());
  metric(out, "meter_agent_ingest_workers_connected", "gauge",
         "ingest worker processes connected to the broker", ingest_workers_connected.load());
  metric(out, "meter_agent_ingest_worker_restarts_total", "counter",
         "ingest worker processes that exited unasked and were started again",
         ingest_worker_restarts.load());
  metric(out, "meter_agent_group_commits_total", "counter",
         "inbox syncs that committed several messages together (ingest workers, or the batched "
         "connection)",
         group_commits.load());
  metric(out, "meter_agent_batched_connected", "gauge",
         "1 while the batched connection (mqtt.acknowledge: batched) is connected",
         batched_connected.load() ? 1 : 0);
  metric(out, "meter_agent_batched_connection_failures_total", "counter",
         "failed connects and lost connections of the batched connection",
         batched_connection_failures.load());
  metric(out, "meter_agent_mqtt_reconnects_total", "counter",
         "successful connects after the first one", reconnects.load());
  metric(out, "meter_agent_mqtt_connect_failures_total", "counter", "failed connection attempts",
         connect_failures.load());
  metric(out, "meter_agent_mqtt_connections_lost_total", "counter",
         "connections lost without being asked to", connections_lost.load());

  const auto status = buffer_status();
  const std::int64_t last_seq =
      std::max(last_appended_seq.load(), status ? status->last_seq : std::int64_t{0});
  if (status) {
    metric(out, "meter_agent_buffer_raw_messages", "gauge", "raw messages in the buffer",
           status->raw_messages);
    metric(out, "meter_agent_buffer_pending_normalization", "gauge",
           "raw messages not normalized yet",
           std::max<std::int64_t>(0, last_seq - status->normalized_through_seq));
    metric(out, "meter_agent_buffer_measurements", "gauge", "measurements in the buffer",
           status->measurements);
    metric(out, "meter_agent_buffer_unsynced", "gauge",
           "measurements whose current revision the central side has not confirmed",
           status->unsynced);
    metric(out, "meter_agent_buffer_oldest_unsynced_age_seconds", "gauge",
           "age of the oldest unsynced measurement (by receive time); 0 when none",
           status->oldest_unsynced_received_ms
               ? std::max<std::int64_t>(0, (now_ms - *status->oldest_unsynced_received_ms) / 1000)
               : 0);
    metric(out, "meter_agent_buffer_decode_errors", "gauge",
           "raw messages in the buffer that could not be decoded", status->decode_errors);
    metric(out, "meter_agent_buffer_duplicates", "gauge",
           "repeats of stored events counted by the buffer", status->duplicates);
    metric(out, "meter_agent_buffer_database_bytes", "gauge", "size of the database file",
           status->database_bytes);
    metric(out, "meter_agent_buffer_wal_bytes", "gauge", "size of the WAL file", status->wal_bytes);
    metric(out, "meter_agent_buffer_inbox_bytes", "gauge",
           "acknowledged messages not yet moved into the raw log, in bytes", status->inbox_bytes);
    prometheus::header(out, "meter_agent_buffer_flagged_measurements", "gauge",
                       "measurements carrying a flag");
    for (const auto& [flag, count] : status->flag_counts) {
      prometheus::sample(out, "meter_agent_buffer_flagged_measurements", count,
                         "flag=\"" + flag + "\"");
    }
  }
  return out;
}

}  // namespace meter::agent
