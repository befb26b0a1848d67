// The daemon (`meter-agent run`): MQTT source → raw log (committed before the
// acknowledgement) → normalizer thread, plus the connection supervisor, the
// retained status topic, reloads and the local HTTP endpoint.
//
// Threads: the caller's (main loop: connection, reload, shutdown), Paho's
// (the message callback: the acknowledge path), the normalizer, and the HTTP
// server. Signals never reach this class: the command line's handlers set
// flags that its `poll` hook turns into request_stop()/request_reload().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "agent/ops/http_server.hpp"
#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/ops/service_notify.hpp"
#include "agent/uplink/uplink.hpp"
#include "common/buffer/buffer.hpp"
#include "common/buffer/inbox.hpp"
#include "common/config/config.hpp"

namespace mqtt {
class async_client;
class message;
class token;
}  // namespace mqtt

namespace meter::agent {

// Acknowledged messages the inbox may hold that the buffer has not taken in;
// beyond it the acknowledge path waits for the normalizer, and refuses if
// that does not help (the database is failing).
inline constexpr std::int64_t kInboxMaxBytes = 64 * 1024 * 1024;

struct DaemonOptions {
  std::optional<std::string> buffer_path;  // overrides buffer.path (also on reload)
  // How long shutdown may take before giving up on a blocked acknowledge path.
  std::chrono::milliseconds shutdown_bound{10000};
  // Acknowledged bytes the inbox may hold that the buffer has not taken in
  // before the acknowledge path waits (kInboxMaxBytes; smaller in tests).
  std::int64_t inbox_max_bytes = kInboxMaxBytes;
};

class Daemon {
 public:
  Daemon(Config config, DaemonOptions options, Logger& logger);
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
  int http_port() const;
  // Test seam: a full disk. Caps the database (SQLite max_page_count) and lets
  // the inbox take nothing more; 0 lifts both. Applied before the next write.
  void set_max_page_count(std::int64_t pages) { max_page_count_ = pages; }
  // Test seam: the disk budget in bytes (buffer.max_size_mib otherwise; 0: none).
  void set_disk_budget(std::int64_t bytes) { disk_budget_ = bytes; }

 private:
  std::shared_ptr<const Config> config() const;
  void on_message(const std::shared_ptr<const mqtt::message>& message);
  Status append_to_inbox(const RawMessage& raw);
  void note_absorbed(const AbsorbStats& absorbed);
  void check_disk_budget(Buffer& buffer);
  void normalizer_loop();
  void wake_normalizer();
  void refresh_status(Buffer& buffer);

  void create_client();
  void destroy_client();
  void try_connect();
  bool subscribe(const std::set<std::string>& filters);
  void subscribe_async(const std::set<std::string>& filters);
  void check_pending_subscription();
  void unsubscribe(const std::set<std::string>& filters);
  void publish_status(bool online, bool wait);
  void schedule_reconnect();
  void reload();
  void start_http();
  void shutdown();
  std::string status_topic() const;

  DaemonOptions options_;
  Logger& logger_;
  Metrics metrics_;
  mutable std::mutex config_mutex_;
  std::shared_ptr<const Config> config_;
  std::string config_text_;  // the file as loaded, to report what a reload changes

  // The acknowledge path's commit (used only by the message callback); the
  // normalizer moves its records into the buffer and publishes how far.
  std::unique_ptr<InboxWriter> inbox_;
  std::atomic<std::int64_t> inbox_absorbed_segment_{0};
  std::atomic<std::int64_t> inbox_absorbed_offset_{0};
  std::mutex absorbed_mutex_;  // with absorbed_changed_: the acknowledge path waits on a full inbox
  std::condition_variable absorbed_changed_;
  std::unique_ptr<Buffer> normalize_buffer_;
  std::thread normalizer_;
  std::mutex work_mutex_;
  std::condition_variable work_ready_;
  bool work_pending_ = false;
  std::atomic<bool> normalizer_stop_{false};
  std::atomic<std::int64_t> max_page_count_{0};
  std::atomic<std::int64_t> disk_budget_{0};  // bytes; 0: none
  std::atomic<bool> over_budget_{false};      // set by the normalizer, read by the callback
  // The acknowledge path's share of the budget between the normalizer's checks:
  // what the last check counted, and bytes acknowledged (a running total) then.
  std::atomic<std::int64_t> budget_used_at_check_{0};
  std::atomic<std::int64_t> acknowledged_bytes_at_check_{0};
  std::atomic<std::int64_t> acknowledged_bytes_{0};
  std::atomic<std::int64_t> budget_checks_{0};  // checks done (with absorbed_changed_)
  Heartbeat normalizer_heartbeat_;              // the watchdog pings only while it beats
  ServiceNotifier notifier_;                    // systemd (sd_notify); a no-op without it

  std::unique_ptr<mqtt::async_client> client_;
  std::shared_ptr<mqtt::token> pending_subscribe_;  // a SUBSCRIBE not waited for
  std::set<std::string> pending_filters_;
  std::set<std::string> subscribed_;  // filters the broker's session has (as far as we know)
  bool subscribed_this_process_ = false;
  bool reconnect_pending_ =
      false;  // a reload changed the connection while the callback was blocked
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point next_connect_at_{};
  std::mt19937_64 random_;
  std::atomic<bool> connection_lost_{false};
  std::atomic<bool> in_callback_{false};

  std::unique_ptr<Uplink> uplink_;  // agent/uplink/uplink.hpp: buffer → central, its own thread
  std::unique_ptr<HttpServer> http_;
  std::string http_listen_;

  std::mutex loop_mutex_;
  std::condition_variable loop_wake_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
  std::atomic<bool> stopping_{false};
  bool abandon_ = false;
};

int run_daemon_command(const std::string& config_path,
                       const std::optional<std::string>& buffer_path);

}  // namespace meter::agent
