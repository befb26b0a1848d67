// The uplink stage: unsynced raw events and measurements → central service
// (POST /api/v1/ingest, docs/PROTOCOL.md), on a thread of its own with its own
// buffer connection. It marks as synced exactly what a response confirms,
// quarantines what the central rejects, and never deletes anything the
// central has not confirmed.
//
// Outcomes of one request (docs/PROTOCOL.md, "Whole-request errors"):
//   200            → per record: confirmed (marked), rejected (quarantined), missing (resent)
//   413            → the batch is halved and sent again
//   401/403        → uploads stop; loud in logs, status and metrics; retried after
//                    uplink.auth_retry, or at once after a reload
//   408/429/5xx, timeouts, connection errors
//                  → retried with capped exponential backoff and jitter, at least Retry-After
//   other 4xx      → the batch is refused as a whole (an agent bug): logged loudly, retried
//                    with the longest backoff, nothing dropped
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent/ops/log.hpp"
#include "agent/uplink/http_client.hpp"
#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/uplink/wire_format.hpp"

namespace meter::agent {

// Counters and the latest state, for /metrics (written by the uplink thread).
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

  void set_last_error(std::string error);
  std::string last_error() const;
  std::string render_prometheus(std::int64_t now_ms) const;

 private:
  mutable std::mutex mutex_;
  std::string last_error_;
};

class Uplink {
 public:
  using ConfigSource = std::function<std::shared_ptr<const Config>()>;

  // `transport_factory` builds the transport for a configuration (tests of
  // the seam may pass their own; the daemon passes none: libcurl).
  Uplink(ConfigSource config, Logger& logger,
         std::function<std::unique_ptr<HttpTransport>(const UplinkConfig&)> transport_factory = {});
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Opens its own buffer connection, checks the clock (before any message
  // arrives) and starts the thread, which also keeps checking the clock.
  Status start(const BufferConfig& buffer);
  void stop();
  // After a reload: new settings (and token) are used, and a wait for the
  // backoff or an authentication failure ends at once.
  void reloaded();

  const UplinkMetrics& metrics() const { return metrics_; }

 private:
  enum class Next { more, idle, retry };
  // A request in flight: its batch, its body and its answer to come.
  struct InFlight {
    UplinkBatch batch;
    std::shared_ptr<const HttpPost> post;
    std::future<HttpOutcome> outcome;
    std::size_t slot = 0;  // its transport in transports_
  };
  void loop();
  // Keeps up to uplink.max_in_flight requests going while a backlog drains,
  // then handles the oldest one's answer (answers are handled in send order).
  Next send_once(const Config& config);
  // Selects the next batch (after `after`, the one in flight before it) and
  // starts its request; or says why not (idle: nothing to send).
  std::optional<Next> launch(const Config& config, std::optional<SyncCursor> after);
  Next finish(const Config& config, const InFlight& in, const HttpOutcome& outcome);
  // A 200: marks what it confirms. Behind a failure it changes no backoff,
  // split or failure count.
  Next confirm(const Config& config, const UplinkBatch& batch, const HttpOutcome& outcome,
               bool behind_failure = false);
  void drain_window();
  Next handle_failure(const UplinkConfig& config, const std::string& what, bool auth,
                      std::optional<std::int64_t> retry_after_ms, bool refused);
  void refresh_status();
  void maybe_prune(const Config& config);
  void save_state();
  void check_clock(const Config& config);
  std::optional<std::string> read_token(const UplinkConfig& config, std::string& problem);

  ConfigSource config_;
  Logger& logger_;
  std::function<std::unique_ptr<HttpTransport>(const UplinkConfig&)> transport_factory_;
  UplinkMetrics metrics_;
  std::unique_ptr<Buffer> buffer_;
  std::vector<std::unique_ptr<HttpTransport>> transports_;  // one per request in flight
  std::string transport_key_;    // the settings transports_ were built with
  std::deque<InFlight> window_;  // after transports_: its requests use them
  int behind_ = 0;               // requests started behind another since the window was last empty

  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool reloaded_ = false;
  std::atomic<bool> abort_{false};  // ends a request in flight at shutdown

  std::mt19937_64 random_;
  std::int64_t backoff_ms_ = 0;
  std::size_t split_records_ = 0;  // 0: no split in force; else the records per array now
  std::size_t split_bytes_ = 0;
  std::chrono::steady_clock::time_point next_prune_{};
  std::chrono::steady_clock::time_point next_budget_check_{};
  // For the disk budget: records confirmed at the last prune, and whether
  // "nothing confirmed to prune" was said (once, until something is pruned).
  std::int64_t confirmed_at_budget_prune_ = -1;
  bool nothing_to_prune_said_ = false;
  std::chrono::steady_clock::time_point next_status_{};
  std::chrono::steady_clock::time_point next_state_save_{};
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::int64_t>> recent_;
  std::string saved_state_;
  std::int64_t clock_good_ms_ = 0;  // when the clock was last seen synchronized
  std::optional<bool> clock_synchronized_;
  std::chrono::steady_clock::time_point next_clock_check_{};
};

}  // namespace meter::agent
