// The daemon (`meter-agent run`) wires the pipeline's units and runs the main
// loop; each unit lives in its own folder with its own tests:
//
//   agent/source/mqtt_source       the Paho client: connection, subscriptions, status topic
//   agent/source/acknowledge_path  the commit before each PUBACK: the inbox, its flow control
//   agent/source/ingest_workers    worker processes whose acknowledgements share syncs
//   agent/source/batched_source    our own connection: many messages, one sync, then the PUBACKs
//   agent/normalizer/              the normalizer thread and the disk budget
//   agent/uplink/                  buffer → central, its own thread
//   agent/ops/                     reload, the /healthz and /metrics endpoint, signals, systemd
//
// Threads: the caller's (main loop: connection supervision, reload,
// shutdown), Paho's (the message callback: the acknowledge path), the
// batched connection's (mqtt.acknowledge: batched), the normalizer, the uplink and the HTTP server.
// Signals never reach this class: the command line's handlers set flags that its `poll` hook turns
// into request_stop()/request_reload().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent/normalizer/disk_budget.hpp"
#include "agent/normalizer/inbox_progress.hpp"
#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/ops/ops_endpoint.hpp"
#include "agent/ops/service_notify.hpp"
#include "agent/source/acknowledge_path.hpp"
#include "common/config/config.hpp"
#include "common/util/clock.hpp"

namespace meter::agent {

class BatchedSource;
class IngestWorkers;
class MqttSource;
class NormalizerThread;
class Uplink;

struct DaemonOptions {
  std::optional<std::string> buffer_path;  // overrides buffer.path (also on reload)
  // How long shutdown may take before giving up on a blocked acknowledge path.
  std::chrono::milliseconds shutdown_bound{10000};
  // Acknowledged bytes the inbox may hold that the buffer has not taken in
  // before the acknowledge path waits (kInboxMaxBytes; smaller in tests).
  std::int64_t inbox_max_bytes = kInboxMaxBytes;
  // The binary started as `ingest-worker` (mqtt.ingest_workers): this one.
  std::string worker_executable = "/proc/self/exe";
};

class Daemon {
 public:
  // `clock`: where every unit reads the time (SystemClock when null).
  Daemon(Config config, DaemonOptions options, Logger& logger,
         std::unique_ptr<Clock> clock = nullptr);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until request_stop(); returns an exit code. `poll` runs on this
  // thread about every 100 ms (the command line checks its signal flags).
  int run(const std::function<void()>& poll = {});
  void request_stop();
  void request_reload();

  // True after run() if shutdown found the acknowledge path still retrying a
  // failed commit: that message is not acknowledged (the broker keeps it), and
  // the process must exit without destroying the client (std::_Exit).
  bool must_abandon() const { return abandon_; }

  const Metrics& metrics() const { return metrics_; }
  int http_port() const { return endpoint_.port(); }
  // Test seam: a full disk. Caps the database (SQLite max_page_count) and lets
  // the inbox take nothing more; 0 lifts both. Applied before the next write.
  void set_max_page_count(std::int64_t pages) { max_page_count_ = pages; }
  // Test seam: the disk budget in bytes (buffer.max_size_mib otherwise; 0: none).
  void set_disk_budget(std::int64_t bytes) { budget_.set_limit(bytes); }

 private:
  std::shared_ptr<const Config> config() const;
  Status open_pipeline(const Config& current);
  void reload();
  void shutdown();

  DaemonOptions options_;
  Logger& logger_;
  std::unique_ptr<Clock> clock_;
  Metrics metrics_;
  mutable std::mutex config_mutex_;
  std::shared_ptr<const Config> config_;

  DiskBudget budget_;
  InboxProgress inbox_progress_;
  std::atomic<std::int64_t> max_page_count_{0};
  ServiceNotifier notifier_;  // systemd (sd_notify); a no-op without it

  // Declared in the order they are started (destroyed in reverse: each uses
  // those above it); stopped in shutdown().
  std::unique_ptr<NormalizerThread> normalizer_;
  std::unique_ptr<AcknowledgePath> acknowledge_path_;
  std::unique_ptr<BatchedSource> batched_;  // mqtt.acknowledge: batched; commits through the path
  std::unique_ptr<IngestWorkers> workers_;  // mqtt.ingest_workers; commits through the path
  std::unique_ptr<Uplink> uplink_;
  OpsEndpoint endpoint_;                // reports the uplink's metrics too
  std::unique_ptr<MqttSource> source_;  // its callback runs the acknowledge path

  std::mutex loop_mutex_;
  std::condition_variable loop_wake_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
  bool abandon_ = false;
};

int run_daemon_command(const std::string& config_path,
                       const std::optional<std::string>& buffer_path);

}  // namespace meter::agent
