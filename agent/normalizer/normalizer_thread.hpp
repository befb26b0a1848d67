// The normalizer: its own thread and its own database connection. Each pass
// moves what the acknowledge path committed to the inbox into the raw log
// (Buffer::absorb_inbox), normalizes it in batches (Buffer::normalize_pending),
// measures the disk budget, and now and then checkpoints the WAL and refreshes
// the buffer status for /metrics. It beats a Heartbeat each round, which the
// systemd watchdog follows.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/normalizer/disk_budget.hpp"
#include "agent/normalizer/inbox_progress.hpp"
#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/ops/service_notify.hpp"
#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/util/clock.hpp"

namespace meter::agent {

class NormalizerThread {
 public:
  struct Shared {
    std::function<std::shared_ptr<const Config>()> config;  // read at every pass (reloads)
    DiskBudget& budget;
    InboxProgress& progress;  // published after every absorb
    Metrics& metrics;
    Logger& logger;
    const Clock& clock;
    // Test seam (Daemon::set_max_page_count): caps the database; 0: no cap.
    const std::atomic<std::int64_t>& max_page_count;
    // The systemd watchdog's interval (zero: none): no wait is longer than a quarter of it.
    std::chrono::microseconds watchdog_interval{0};
  };
  // `buffer`: the normalizer's own connection, whose inbox_position() the
  // caller has published to `shared.progress`.
  NormalizerThread(std::unique_ptr<Buffer> buffer, Shared shared);
  ~NormalizerThread();
  NormalizerThread(const NormalizerThread&) = delete;
  NormalizerThread& operator=(const NormalizerThread&) = delete;

  // Measures the budget and reads the status once, then starts the thread
  // with a first pass (whatever a previous run left in the inbox).
  void start();
  // Asks for a pass (cheap when one is already asked for).
  void wake();
  // Ends the thread, then absorbs everything left in the inbox (so offline
  // commands see it) and checkpoints.
  void stop_and_drain();

  const Heartbeat& heartbeat() const { return heartbeat_; }

 private:
  void loop();
  void note_absorbed(const AbsorbStats& absorbed);
  void check_disk_budget();
  void refresh_status();

  std::unique_ptr<Buffer> buffer_;
  Shared shared_;
  std::thread thread_;
  std::mutex work_mutex_;
  std::condition_variable work_ready_;
  bool work_pending_ = false;
  std::atomic<bool> stop_{false};
  Heartbeat heartbeat_;
};

}  // namespace meter::agent
