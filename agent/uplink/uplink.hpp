// The uplink stage: unsynced raw events and measurements → central service
// (POST /api/v1/ingest, docs/PROTOCOL.md), on a thread of its own with its own
// buffer connection. It marks as synced exactly what a response confirms,
// quarantines what the central rejects, and never deletes anything the
// central has not confirmed.
//
// What one request's answer means is decided by classify_answer
// (common/uplink/outcome.hpp, docs/PROTOCOL.md "Whole-request errors"); this
// class acts on it:
//   delivered      → per record: confirmed (marked), rejected (quarantined), missing (resent)
//   split (413)    → the batch is halved and sent again; too_large: its one record quarantined
//   retry_later    → for an HTTP 500 three times in a row: the batch is sent in parts, and a
//   (server_error)   record that still gets a 500 alone is quarantined once another part was
//                    accepted (poison isolation, common/uplink/isolation.hpp)
//   auth_failed    → uploads stop; loud in logs, status and metrics; retried after
//                    uplink.auth_retry, or at once after a reload
//   retry_later    → retried with capped exponential backoff and jitter, at least Retry-After
//                    (common/uplink/backoff.hpp)
//   refused        → the batch is refused as a whole (an agent bug): logged loudly, retried
//                    with the longest backoff, nothing dropped
//   protocol_unsupported → an older central: protocol 1 from now on, holding the
//                    measurements 1 cannot carry; 2 is asked again every 10 minutes
//                    and after a reload
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
#include "agent/uplink/pruning.hpp"
#include "agent/uplink/uplink_clock.hpp"
#include "agent/uplink/uplink_metrics.hpp"
#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/uplink/isolation.hpp"
#include "common/uplink/outcome.hpp"
#include "common/uplink/wire_format.hpp"

namespace meter::agent {

class Uplink {
 public:
  using ConfigSource = std::function<std::shared_ptr<const Config>()>;
  using TransportFactory = std::function<std::unique_ptr<HttpTransport>(const UplinkConfig&)>;

  // `transport_factory` builds the transport for a configuration, `clock`
  // gives the time (tests pass fakes of both; the daemon passes neither:
  // libcurl and the system's clocks).
  Uplink(ConfigSource config, Logger& logger, TransportFactory transport_factory = {},
         std::unique_ptr<UplinkClock> clock = nullptr);
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
    std::future<HttpAnswer> answer;
    std::size_t slot = 0;  // its transport in transports_
    std::string protocol;  // the protocol version it was sent in
    bool part = false;     // a part of an isolation round (isolation_), not a selected batch
  };
  void loop();
  // Keeps up to uplink.max_in_flight requests going while a backlog drains,
  // then handles the oldest one's answer (answers are handled in send order).
  Next send_once(const Config& config);
  // Selects the next batch (after `after`, the one in flight before it; or
  // an isolation round's next part) and starts its request; or says why not
  // (idle: nothing to send).
  std::optional<Next> launch(const Config& config, std::optional<SyncCursor> after);
  // Classifies the answer and acts on it.
  Next finish(const Config& config, const InFlight& in, const HttpAnswer& answer);
  // A readable 200: marks what it confirms. Behind a failure it changes no
  // backoff, split or failure count.
  Next deliver(const Config& config, const UplinkBatch& batch, const IngestResponse& response,
               bool behind_failure = false);
  // 413 for a single record: quarantined with the central's error code.
  Next quarantine_too_large(const UplinkBatch& batch, const UploadOutcome& outcome);
  // An HTTP 500 (or a 413 that cannot shrink the selection): isolation_'s
  // decision acted on.
  Next isolate(const Config& config, const InFlight& in, const UploadOutcome& outcome);
  // Quarantines single records that got a 500 alone, with the central's answer.
  void quarantine_poison(const std::vector<BatchIsolation::Quarantine>& records);
  // retry_later, auth_failed and refused: counts the failure, says why and
  // sets the wait before the next try.
  Next back_off(const UplinkConfig& config, const UploadOutcome& outcome);
  // protocol_unsupported: from now on version 1, holding what it cannot carry.
  Next fall_back(const UploadOutcome& outcome);
  // While on version 1: version 2 again once the probe interval has passed
  // (or after a reload), with nothing in flight.
  void maybe_probe();
  // The held measurements, counted again (version 1 only).
  void count_held();
  void drain_window();
  void refresh_status();
  void save_state();
  void check_clock(const Config& config);
  Result<std::string> read_token(const UplinkConfig& config);

  ConfigSource config_;
  Logger& logger_;
  TransportFactory transport_factory_;
  std::unique_ptr<UplinkClock> clock_;
  UplinkMetrics metrics_;
  std::unique_ptr<Buffer> buffer_;
  std::unique_ptr<UplinkPruner> pruner_;                    // after buffer_: it uses it
  std::vector<std::unique_ptr<HttpTransport>> transports_;  // one per request in flight
  std::optional<UplinkConfig> transport_config_;  // the settings transports_ were built with
  std::deque<InFlight> window_;                   // after transports_: its requests use them
  int behind_ = 0;  // requests started behind another since the window was last empty

  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool reloaded_ = false;
  std::atomic<bool> abort_{false};  // ends a request in flight at shutdown

  std::mt19937_64 random_;
  std::int64_t backoff_ms_ = 0;
  std::string protocol_{kProtocolVersion};  // the version requests are sent in
  bool probing_ = false;  // protocol_ is 2 again after a fallback, not yet answered
  std::chrono::steady_clock::time_point next_probe_{};
  std::size_t split_records_ = 0;  // 0: no split in force; else the records per array now
  std::size_t split_bytes_ = 0;
  BatchIsolation isolation_;  // poison isolation: the parts of a batch answered 500
  std::chrono::steady_clock::time_point next_status_{};
  std::chrono::steady_clock::time_point next_state_save_{};
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::int64_t>> recent_;
  std::string saved_state_;
  std::int64_t clock_good_ms_ = 0;  // when the clock was last seen synchronized
  std::optional<bool> clock_synchronized_;
  std::chrono::steady_clock::time_point next_clock_check_{};
};

}  // namespace meter::agent
