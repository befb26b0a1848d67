#include "agent/source/ingest_workers.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#include "agent/source/ingest_worker.hpp"
#include "agent/source/mqtt_source.hpp"
#include "common/buffer/inbox.hpp"
#include "common/util/durable_file.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kIngest = "ingest";
constexpr auto kRestartMin = 1000ms;
constexpr auto kRestartMax = 30000ms;
constexpr int kExitFailureCode = 1;

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + ::strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

WorkerSettings worker_settings(const Config& config, int index, bool drain,
                               const std::set<std::string>& stale_filters) {
  WorkerSettings settings;
  settings.mqtt = config.mqtt;
  settings.gateway_id = config.gateway_id;
  settings.client_id = ingest_worker_client_id(config, index);
  const auto filters = shared_filters(config);
  settings.filters.assign(filters.begin(), filters.end());
  for (const auto& filter : stale_filters) {
    if (!filters.contains(filter)) settings.stale_filters.push_back(filter);
  }
  settings.drain = drain;
  settings.log_level = config.log.level;
  return settings;
}

IngestWorkers::IngestWorkers(Shared shared) : shared_(std::move(shared)) {}

IngestWorkers::~IngestWorkers() { stop(std::chrono::steady_clock::now()); }

// ---- sessions ------------------------------------------------------------------

std::int64_t IngestWorkers::recorded_sessions() const {
  std::ifstream file(inbox_directory(shared_.buffer_path) + "/ingest-workers");
  std::int64_t count = 0;
  if (!(file >> count) || count < 0 || count > kMaxIngestWorkers) return 0;
  return count;
}

// Written (and synced) before a worker with a higher index first connects, so
// a session the broker keeps is never forgotten by a crash.
void IngestWorkers::record_sessions(std::int64_t count) {
  const auto path = inbox_directory(shared_.buffer_path) + "/ingest-workers";
  if (auto written = replace_file_durably(path, std::to_string(count) + "\n"); !written) {
    shared_.logger.error(kIngest,
                         "cannot record the number of worker sessions: " + written.error().message);
  }
}

// ---- processes (main loop) -----------------------------------------------------

void IngestWorkers::start(const Config& config) {
  wanted_ = config.mqtt.ingest_workers;
  const auto recorded = recorded_sessions();
  if (wanted_ > recorded) record_sessions(wanted_);
  const auto now = std::chrono::steady_clock::now();
  for (int index = 0; index < std::max<int>(wanted_, static_cast<int>(recorded)); ++index) {
    Process process;
    process.index = index;
    process.drain = index >= wanted_;
    process.start_at = now;
    processes_.push_back(process);
  }
  supervise(config);
}

void IngestWorkers::spawn(Process& process, const Config& config) {
  if (!thread_.joinable()) {
    if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
      shared_.logger.error(kIngest, std::string("cannot start: pipe: ") + std::strerror(errno));
      process.start_at = std::chrono::steady_clock::now() + kRestartMax;
      return;
    }
    stop_thread_ = false;
    thread_ = std::thread([this] { commit_loop(); });
  }
  process.settings = worker_settings(config, process.index, process.drain, stale_filters_);
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    shared_.logger.error(kIngest,
                         std::string("cannot start a worker: socketpair: ") + std::strerror(errno));
    process.start_at = std::chrono::steady_clock::now() + kRestartMax;
    return;
  }
  const std::string executable = shared_.executable;
  const char* argv[] = {executable.c_str(), "ingest-worker", nullptr};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(kExitFailureCode);
    if (sockets[1] == kIngestChannelFd) {
      ::fcntl(kIngestChannelFd, F_SETFD, 0);
    } else if (::dup2(sockets[1], kIngestChannelFd) < 0) {
      ::_exit(kExitFailureCode);
    }
    ::close_range(kIngestChannelFd + 1, ~0U, 0);  // the daemon's sockets and files stay its own
    ::execv(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(sockets[1]);
  if (pid < 0) {
    ::close(sockets[0]);
    shared_.logger.error(kIngest,
                         std::string("cannot start a worker: fork: ") + std::strerror(errno));
    process.start_at = std::chrono::steady_clock::now() + kRestartMax;
    return;
  }
  process.pid = pid;
  process.terminating = false;
  // A few hundred bytes into an empty socket buffer: does not block.
  if (!write_all(sockets[0],
                 encode_frame(FrameType::settings, encode_settings(process.settings)))) {
    shared_.logger.error(kIngest, "ingest worker " + std::to_string(process.index) +
                                      ": cannot send its settings; it will be started again");
  }
  set_nonblocking(sockets[0]);
  auto channel = std::make_shared<Channel>();
  channel->fd = sockets[0];
  {
    std::lock_guard lock(channels_mutex_);
    new_channels_.push_back(std::move(channel));
  }
  wake_loop();
  shared_.logger.info(
      kIngest, std::string(process.drain ? "draining retired session " : "worker ") +
                   process.settings.client_id + " started (pid " + std::to_string(pid) + ")");
}

void IngestWorkers::supervise(const Config& config) {
  const auto now = std::chrono::steady_clock::now();
  const int wanted = config.mqtt.ingest_workers;
  if (wanted != wanted_) {
    // More workers: their sessions are recorded before they connect. Fewer:
    // the ones past the new number finish and are drained as retired.
    if (wanted > recorded_sessions()) record_sessions(wanted);
    for (int index = 0; index < wanted; ++index) {
      const bool present =
          std::any_of(processes_.begin(), processes_.end(),
                      [&](const Process& process) { return process.index == index; });
      if (present) continue;  // running, or draining: it is turned back below
      Process process;
      process.index = index;
      process.start_at = now;
      processes_.push_back(process);
    }
    for (auto& process : processes_) {
      const bool drain = process.index >= wanted;
      if (process.drain == drain) continue;
      process.drain = drain;
      if (process.pid > 0 && !process.terminating) {
        ::kill(process.pid, SIGTERM);
        process.terminating = true;
      }
    }
    wanted_ = wanted;
  }
  for (auto& process : processes_) {
    if (process.pid <= 0) continue;
    int status = 0;
    const pid_t reaped = ::waitpid(process.pid, &status, WNOHANG);
    if (reaped != process.pid) continue;
    process.pid = -1;
    if (process.terminating) {
      process.start_at = now;  // asked to stop: started again at once (new settings)
      process.backoff = 0ms;
    } else if (process.drain && WIFEXITED(status) && WEXITSTATUS(status) == kDrainedExitCode) {
      process.index = -1;  // drained and ended
    } else {
      ++shared_.metrics.ingest_worker_restarts;
      process.backoff = std::clamp(process.backoff * 2, std::chrono::milliseconds(kRestartMin),
                                   std::chrono::milliseconds(kRestartMax));
      process.start_at = now + process.backoff;
      shared_.logger.error(kIngest, "ingest worker " + process.settings.client_id + " ended (" +
                                        describe_exit(status) + "); starting it again in " +
                                        std::to_string(process.backoff.count()) + " ms");
    }
  }
  const auto before = processes_.size();
  std::erase_if(processes_, [](const Process& process) { return process.index < 0; });
  const bool drains_left = std::any_of(processes_.begin(), processes_.end(),
                                       [](const Process& process) { return process.drain; });
  if (processes_.size() != before && !drains_left && recorded_sessions() > wanted_) {
    record_sessions(wanted_);
  }
  std::int64_t running = 0;
  for (auto& process : processes_) {
    if (process.pid <= 0 && now >= process.start_at) spawn(process, config);
    if (process.pid > 0 && !process.drain && !process.terminating) {
      // A reload that changed the connection or the filters: start it again.
      if (reloaded_ &&
          worker_settings(config, process.index, false, stale_filters_) != process.settings) {
        ::kill(process.pid, SIGTERM);
        process.terminating = true;
      }
      ++running;
    }
  }
  shared_.metrics.ingest_workers = running;
  reloaded_ = false;
}

void IngestWorkers::reconfigure(const Config& before, const Config& after) {
  const auto now_filters = shared_filters(after);
  for (const auto& filter : shared_filters(before)) {
    if (!now_filters.contains(filter)) stale_filters_.insert(filter);
  }
  std::erase_if(stale_filters_,
                [&](const std::string& filter) { return now_filters.contains(filter); });
  reloaded_ = true;
}

void IngestWorkers::stop(std::chrono::steady_clock::time_point deadline) {
  for (auto& process : processes_) {
    if (process.pid > 0) ::kill(process.pid, SIGTERM);
  }
  // The group-commit thread keeps answering while the workers finish the
  // message in hand and disconnect.
  for (auto& process : processes_) {
    if (process.pid <= 0) continue;
    int status = 0;
    while (::waitpid(process.pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(process.pid, SIGKILL);
        ::waitpid(process.pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);  // polling a child's exit during shutdown
    }
    process.pid = -1;
  }
  processes_.clear();
  shared_.metrics.ingest_workers = 0;
  if (thread_.joinable()) {
    stop_thread_ = true;
    wake_loop();
    thread_.join();
    ::close(wake_pipe_[0]);
    ::close(wake_pipe_[1]);
    wake_pipe_[0] = wake_pipe_[1] = -1;
  }
}

// ---- the group-commit thread ---------------------------------------------------

void IngestWorkers::wake_loop() {
  // A full pipe already wakes the thread: the result does not matter.
  if (wake_pipe_[1] >= 0 && ::write(wake_pipe_[1], "w", 1) < 0) return;
}

void IngestWorkers::take_frames(Channel& channel, std::vector<RawMessage>& batch,
                                std::vector<Channel*>& senders) {
  char chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(channel.fd, chunk, sizeof chunk);
    if (n > 0) {
      channel.splitter.feed(std::string_view(chunk, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || errno != EAGAIN) channel.closed = true;
    break;
  }
  for (;;) {
    auto frame = channel.splitter.next();
    if (!frame) {
      shared_.logger.error(kIngest, "an ingest worker's socket is broken (" +
                                        frame.error().message +
                                        "); closing it (the worker restarts)");
      channel.closed = true;
      return;
    }
    if (!*frame) return;
    if ((*frame)->type == FrameType::message) {
      auto message = decode_message((*frame)->body);
      if (!message) {
        shared_.logger.error(kIngest, message.error().message);
        channel.closed = true;
        return;
      }
      ++shared_.metrics.received;
      channel.answered = false;
      batch.push_back(std::move(*message));
      senders.push_back(&channel);
    } else if ((*frame)->type == FrameType::connected) {
      channel.connected = true;
    } else if ((*frame)->type == FrameType::connection_lost) {
      channel.connected = false;
    }
  }
}

// One group per pass: the messages that are there when the poll wakes, and —
// while a sync is slow (an SD card) — those of the workers answered last
// time, which come back within a moment with their next message: waiting up
// to half the last commit's duration for them (at most kGatherMax) puts them
// in this sync instead of the next one.
void IngestWorkers::commit_loop() {
  constexpr auto kGatherMax = std::chrono::microseconds(2000);
  std::vector<std::shared_ptr<Channel>> channels;
  std::vector<pollfd> polled;
  std::vector<RawMessage> batch;
  std::vector<Channel*> senders;
  std::chrono::microseconds gather{0};
  char drain[256];
  auto& metrics = shared_.metrics;
  while (!stop_thread_) {
    {
      std::lock_guard lock(channels_mutex_);
      for (auto& channel : new_channels_) channels.push_back(std::move(channel));
      new_channels_.clear();
    }
    polled.assign(1, pollfd{wake_pipe_[0], POLLIN, 0});
    for (const auto& channel : channels) polled.push_back(pollfd{channel->fd, POLLIN, 0});
    if (::poll(polled.data(), polled.size(), -1) < 0 && errno != EINTR) {
      shared_.logger.error(kIngest, std::string("poll: ") + std::strerror(errno));
    }
    if ((polled[0].revents & POLLIN) != 0) {
      while (::read(wake_pipe_[0], drain, sizeof drain) > 0) {
      }
    }
    batch.clear();
    senders.clear();
    for (std::size_t i = 0; i < channels.size(); ++i) {
      if (polled[i + 1].revents != 0) take_frames(*channels[i], batch, senders);
    }
    if (!batch.empty() && gather.count() > 0) {
      const auto until = std::chrono::steady_clock::now() + gather;
      for (;;) {
        polled.clear();
        std::vector<Channel*> awaited;
        for (const auto& channel : channels) {
          if (channel->answered && !channel->closed) {
            polled.push_back(pollfd{channel->fd, POLLIN, 0});
            awaited.push_back(channel.get());
          }
        }
        const auto left = until - std::chrono::steady_clock::now();
        if (awaited.empty() || left <= std::chrono::nanoseconds(0)) break;
        const auto nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(left);
        timespec timeout{static_cast<time_t>(nanoseconds.count() / 1000000000),
                         static_cast<long>(nanoseconds.count() % 1000000000)};
        if (::ppoll(polled.data(), polled.size(), &timeout, nullptr) <= 0) break;
        for (std::size_t i = 0; i < awaited.size(); ++i) {
          if (polled[i].revents != 0) take_frames(*awaited[i], batch, senders);
        }
      }
    }
    if (!batch.empty()) {
      const auto started = std::chrono::steady_clock::now();
      const auto committed = shared_.acknowledge_path.commit_group(batch);
      gather = std::min(kGatherMax, std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now() - started) /
                                        2);
      ++metrics.group_commits;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto& sender = *senders[i];
        if (sender.closed) continue;
        const auto reply =
            encode_frame(committed[i] ? FrameType::committed : FrameType::refused, {});
        // Five bytes to a worker that waits for them: its buffer has room.
        if (!write_all(sender.fd, reply)) sender.closed = true;
        sender.answered = true;
      }
    }
    std::int64_t connected = 0;
    for (auto& channel : channels) {
      if (channel->closed) {
        ::close(channel->fd);
        channel->fd = -1;
      } else if (channel->connected) {
        ++connected;
      }
    }
    std::erase_if(channels, [](const auto& channel) { return channel->fd < 0; });
    metrics.ingest_workers_connected = connected;
  }
  for (auto& channel : channels) ::close(channel->fd);
  std::lock_guard lock(channels_mutex_);
  for (auto& channel : new_channels_) ::close(channel->fd);
  new_channels_.clear();
}

}  // namespace meter::agent
