// The daemon's counters (atomics, written by the acknowledge and normalizer
// threads) and the latest buffer status snapshot, rendered as Prometheus text.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/buffer/buffer.hpp"

namespace meter::agent {

class Metrics {
 public:
  // Acknowledge path.
  std::atomic<std::int64_t> received{0};           // messages handed to the callback
  std::atomic<std::int64_t> appended{0};           // committed to the inbox (then acknowledged)
  std::atomic<std::int64_t> raw_logged{0};         // moved from the inbox into the raw log
  std::atomic<std::int64_t> inbox_full_waits{0};   // acknowledgements held back for a full inbox
  std::atomic<std::int64_t> buffer_used_bytes{0};  // what the disk budget counts (0: no budget)
  std::atomic<bool> over_budget{false};            // acknowledging stopped: disk budget reached
  std::atomic<std::int64_t> append_failures{0};    // failed commits (disk full, I/O): not acked
  std::atomic<std::int64_t> last_appended_seq{0};
  std::atomic<bool> append_blocked{false};  // the callback is retrying a failed commit
  // Normalizer.
  std::atomic<std::int64_t> normalized{0};  // raw messages normalized
  std::atomic<std::int64_t> new_measurements{0};
  std::atomic<std::int64_t> duplicates{0};
  std::atomic<std::int64_t> decode_errors{0};
  std::atomic<std::int64_t> ignored{0};
  std::atomic<std::int64_t> normalize_failures{0};
  std::atomic<std::int64_t> checkpoints{0};
  // Connection.
  std::atomic<bool> mqtt_connected{false};
  // The daemon's own session holds every mapping filter (acknowledge: each).
  std::atomic<bool> mqtt_subscribed{false};
  std::atomic<std::int64_t> connects{0};
  std::atomic<std::int64_t> reconnects{0};  // connects after the first
  std::atomic<std::int64_t> connect_failures{0};
  std::atomic<std::int64_t> connections_lost{0};
  // Ingest workers (mqtt.ingest_workers): running and connected to the broker.
  std::atomic<std::int64_t> ingest_workers{0};
  std::atomic<std::int64_t> ingest_workers_connected{0};
  std::atomic<std::int64_t> ingest_worker_restarts{0};  // exits the daemon did not ask for
  std::atomic<std::int64_t> group_commits{0};  // syncs shared by messages (workers, batched)
  // The batched connection (mqtt.acknowledge: batched).
  std::atomic<bool> batched_enabled{false};  // the configuration asks for it
  std::atomic<bool> batched_connected{false};
  // Its session holds every filter of the configuration (a SUBACK in this process).
  std::atomic<bool> batched_subscribed{false};
  std::atomic<std::int64_t> batched_connection_failures{0};  // failed connects, lost connections

  void add(const NormalizeStats& stats);
  void set_buffer_status(const BufferStatus& status);
  std::optional<BufferStatus> buffer_status() const;

  // Prometheus text exposition format 0.0.4.
  std::string render_prometheus(std::int64_t now_ms) const;

 private:
  mutable std::mutex mutex_;
  std::optional<BufferStatus> buffer_status_;
  std::map<std::string, std::int64_t, std::less<>> no_reading_by_mapping_;  // under mutex_
};

}  // namespace meter::agent
