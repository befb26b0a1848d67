// The uplink's counters and latest state, for /metrics and the state saved
// for `status` (written by the uplink thread, read by the HTTP server's).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace meter::agent {

class UplinkMetrics {
 public:
  std::atomic<bool> enabled{false};
  std::atomic<std::int64_t> requests{0};
  std::atomic<std::int64_t> in_flight{0};         // requests waiting for their answer now
  std::atomic<std::int64_t> request_failures{0};  // no 200: transport errors and non-200
  std::atomic<std::int64_t> raw_confirmed{0};
  std::atomic<std::int64_t> measurements_confirmed{0};
  std::atomic<std::int64_t> rejected{0};
  std::atomic<std::int64_t> missing{0};
  std::atomic<std::int64_t> splits{0};
  std::atomic<std::int64_t> bytes_sent{0};          // request bodies as sent (gzip)
  std::atomic<std::int64_t> bytes_uncompressed{0};  // the same bodies before gzip
  std::atomic<std::int64_t> pruned_measurements{0};
  std::atomic<std::int64_t> pruned_raw{0};
  std::atomic<std::int64_t> budget_prunes{0};  // prunes before the retention, for the disk budget
  std::atomic<bool> auth_failed{false};        // 401/403: uploads stopped until the token is fixed
  std::atomic<std::int64_t> last_success_ms{0};
  std::atomic<std::int64_t> last_error_ms{0};
  std::atomic<std::int64_t> consecutive_failures{0};
  std::atomic<std::int64_t> waiting{0};                     // records waiting (raw + measurements)
  std::atomic<std::int64_t> oldest_waiting_received_ms{0};  // 0: none
  std::atomic<std::int64_t> quarantined{0};
  std::atomic<std::int64_t> rate_per_minute{0};  // records confirmed in the last minute
  std::atomic<bool> clock_synchronized{true};    // see agent/ops/clock_sync.hpp
  std::atomic<int> protocol_version{2};          // the upload protocol in use (1: fallback)
  std::atomic<std::int64_t> held{0};             // measurements protocol 1 cannot carry, held back

  void set_last_error(std::string error);
  std::string last_error() const;
  std::string render_prometheus(std::int64_t now_ms) const;

 private:
  mutable std::mutex mutex_;
  std::string last_error_;
};

}  // namespace meter::agent
