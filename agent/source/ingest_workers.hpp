// Ingest workers (mqtt.ingest_workers = N > 0): N worker processes
// (agent/source/ingest_worker.hpp), each one broker connection on the shared
// subscription `$share/<group>/<filter>`, and in the daemon one group-commit
// thread that takes whatever messages the workers have sent, appends them all
// to the inbox, syncs once, and only then answers each worker "committed" —
// whereupon its callback returns and Paho sends the PUBACK. Under
// durability power_loss N acknowledgements share one fdatasync instead of
// waiting for one each (LevelDB's group commit, across processes because Paho
// C acknowledges one message at a time per process: docs/ARCHITECTURE.md).
//
// Kept from the single connection: the acknowledgement after the sync; each
// message in the inbox once (a redelivery aside); one inbox writer (the
// acknowledge path's mutex), so one normalizer reads one stream in commit
// order; one agent per buffer (the inbox lock).
//
// Sessions: worker i's client id is `<client id>-ingest-<i>`, the same at
// every start, so the broker's persistent session (and what it queued for the
// worker while it was away: mosquitto keeps an offline member's share) is
// resumed. The number of worker sessions that may exist is kept in
// `<inbox>/ingest-workers`; when N is lowered, the retired ones (N and up)
// are drained by short-lived workers before the number is lowered.
//
// Threads: start/supervise/reconfigure/stop on the daemon's main loop; the
// group-commit thread owns the sockets' reads and the replies.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/source/acknowledge_path.hpp"
#include "agent/source/ingest_channel.hpp"
#include "common/config/config.hpp"

namespace meter::agent {

// The settings worker `index` connects with under `config` (drain: retired).
WorkerSettings worker_settings(const Config& config, int index, bool drain,
                               const std::set<std::string>& stale_filters);

class IngestWorkers {
 public:
  struct Shared {
    AcknowledgePath& acknowledge_path;
    Metrics& metrics;
    Logger& logger;
    std::string executable;   // the meter-agent binary (`ingest-worker`)
    std::string buffer_path;  // its inbox directory keeps the number of worker sessions
  };
  explicit IngestWorkers(Shared shared);
  ~IngestWorkers();
  IngestWorkers(const IngestWorkers&) = delete;
  IngestWorkers& operator=(const IngestWorkers&) = delete;

  // Starts the group-commit thread and the workers `config` asks for (none:
  // only drains of retired sessions, if any).
  void start(const Config& config);
  // The main loop's step: reaps exited workers, starts again those due, and
  // restarts those whose settings a reload changed.
  void supervise(const Config& config);
  // After a reload: filters the new configuration no longer has are left on
  // each worker's next connect.
  void reconfigure(const Config& before, const Config& after);
  // Stops every worker (SIGTERM; their messages in hand are still committed),
  // then SIGKILL at `deadline`, then the thread.
  void stop(std::chrono::steady_clock::time_point deadline);

 private:
  struct Process {
    int index = 0;
    bool drain = false;
    pid_t pid = -1;
    WorkerSettings settings;
    bool terminating = false;  // we sent SIGTERM
    std::chrono::steady_clock::time_point start_at{};
    std::chrono::milliseconds backoff{0};
  };
  struct Channel {
    int fd = -1;
    FrameSplitter splitter;
    bool connected = false;
    bool closed = false;
    bool answered = false;  // got its answer and has not sent its next message yet
  };
  // Reads what the polled channels sent; messages go to the group.
  void take_frames(Channel& channel, std::vector<RawMessage>& batch,
                   std::vector<Channel*>& senders);

  void spawn(Process& process, const Config& config);
  void commit_loop();
  void wake_loop();
  std::int64_t recorded_sessions() const;
  void record_sessions(std::int64_t count);

  Shared shared_;
  std::vector<Process> processes_;  // main loop only
  std::set<std::string> stale_filters_;
  int wanted_ = 0;
  bool reloaded_ = false;  // a reload may have changed the workers' settings: compare once

  std::mutex channels_mutex_;
  std::vector<std::shared_ptr<Channel>> new_channels_;  // handed to the thread
  std::atomic<bool> stop_thread_{false};
  int wake_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace meter::agent
