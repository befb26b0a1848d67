#include "agent/source/ingest_worker.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "agent/cli/cli.hpp"
#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/ops/signals.hpp"
#include "agent/source/ingest_channel.hpp"
#include "agent/source/mqtt_source.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kWorker = "ingest";
constexpr auto kRetryMax = 5000ms;

// Sends each message to the daemon and returns once it is committed; a
// refusal is retried with backoff (the daemon logged why). A daemon that is
// gone ends the process here, the message unacknowledged.
class ChannelSink final : public MessageSink {
 public:
  ChannelSink(int fd, std::mutex& write_mutex) : fd_(fd), write_mutex_(write_mutex) {}

  void commit(const RawMessage& message) override {
    const auto frame = encode_frame(FrameType::message, encode_message(message));
    std::chrono::milliseconds delay = 20ms;
    for (;;) {
      {
        std::lock_guard lock(write_mutex_);
        if (!write_all(fd_, frame)) daemon_gone();
      }
      auto reply = read_frame(fd_, splitter_);
      if (!reply || !*reply) daemon_gone();
      if ((*reply)->type == FrameType::committed) return;
      if ((*reply)->type != FrameType::refused) daemon_gone();
      // A retry delay, not a synchronization: the disk needs time to get room.
      std::this_thread::sleep_for(delay);
      delay = std::min<std::chrono::milliseconds>(delay * 2, kRetryMax);
    }
  }

 private:
  [[noreturn]] static void daemon_gone() {
    // Returning would acknowledge a message nobody committed.
    std::cerr.flush();
    std::_Exit(kExitFailure);
  }

  int fd_;
  std::mutex& write_mutex_;
  FrameSplitter splitter_;
};

}  // namespace

int run_ingest_worker() {
  // Dies with the daemon (set before exec too: the daemon checked it was
  // still there after setting it).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  Logger logger(std::cerr, Logger::stderr_is_journal());
  FrameSplitter splitter;
  auto first = read_frame(kIngestChannelFd, splitter);
  if (!first || !*first || (*first)->type != FrameType::settings) {
    logger.error(kWorker,
                 "started without settings from the daemon (run by `meter-agent run` "
                 "only, with mqtt.ingest_workers)");
    return kExitUsage;
  }
  auto settings = decode_settings((*first)->body);
  if (!settings) {
    logger.error(kWorker, settings.error().message);
    return kExitFailure;
  }
  LogConfig log;
  log.level = settings->log_level;
  logger.configure(log);
  install_signal_handlers();

  Config config;
  config.source = "<the daemon>";
  config.gateway_id = settings->gateway_id;
  config.mqtt = settings->mqtt;
  auto shared_config = std::make_shared<const Config>(std::move(config));
  WorkerIdentity identity;
  identity.client_id = settings->client_id;
  if (settings->drain) {
    // Leave every filter this session may hold; subscribe to none.
    identity.unsubscribe_on_connect.insert(settings->filters.begin(), settings->filters.end());
  } else {
    identity.filters.insert(settings->filters.begin(), settings->filters.end());
  }
  identity.unsubscribe_on_connect.insert(settings->stale_filters.begin(),
                                         settings->stale_filters.end());

  std::mutex write_mutex;
  ChannelSink sink(kIngestChannelFd, write_mutex);
  Metrics metrics;
  SystemClock clock;
  std::mutex wake_mutex;
  std::condition_variable wake;
  MqttSource source(MqttSource::Shared{[shared_config] { return shared_config; }, sink, metrics,
                                       logger, clock, [&] { wake.notify_all(); }, identity});
  source.start();

  bool reported_connected = false;
  bool drained = false;
  std::int64_t seen_received = -1;
  auto quiet_since = std::chrono::steady_clock::now();
  while (!stop_signalled()) {
    source.supervise();
    const bool connected = metrics.mqtt_connected.load();
    if (connected != reported_connected) {
      reported_connected = connected;
      std::lock_guard lock(write_mutex);
      const auto type = connected ? FrameType::connected : FrameType::connection_lost;
      if (!write_all(kIngestChannelFd, encode_frame(type, {}))) break;
    }
    if (settings->drain && connected) {
      const auto now = std::chrono::steady_clock::now();
      if (metrics.received.load() != seen_received) {
        seen_received = metrics.received.load();
        quiet_since = now;
      }
      if (!source.session_resumed() ||
          (source.unsubscribes_done() && now - quiet_since >= kDrainQuiet)) {
        drained = true;
        break;
      }
    }
    std::unique_lock lock(wake_mutex);
    wake.wait_for(lock, 100ms, [&] { return source.needs_supervision(); });
  }
  if (!source.stop(std::chrono::steady_clock::now() + 10s)) {
    std::cerr.flush();
    std::_Exit(kExitFailure);
  }
  if (drained) {
    if (auto ended = source.end_session(); !ended) {
      logger.error(kWorker, "retired session " + settings->client_id +
                                " drained but not ended: " + ended.error().message);
      return kExitFailure;
    }
    logger.info(kWorker, "retired session " + settings->client_id + " drained and ended");
    return kDrainedExitCode;
  }
  return kExitOk;
}

}  // namespace meter::agent
