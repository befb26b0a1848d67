#include "agent/uplink/uplink.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <utility>

#include "agent/ops/clock_sync.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/uplink/gzip.hpp"
#include "common/uplink/wire_format.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;
constexpr std::string_view kUplink = "uplink";
// The backlog counts scan the unsynced rows (a million during a long outage's
// drain: ~0.2 s); between scans the uplink keeps them current from its own
// batches. Every 2 s cost the agent half its CPU during a drain (docs/BENCHMARKS.md).
constexpr auto kStatusRefresh = 10s;
// The disk budget (buffer.max_size_mib): pruning starts once the database uses
// this share of it, and goes down to the next; the redelivery window may keep
// at most 1/kRedeliveryDivisor of it.
constexpr double kBudgetPruneAt = 0.9;
constexpr double kBudgetPruneTo = 0.75;
constexpr std::int64_t kRedeliveryDivisor = 16;
constexpr auto kBudgetCheckInterval = 1s;
constexpr auto kStateSave = 5s;
// Requests started behind one still in flight before the window must run empty
// (and selection starts from the watermark again): ~100k events at the defaults.
constexpr int kMaxBehind = 100;
// Bodies smaller than this go uncompressed (gzip's header costs more than it saves).
constexpr std::size_t kGzipThreshold = 2048;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void metric(std::string& out, const char* name, const char* type, const char* help,
            std::int64_t value) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  out += name;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

// Everything the transport is built from: a change means a new one.
std::string transport_key(const UplinkConfig& c) {
  std::ostringstream out;
  out << c.ca_file << '|' << c.cert_file << '|' << c.key_file << '|' << c.verify << '|'
      << c.timeout_ms << '|' << c.connect_timeout_ms;
  return out.str();
}

std::string describe_status(long status, const IngestError& error) {
  std::string text = "HTTP " + std::to_string(status);
  if (!error.error.empty()) text += " " + error.error;
  if (!error.detail.empty()) text += ": " + error.detail;
  return text;
}

}  // namespace

// ---- metrics ---------------------------------------------------------------

void UplinkMetrics::set_last_error(std::string error) {
  std::lock_guard lock(mutex_);
  last_error_ = std::move(error);
}

std::string UplinkMetrics::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

std::string UplinkMetrics::render_prometheus(std::int64_t now) const {
  std::string out;
  metric(out, "meter_agent_uplink_enabled", "gauge", "1 when uplink.url is configured",
         enabled ? 1 : 0);
  metric(out, "meter_agent_uplink_requests_total", "counter", "upload requests sent",
         requests.load());
  metric(out, "meter_agent_uplink_requests_in_flight", "gauge",
         "upload requests waiting for their answer (up to uplink.max_in_flight)", in_flight.load());
  metric(out, "meter_agent_uplink_request_failures_total", "counter",
         "upload requests without a 200 (connection errors, timeouts, non-200 statuses)",
         request_failures.load());
  metric(out, "meter_agent_uplink_consecutive_failures", "gauge",
         "failed requests since the last 200", consecutive_failures.load());
  metric(out, "meter_agent_uplink_raw_confirmed_total", "counter",
         "raw events the central confirmed (stored or duplicate)", raw_confirmed.load());
  metric(out, "meter_agent_uplink_measurements_confirmed_total", "counter",
         "measurement revisions the central confirmed (stored, duplicate or superseded)",
         measurements_confirmed.load());
  metric(out, "meter_agent_uplink_rejected_total", "counter",
         "records the central rejected (quarantined)", rejected.load());
  metric(out, "meter_agent_uplink_unanswered_total", "counter",
         "records a 200 response named no matching outcome for (sent again)", missing.load());
  metric(out, "meter_agent_uplink_splits_total", "counter", "batches halved after a 413",
         splits.load());
  metric(out, "meter_agent_uplink_bytes_sent_total", "counter",
         "request body bytes sent (after gzip)", bytes_sent.load());
  metric(out, "meter_agent_uplink_bytes_uncompressed_total", "counter",
         "request body bytes before gzip", bytes_uncompressed.load());
  metric(out, "meter_agent_uplink_auth_failed", "gauge",
         "1 while the central refuses the token (401/403): nothing is uploaded",
         auth_failed ? 1 : 0);
  metric(out, "meter_agent_uplink_last_success_timestamp_seconds", "gauge",
         "time of the last 200 response (0: none since start)", last_success_ms.load() / 1000);
  metric(out, "meter_agent_uplink_last_error_timestamp_seconds", "gauge",
         "time of the last failed request (0: none since start)", last_error_ms.load() / 1000);
  metric(out, "meter_agent_uplink_backlog_records", "gauge",
         "raw events and measurement revisions waiting for the central (quarantined excluded)",
         waiting.load());
  const auto oldest = oldest_waiting_received_ms.load();
  metric(out, "meter_agent_uplink_backlog_age_seconds", "gauge",
         "age of the oldest waiting record by receive time; 0 when none",
         oldest > 0 ? std::max<std::int64_t>(0, (now - oldest) / 1000) : 0);
  metric(out, "meter_agent_uplink_quarantined_records", "gauge",
         "records the central rejected, kept until `meter-agent requeue`", quarantined.load());
  metric(out, "meter_agent_uplink_confirmed_last_minute", "gauge",
         "records confirmed by the central in the last minute", rate_per_minute.load());
  metric(out, "meter_agent_uplink_pruned_measurements_total", "counter",
         "synced measurements pruned (after uplink.retention, or for the disk budget)",
         pruned_measurements.load());
  metric(out, "meter_agent_clock_synchronized", "gauge",
         "1 while the gateway clock is known to be synchronized (else readings stamped with it "
         "get clock_unsynced)",
         clock_synchronized ? 1 : 0);
  metric(out, "meter_agent_uplink_pruned_raw_total", "counter",
         "synced raw messages pruned (after uplink.retention, or for the disk budget)",
         pruned_raw.load());
  metric(out, "meter_agent_uplink_budget_prunes_total", "counter",
         "times confirmed data was pruned before uplink.retention to keep the buffer within "
         "buffer.max_size_mib",
         budget_prunes.load());
  return out;
}

// ---- the stage ---------------------------------------------------------------

Uplink::Uplink(ConfigSource config, Logger& logger,
               std::function<std::unique_ptr<HttpTransport>(const UplinkConfig&)> transport_factory)
    : config_(std::move(config)),
      logger_(logger),
      transport_factory_(std::move(transport_factory)),
      random_(std::random_device{}()) {
  if (!transport_factory_) {
    transport_factory_ = [](const UplinkConfig& c) { return std::make_unique<CurlTransport>(c); };
  }
}

Uplink::~Uplink() { stop(); }

Status Uplink::start(const BufferConfig& buffer) {
  init_curl_once();  // before the thread: curl_global_init is not thread-safe
  auto opened = Buffer::open(buffer);
  if (!opened) return opened.error();
  buffer_ = std::move(*opened);
  check_clock(*config_());
  thread_ = std::thread([this] { loop(); });
  return Ok{};
}

void Uplink::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  abort_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Uplink::reloaded() {
  {
    std::lock_guard lock(mutex_);
    reloaded_ = true;
  }
  wake_.notify_all();
}

std::optional<std::string> Uplink::read_token(const UplinkConfig& config, std::string& problem) {
  if (!config.token_file.empty()) {
    std::ifstream file(config.token_file, std::ios::binary);
    if (!file) {
      problem = "cannot read uplink.token_file " + config.token_file;
      return std::nullopt;
    }
    std::string token((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    while (!token.empty() &&
           (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
      token.pop_back();
    }
    struct stat info {};
    if (::stat(config.token_file.c_str(), &info) == 0 && (info.st_mode & 077) != 0) {
      logger_.warning(kUplink, "uplink.token_file " + config.token_file +
                                   " is readable by group or others; it holds a secret "
                                   "(chmod 600)");
    }
    if (token.empty()) {
      problem = "uplink.token_file " + config.token_file + " is empty";
      return std::nullopt;
    }
    return token;
  }
  const char* value = std::getenv(config.token_env.c_str());
  if (value == nullptr || *value == '\0') {
    problem = "the environment variable " + config.token_env + " (uplink.token_env) is not set";
    return std::nullopt;
  }
  return std::string(value);
}

void Uplink::loop() {
  bool announced = false;
  while (true) {
    const auto config = config_();
    const auto& uplink = config->uplink;
    metrics_.enabled = uplink.enabled();
    check_clock(*config);
    Next next = Next::idle;
    if (!uplink.enabled()) drain_window();  // a reload turned it off mid-drain
    if (uplink.enabled()) {
      if (!announced) {
        logger_.info(kUplink, "uploading to " + uplink.ingest_url());
        announced = true;
      }
      refresh_status();
      maybe_prune(*config);
      next = send_once(*config);
      save_state();
    }
    std::unique_lock lock(mutex_);
    if (stop_) break;
    if (next == Next::more && !reloaded_) continue;
    std::chrono::milliseconds wait{uplink.enabled() ? uplink.interval_ms : 1000};
    if (next == Next::retry) wait = std::chrono::milliseconds(backoff_ms_);
    wake_.wait_for(lock, wait, [&] { return stop_ || reloaded_; });
    if (stop_) break;
    if (reloaded_) {
      reloaded_ = false;
      backoff_ms_ = 0;  // a new token (or URL) is tried at once
      metrics_.consecutive_failures = 0;
    }
  }
  drain_window();  // stop() has set abort_: the requests end at once
  save_state();
}

void Uplink::check_clock(const Config& config) {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_clock_check_) return;
  next_clock_check_ = now + 1s;
  const auto wall = now_ms();
  ClockState state = ClockState::synchronized;
  if (config.normalize.clock == ClockTrust::automatic) state = probe_clock();
  const bool synchronized = state == ClockState::synchronized;
  if (synchronized) clock_good_ms_ = wall;
  if (clock_synchronized_ == synchronized) return;
  if (auto recorded =
          buffer_->record_clock_state(synchronized, clock_good_ms_ ? clock_good_ms_ : wall, wall);
      !recorded) {
    logger_.warning(kUplink, "cannot record the clock state: " + recorded.error().message);
    return;  // tried again next time
  }
  clock_synchronized_ = synchronized;
  metrics_.clock_synchronized = synchronized;
  if (synchronized) {
    logger_.info(kUplink, "the gateway clock is synchronized");
  } else {
    logger_.warning(kUplink, std::string("the gateway clock is ") + describe(state) +
                                 ": readings stamped with it are flagged clock_unsynced "
                                 "(normalize.clock: synchronized if you know better)");
  }
}

void Uplink::refresh_status() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_status_) return;
  next_status_ = now + kStatusRefresh;
  auto status = buffer_->sync_status();
  if (!status) {
    logger_.warning(kUplink, "cannot read the sync status: " + status.error().message);
    return;
  }
  metrics_.waiting = status->waiting();
  metrics_.oldest_waiting_received_ms = status->oldest_waiting_received_ms.value_or(0);
  metrics_.quarantined = status->quarantined;
  while (!recent_.empty() && now - recent_.front().first > 60s) recent_.pop_front();
  std::int64_t sum = 0;
  for (const auto& entry : recent_) sum += entry.second;
  metrics_.rate_per_minute = sum;
}

// Pruning: confirmed data older than uplink.retention, every prune_interval;
// and, with a disk budget, confirmed data of any age, the oldest stored first,
// once the database passes kBudgetPruneAt of the budget (down to
// kBudgetPruneTo): an agent whose buffer filled during an outage must make room
// by itself once the central has confirmed the backlog, whatever the retention.
void Uplink::maybe_prune(const Config& config) {
  const auto& uplink = config.uplink;
  const std::int64_t budget = config.buffer.max_size_bytes;
  const auto now = std::chrono::steady_clock::now();
  const bool by_age = uplink.retention_ms > 0 && now >= next_prune_;
  bool for_budget = false;
  const std::int64_t confirmed = metrics_.raw_confirmed + metrics_.measurements_confirmed;
  if (budget != 0 && now >= next_budget_check_) {
    next_budget_check_ = now + kBudgetCheckInterval;
    auto used = buffer_->used_bytes();
    if (!used) {
      logger_.warning(kUplink,
                      "cannot measure the buffer for its disk budget: " + used.error().message);
    } else if (static_cast<double>(*used) > kBudgetPruneAt * static_cast<double>(budget)) {
      // Nothing new became prunable unless the central confirmed something
      // since the last try (or the retention's turn has come).
      for_budget = confirmed != confirmed_at_budget_prune_ || by_age;
    }
  }
  if (!by_age && !for_budget) return;
  // The redelivery window, bounded in bytes under a budget: 50,000 big
  // payloads would otherwise be more than a small budget holds.
  std::int64_t window = kRedeliveryWindow;
  if (budget != 0) {
    auto bounded = buffer_->redelivery_window(budget / kRedeliveryDivisor);
    if (!bounded) {
      logger_.warning(kUplink, "pruning failed (nothing deleted): " + bounded.error().message);
      return;
    }
    window = *bounded;
  }
  auto count = [&](const PruneStats& pruned) {
    metrics_.pruned_measurements += pruned.measurements_deleted;
    metrics_.pruned_raw += pruned.raw_deleted;
    return std::to_string(pruned.measurements_deleted) + " confirmed measurements and " +
           std::to_string(pruned.raw_deleted) + " confirmed raw messages";
  };
  if (by_age) {
    next_prune_ = now + std::chrono::milliseconds(uplink.prune_interval_ms);
    auto pruned = buffer_->prune_synced(PruneScope{
        now_ms() - uplink.retention_ms, std::numeric_limits<std::int64_t>::max(), window});
    if (!pruned) {
      logger_.warning(kUplink, "pruning failed (nothing deleted): " + pruned.error().message);
      return;
    }
    if (pruned->measurements_deleted + pruned->raw_deleted > 0) {
      logger_.info(kUplink, "pruned " + count(*pruned) + " older than uplink.retention");
    }
  }
  if (for_budget) {
    confirmed_at_budget_prune_ = confirmed;
    const auto started = std::chrono::steady_clock::now();
    auto pruned = buffer_->prune_to_size(
        static_cast<std::int64_t>(kBudgetPruneTo * static_cast<double>(budget)), window);
    // Each try scans the measurements; while the central confirms a backlog
    // batch by batch, trying every second could keep this thread from
    // uploading: at most a tenth of its time goes to pruning.
    next_budget_check_ =
        std::max(next_budget_check_, std::chrono::steady_clock::now() +
                                         10 * (std::chrono::steady_clock::now() - started));
    if (!pruned) {
      logger_.warning(kUplink, "pruning for the disk budget failed (nothing deleted): " +
                                   pruned.error().message);
      return;
    }
    auto used = buffer_->used_bytes();
    const std::string now_used = used ? std::to_string(*used) : "?";
    if (pruned->measurements_deleted + pruned->raw_deleted > 0) {
      ++metrics_.budget_prunes;
      nothing_to_prune_said_ = false;
      logger_.warning(kUplink, "the buffer is near its disk budget (buffer.max_size_mib): pruned " +
                                   count(*pruned) +
                                   ", the oldest first, before uplink.retention; it uses " +
                                   now_used + " of " + std::to_string(budget) + " bytes now");
    } else if (!std::exchange(nothing_to_prune_said_, true)) {
      logger_.warning(kUplink, "the buffer is near its disk budget (buffer.max_size_mib, " +
                                   now_used + " of " + std::to_string(budget) +
                                   " bytes) and holds nothing confirmed to prune: waiting for "
                                   "the central to confirm the backlog");
    }
  }
}

void Uplink::save_state() {
  const auto now = std::chrono::steady_clock::now();
  std::map<std::string, std::string> state{
      {"last_success_ms", std::to_string(metrics_.last_success_ms.load())},
      {"last_error_ms", std::to_string(metrics_.last_error_ms.load())},
      {"last_error", metrics_.last_error()},
      {"auth_failed", metrics_.auth_failed ? "1" : "0"},
      {"confirmed_last_minute", std::to_string(metrics_.rate_per_minute.load())},
  };
  std::string text;
  for (const auto& [key, value] : state) text += key + "=" + value + "\n";
  // Written when something other than the rate changed, or every few seconds.
  const auto without_rate = text.substr(0, text.find("confirmed_last_minute")) +
                            text.substr(text.find('\n', text.find("confirmed_last_minute")));
  if (without_rate == saved_state_ && now < next_state_save_) return;
  saved_state_ = without_rate;
  next_state_save_ = now + kStateSave;
  if (auto saved = buffer_->put_uplink_state(state); !saved) {
    logger_.debug(kUplink, "cannot save the uplink state: " + saved.error().message);
  }
}

Uplink::Next Uplink::handle_failure(const UplinkConfig& config, const std::string& what, bool auth,
                                    std::optional<std::int64_t> retry_after_ms, bool refused) {
  ++metrics_.request_failures;
  ++metrics_.consecutive_failures;
  metrics_.last_error_ms = now_ms();
  metrics_.set_last_error(what);
  if (auth) {
    if (!metrics_.auth_failed) {
      logger_.error(kUplink, "the central refuses this gateway's token (" + what +
                                 "): uploads STOPPED, nothing is deleted; fix uplink.token_file "
                                 "/ token_env and reload (SIGHUP); retrying every " +
                                 std::to_string(config.auth_retry_ms / 1000) + "s");
    } else {
      logger_.error(kUplink, "still refused (" + what + "): uploads stopped");
    }
    metrics_.auth_failed = true;
    backoff_ms_ = config.auth_retry_ms;
    return Next::retry;
  }
  // Capped exponential backoff with jitter: uniformly in [d/2, d], d doubling
  // from retry.min to retry.max; never shorter than Retry-After.
  const auto failures = std::min<std::int64_t>(metrics_.consecutive_failures.load(), 40);
  std::int64_t ceiling = config.retry_min_ms;
  for (std::int64_t i = 1; i < failures && ceiling < config.retry_max_ms; ++i) ceiling *= 2;
  if (refused) ceiling = config.retry_max_ms;
  ceiling = std::min(ceiling, config.retry_max_ms);
  std::uniform_int_distribution<std::int64_t> jitter(ceiling / 2, ceiling);
  backoff_ms_ = jitter(random_);
  if (retry_after_ms) {
    // Honoured, but bounded: a bogus Retry-After of a year must not stop uploads.
    backoff_ms_ = std::max(backoff_ms_, std::min(*retry_after_ms, std::int64_t{3600 * 1000}));
  }
  const std::string message =
      what + "; nothing lost, retrying in " + std::to_string(backoff_ms_) + " ms";
  if (refused) {
    logger_.error(kUplink, "the central refused a whole batch as invalid (" + message +
                               "). This is a bug in meter-agent or the central service: please "
                               "report it");
  } else if (metrics_.consecutive_failures == 1) {
    logger_.warning(kUplink, message);
  } else {
    logger_.warning(kUplink, "still failing (" + std::to_string(metrics_.consecutive_failures) +
                                 " in a row): " + message);
  }
  return Next::retry;
}

std::optional<Uplink::Next> Uplink::launch(const Config& config, std::optional<SyncCursor> after) {
  const auto& uplink = config.uplink;
  SyncLimits limits{uplink.batch_max_records, uplink.batch_max_bytes};
  if (split_records_ != 0) {
    limits.max_records = split_records_;
    limits.max_bytes = split_bytes_;
  }
  auto selected = buffer_->select_unsynced(limits, after);
  if (!selected) {
    logger_.warning(kUplink, "cannot read the buffer: " + selected.error().message);
    backoff_ms_ = uplink.retry_min_ms;
    return Next::retry;
  }
  if (selected->empty()) {
    if (!after) split_records_ = 0;
    return Next::idle;
  }
  std::string problem;
  const auto token = read_token(uplink, problem);
  if (!token) return handle_failure(uplink, problem, true, std::nullopt, false);
  const auto key = transport_key(uplink);
  if (key != transport_key_) {
    if (!window_.empty()) return Next::more;  // new settings: once the window is empty
    transports_.clear();
    transport_key_ = key;
  }
  // A transport per request in flight (a connection each, kept for reuse).
  std::size_t slot = 0;
  while (std::any_of(window_.begin(), window_.end(),
                     [&](const InFlight& in) { return in.slot == slot; })) {
    ++slot;
  }
  if (slot >= transports_.size()) transports_.resize(slot + 1);
  if (!transports_[slot]) transports_[slot] = transport_factory_(uplink);

  InFlight in;
  in.batch = std::move(*selected);
  in.slot = slot;
  auto& batch = in.batch;
  batch.backlog_records = std::max<std::int64_t>(
      0, metrics_.waiting.load() - static_cast<std::int64_t>(batch.records()));
  if (metrics_.oldest_waiting_received_ms > 0) {
    batch.oldest_received_ms = metrics_.oldest_waiting_received_ms.load();
  }
  UplinkEnvelope envelope{config.gateway_id, buffer_->buffer_id(), now_ms()};
  auto post = std::make_shared<HttpPost>();
  post->url = uplink.ingest_url();
  post->bearer_token = *token;
  post->abort = &abort_;
  post->body = encode_batch(envelope, batch);
  metrics_.bytes_uncompressed += static_cast<std::int64_t>(post->body.size());
  if (uplink.gzip_level > 0 && post->body.size() >= kGzipThreshold) {
    auto packed = gzip_compress(post->body, uplink.gzip_level);
    if (packed) {
      post->body = std::move(*packed);
      post->gzip = true;
    }
  }
  ++metrics_.requests;
  in.post = post;
  HttpTransport* transport = transports_[slot].get();
  if (uplink.max_in_flight <= 1) {
    // One at a time: on this thread (no thread per request).
    std::promise<HttpOutcome> done;
    done.set_value(transport->post(*post));
    in.outcome = done.get_future();
  } else {
    in.outcome =
        std::async(std::launch::async, [transport, post] { return transport->post(*post); });
  }
  window_.push_back(std::move(in));
  metrics_.in_flight = static_cast<std::int64_t>(window_.size());
  return std::nullopt;
}

Uplink::Next Uplink::send_once(const Config& config) {
  const auto& uplink = config.uplink;
  // Requests in flight at once: several only while a backlog drains (each
  // batch selected after the one before it), one while a split is in force.
  const std::size_t depth =
      split_records_ != 0 ? 1 : std::max<std::size_t>(1, uplink.max_in_flight);
  std::optional<Next> stopped;
  if (window_.empty()) behind_ = 0;
  // Every so often the window runs empty, so that the next batch starts from
  // the watermark again: what a long drain passed by (a revision raised
  // behind the cursor, a requeued record) does not wait for its end.
  while (window_.size() < depth && behind_ < kMaxBehind && !abort_) {
    if (!window_.empty() && !window_.back().batch.limited) break;  // nothing more behind it
    if (!window_.empty()) ++behind_;
    std::optional<SyncCursor> after;
    if (!window_.empty()) after = window_.back().batch.through;
    stopped = launch(config, after);
    if (stopped) break;
  }
  if (window_.empty()) return stopped.value_or(Next::idle);
  if (stopped == Next::retry) {  // handle_failure has said why and set the backoff
    drain_window();
    return Next::retry;
  }
  InFlight front = std::move(window_.front());
  window_.pop_front();
  const auto outcome = front.outcome.get();
  metrics_.in_flight = static_cast<std::int64_t>(window_.size());
  metrics_.bytes_sent += static_cast<std::int64_t>(front.post->body.size());
  if (abort_) {
    drain_window();
    return Next::idle;  // shutdown: whatever the central stored is resent next run
  }
  const auto splits = metrics_.splits.load();
  const auto missing = metrics_.missing.load();
  const auto next = finish(config, front, outcome);
  // After a failure, a split or records left unanswered, the batches behind
  // are answered and the next one starts from the watermark again.
  if (next == Next::retry || metrics_.splits != splits || metrics_.missing != missing) {
    drain_window();
  }
  if (next == Next::idle && !window_.empty()) return Next::more;  // its answer is due
  return next;
}

void Uplink::drain_window() {
  // The requests behind one that failed (or was split, or at shutdown): their
  // answers still confirm what they confirm, but change no backoff or split.
  while (!window_.empty()) {
    InFlight in = std::move(window_.front());
    window_.pop_front();
    const auto outcome = in.outcome.get();
    metrics_.in_flight = static_cast<std::int64_t>(window_.size());
    metrics_.bytes_sent += static_cast<std::int64_t>(in.post->body.size());
    if (outcome.status == 200 && !abort_) {
      confirm(*config_(), in.batch, outcome, true);
    } else {
      ++metrics_.request_failures;
    }
  }
}

Uplink::Next Uplink::confirm(const Config& config, const UplinkBatch& batch,
                             const HttpOutcome& outcome, bool behind_failure) {
  const auto& uplink = config.uplink;
  auto response = parse_ingest_response(outcome.body, batch);
  if (!response && behind_failure) {
    ++metrics_.request_failures;
    return Next::retry;
  }
  if (!response) {
    // Not a protocol answer (a proxy's page?): nothing confirmed, sent again.
    return handle_failure(uplink, "HTTP 200 without a readable answer: " + response.error().message,
                          false, std::nullopt, false);
  }
  auto applied = buffer_->apply_ingest_response(batch, *response, now_ms());
  if (!applied) {
    // The central has the records; marking them failed, so they are sent
    // again later and answered `duplicate`: harmless.
    logger_.warning(kUplink, "cannot record the central's answer (sent again later): " +
                                 applied.error().message);
    if (!behind_failure) backoff_ms_ = uplink.retry_min_ms;
    return Next::retry;
  }
  metrics_.raw_confirmed += applied->raw_confirmed;
  metrics_.measurements_confirmed += applied->measurements_confirmed;
  metrics_.rejected += applied->raw_rejected + applied->measurements_rejected;
  metrics_.missing += applied->missing;
  metrics_.waiting -= applied->raw_confirmed + applied->measurements_confirmed +
                      applied->raw_rejected + applied->measurements_rejected;
  metrics_.quarantined += applied->raw_rejected + applied->measurements_rejected;
  recent_.emplace_back(std::chrono::steady_clock::now(),
                       applied->raw_confirmed + applied->measurements_confirmed);
  metrics_.last_success_ms = now_ms();
  if (!behind_failure) {
    metrics_.consecutive_failures = 0;
    if (metrics_.auth_failed) {
      logger_.info(kUplink, "the central accepts the token again: uploads resumed");
      metrics_.auth_failed = false;
    }
  }
  if (applied->raw_rejected + applied->measurements_rejected > 0) {
    for (std::size_t i = 0; i < batch.raw_events.size(); ++i) {
      const auto& r = response->raw_events[i];
      if (r.outcome != RecordOutcome::rejected) continue;
      logger_.error(kUplink, "raw event seq " + std::to_string(batch.raw_events[i].seq) +
                                 " rejected by the central (" + r.reason + ": " + r.detail +
                                 "); quarantined, see `meter-agent status`, resend with "
                                 "`meter-agent requeue`");
    }
    for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
      const auto& r = response->measurements[i];
      if (r.outcome != RecordOutcome::rejected) continue;
      const auto& m = batch.measurements[i].measurement;
      logger_.error(kUplink, "measurement " + m.event_id + " revision " +
                                 std::to_string(m.revision) + " (" + m.device_id + " " +
                                 m.metric_type + " at " + format_timestamp(m.timestamp_ms) +
                                 ") rejected by the central (" + r.reason + ": " + r.detail +
                                 "); quarantined, see `meter-agent status`, resend with "
                                 "`meter-agent requeue`");
    }
  }
  if (applied->missing > 0) {
    logger_.warning(kUplink, std::to_string(applied->missing) +
                                 " records had no matching outcome in the central's answer; "
                                 "they will be sent again");
  }
  if (behind_failure) return Next::retry;
  if (split_records_ != 0) {
    // Grow back towards the configured size after a success.
    split_records_ = std::min(split_records_ * 2, uplink.batch_max_records);
    split_bytes_ = std::min(split_bytes_ * 2, uplink.batch_max_bytes);
    if (split_records_ == uplink.batch_max_records && split_bytes_ == uplink.batch_max_bytes) {
      split_records_ = 0;
    }
  }
  backoff_ms_ = 0;
  return batch.limited || applied->missing == 0 ? Next::more : Next::idle;
}

Uplink::Next Uplink::finish(const Config& config, const InFlight& in, const HttpOutcome& outcome) {
  const auto& uplink = config.uplink;
  const auto& batch = in.batch;
  if (outcome.status == 0) {
    std::string what = "cannot reach " + in.post->url + ": " + outcome.transport_error;
    if (outcome.tls_failure) {
      what += " (the server's certificate could not be verified against " +
              (uplink.ca_file.empty() ? std::string("the system's CA certificates")
                                      : "uplink.ca_file " + uplink.ca_file) +
              ")";
    }
    return handle_failure(uplink, what, false, std::nullopt, false);
  }
  if (outcome.status == 200) return confirm(config, batch, outcome);

  const auto error = parse_ingest_error(outcome.body);
  const auto what = describe_status(outcome.status, error);
  if (outcome.status == 413) {
    ++metrics_.splits;
    const std::size_t largest = std::max(batch.raw_events.size(), batch.measurements.size());
    if (batch.records() > 1) {
      split_records_ = std::max<std::size_t>(1, (largest + 1) / 2);
      std::size_t bytes = 0;
      for (const auto& r : batch.raw_events) bytes += estimated_size(r);
      for (const auto& m : batch.measurements) bytes += estimated_size(m);
      split_bytes_ = std::max<std::size_t>(4096, bytes / 2);
      logger_.warning(kUplink, what + "; sending it in halves (" + std::to_string(split_records_) +
                                   " records per array)");
      ++metrics_.request_failures;
      return Next::more;
    }
    // One record too large for the central on its own: it can never be
    // accepted as it is. Quarantined like a rejection, so it neither blocks the
    // rest nor is dropped.
    IngestResponse response;
    RecordResult rejected{RecordOutcome::rejected,
                          error.error.empty() ? "payload_too_large" : error.error, error.detail};
    response.raw_events.assign(batch.raw_events.size(), rejected);
    response.measurements.assign(batch.measurements.size(), rejected);
    if (auto applied = buffer_->apply_ingest_response(batch, response, now_ms()); applied) {
      metrics_.rejected += static_cast<std::int64_t>(batch.records());
      logger_.error(kUplink, "one record is too large for the central (" + what +
                                 "); quarantined, see `meter-agent status`");
    }
    split_records_ = 0;
    return Next::more;
  }
  if (outcome.status == 401 || outcome.status == 403) {
    return handle_failure(uplink, what, true, std::nullopt, false);
  }
  if (outcome.status == 408 || outcome.status == 429 || outcome.status >= 500) {
    return handle_failure(uplink, what, false, outcome.retry_after_ms, false);
  }
  return handle_failure(uplink, what, false, outcome.retry_after_ms, true);
}

}  // namespace meter::agent
