#include "agent/daemon.hpp"

#include <cstdlib>
#include <iostream>

#include "agent/cli/cli.hpp"
#include "agent/normalizer/normalizer_thread.hpp"
#include "agent/ops/config_reload.hpp"
#include "agent/ops/signals.hpp"
#include "agent/source/batched_source.hpp"
#include "agent/source/ingest_workers.hpp"
#include "agent/source/mqtt_source.hpp"
#include "agent/uplink/uplink.hpp"
#include "common/buffer/buffer.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kBuffer = "buffer";
constexpr std::string_view kConfig = "config";
constexpr std::string_view kAgent = "agent";

}  // namespace

Daemon::Daemon(Config config, DaemonOptions options, Logger& logger, std::unique_ptr<Clock> clock)
    : options_(std::move(options)),
      logger_(logger),
      clock_(clock ? std::move(clock) : std::make_unique<SystemClock>()),
      endpoint_(
          metrics_,
          [this](std::int64_t now_ms) {
            return uplink_ ? uplink_->metrics().render_prometheus(now_ms) : std::string();
          },
          *clock_, logger_) {
  if (options_.buffer_path) config.buffer.path = *options_.buffer_path;
  config_ = std::make_shared<const Config>(std::move(config));
}

Daemon::~Daemon() {
  if (abandon_) {
    // The message callback is still inside the acknowledge path, retrying a
    // commit; the process is about to _Exit: leave both where they are.
    (void)source_.release();
    (void)workers_.release();
    (void)batched_.release();
    (void)acknowledge_path_.release();
  }
}

std::shared_ptr<const Config> Daemon::config() const {
  std::lock_guard lock(config_mutex_);
  return config_;
}

void Daemon::request_stop() {
  stop_ = true;
  loop_wake_.notify_all();
}

void Daemon::request_reload() {
  reload_ = true;
  loop_wake_.notify_all();
}

// The buffer, then the normalizer on its own connection, then the inbox the
// acknowledge path commits to (numbered after what the buffer absorbed).
Status Daemon::open_pipeline(const Config& current) {
  auto opened = Buffer::open(current.buffer);
  if (!opened) return opened.error();
  auto absorbed_to = (*opened)->inbox_position();
  if (!absorbed_to) return absorbed_to.error();
  inbox_progress_.publish(*absorbed_to);
  auto inbox =
      InboxWriter::open(current.buffer.path, current.buffer.durability == Durability::power_loss,
                        absorbed_to->segment);
  if (!inbox) return inbox.error();
  budget_.set_limit(current.buffer.max_size_bytes);

  normalizer_ = std::make_unique<NormalizerThread>(
      std::move(*opened),
      NormalizerThread::Shared{[this] { return config(); }, budget_, inbox_progress_, metrics_,
                               logger_, *clock_, max_page_count_, notifier_.watchdog_interval()});
  acknowledge_path_ = std::make_unique<AcknowledgePath>(
      std::move(*inbox),
      AcknowledgePath::Shared{budget_, inbox_progress_, metrics_, logger_,
                              [this] { normalizer_->wake(); }, max_page_count_},
      options_.inbox_max_bytes);
  normalizer_->start();
  return Ok{};
}

int Daemon::run(const std::function<void()>& poll) {
  const auto current = config();
  logger_.info(kAgent, std::string("meter-agent ") + kVersion + " starting, gateway " +
                           current->gateway_id + ", buffer " + current->buffer.path);
  if (auto opened = open_pipeline(*current); !opened) {
    logger_.error(kBuffer, opened.error().message);
    return kExitFailure;
  }
  uplink_ = std::make_unique<Uplink>([this] { return config(); }, logger_);
  if (auto started = uplink_->start(current->buffer); !started) {
    logger_.error(kBuffer, started.error().message);
    uplink_.reset();
  }
  endpoint_.listen(current->http.listen);
  source_ = std::make_unique<MqttSource>(
      MqttSource::Shared{[this] { return config(); }, *acknowledge_path_, metrics_, logger_,
                         *clock_, [this] { loop_wake_.notify_all(); }, std::nullopt});
  source_->start();
  batched_ = std::make_unique<BatchedSource>(BatchedSource::Shared{[this] { return config(); },
                                                                   *acknowledge_path_,
                                                                   metrics_,
                                                                   logger_,
                                                                   *clock_,
                                                                   current->buffer.path,
                                                                   {}});
  batched_->start();
  workers_ = std::make_unique<IngestWorkers>(IngestWorkers::Shared{
      *acknowledge_path_, metrics_, logger_, options_.worker_executable, current->buffer.path});
  workers_->start(*current);
  notifier_.ready();  // the buffer is open; connecting is the loop's job

  while (!stop_) {
    if (poll) poll();
    if (stop_) break;
    notifier_.watchdog(normalizer_->heartbeat());
    if (reload_.exchange(false)) {
      notifier_.reloading();
      reload();
      notifier_.ready();
    }
    source_->supervise();
    workers_->supervise(*config());
    std::unique_lock lock(loop_mutex_);
    loop_wake_.wait_for(lock, 100ms, [&] {
      return stop_.load() || reload_.load() || source_->needs_supervision();
    });
  }
  shutdown();
  return kExitOk;
}

void Daemon::reload() {
  const auto current = config();
  auto reloaded = reload_config(*current, options_.buffer_path);
  if (!reloaded) {
    logger_.error(kConfig,
                  "reload refused, keeping the running configuration: " + reloaded.error().message);
    return;
  }
  for (const auto& note : reloaded->not_applied) logger_.warning(kConfig, note);
  logger_.info(kConfig, describe_reload(current->source, reloaded->changed));
  auto fresh = std::make_shared<const Config>(std::move(reloaded->config));
  {
    std::lock_guard lock(config_mutex_);
    config_ = fresh;
  }
  logger_.configure(fresh->log);
  budget_.set_limit(fresh->buffer.max_size_bytes);  // the normalizer measures on its next pass
  source_->reconfigure(*current, *fresh);
  workers_->reconfigure(*current, *fresh);
  batched_->reconfigure(*current, *fresh);
  if (fresh->http != current->http) endpoint_.listen(fresh->http.listen);
  if (uplink_) uplink_->reloaded();  // new token or settings: tried at once
}

void Daemon::shutdown() {
  notifier_.stopping();
  logger_.info(kAgent, "stopping: no new messages; finishing the batch in hand");
  const auto deadline = std::chrono::steady_clock::now() + options_.shutdown_bound;
  // The workers and the batched connection first: their messages in hand are
  // committed while the gateway's status still says online.
  workers_->stop(deadline);
  batched_->stop(deadline);
  if (!source_->stop(deadline)) {
    abandon_ = true;
    logger_.error(kAgent,
                  "a message could not be stored before shutdown; it is NOT acknowledged "
                  "and the broker will redeliver it");
  }
  if (uplink_) uplink_->stop();  // ends a request in flight; the central side dedups a resend
  normalizer_->stop_and_drain();
  endpoint_.stop();
  logger_.info(kAgent, "stopped");
}

int run_daemon_command(const std::string& config_path,
                       const std::optional<std::string>& buffer_path) {
  Logger logger(std::cerr, Logger::stderr_is_journal());
  auto config = load_config(config_path);
  if (!config) {
    logger.error(kConfig, config.error().message);
    return kExitConfig;
  }
  logger.configure(config->log);
  install_signal_handlers();

  DaemonOptions options;
  options.buffer_path = buffer_path;
  Daemon daemon(std::move(*config), options, logger);
  const int code = daemon.run([&] {
    if (stop_signalled()) daemon.request_stop();
    if (take_reload_signal()) daemon.request_reload();
  });
  if (daemon.must_abandon()) {
    std::cerr.flush();
    std::_Exit(code);
  }
  return code;
}

}  // namespace meter::agent
