#include "agent/uplink/uplink.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <utility>

#include "agent/ops/clock_sync.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/uplink/backoff.hpp"
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
constexpr auto kStateSave = 5s;
// Requests started behind one still in flight before the window must run empty
// (and selection starts from the watermark again): ~100k events at the defaults.
constexpr int kMaxBehind = 100;
// Bodies smaller than this go uncompressed (gzip's header costs more than it saves).
constexpr std::size_t kGzipThreshold = 2048;
// After falling back to protocol 1: how often to ask whether the central
// speaks 2 now (a reload asks at once).
constexpr auto kProtocolProbe = 10min;

using Kind = UploadOutcome::Kind;

}  // namespace

// ---- the stage ---------------------------------------------------------------

Uplink::Uplink(ConfigSource config, Logger& logger, TransportFactory transport_factory,
               std::unique_ptr<UplinkClock> clock)
    : config_(std::move(config)),
      logger_(logger),
      transport_factory_(std::move(transport_factory)),
      clock_(std::move(clock)),
      random_(std::random_device{}()) {
  if (!transport_factory_) {
    transport_factory_ = [](const UplinkConfig& c) { return std::make_unique<CurlTransport>(c); };
  }
  if (!clock_) clock_ = system_uplink_clock();
}

Uplink::~Uplink() { stop(); }

Status Uplink::start(const BufferConfig& buffer) {
  init_curl_once();  // before the thread: curl_global_init is not thread-safe
  auto opened = Buffer::open(buffer);
  if (!opened) return opened.error();
  buffer_ = std::move(*opened);
  pruner_ = std::make_unique<UplinkPruner>(*buffer_, logger_, metrics_, *clock_);
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

Result<std::string> Uplink::read_token(const UplinkConfig& config) {
  if (!config.token_file.empty()) {
    std::ifstream file(config.token_file, std::ios::binary);
    if (!file) return Error{"cannot read uplink.token_file " + config.token_file};
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
    if (token.empty()) return Error{"uplink.token_file " + config.token_file + " is empty"};
    return token;
  }
  const char* value = std::getenv(config.token_env.c_str());
  if (value == nullptr || *value == '\0') {
    return Error{"the environment variable " + config.token_env + " (uplink.token_env) is not set"};
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
      maybe_probe();
      refresh_status();
      pruner_->maybe_prune(*config);
      next = send_once(*config);
      save_state();
    }
    std::unique_lock lock(mutex_);
    if (stop_) break;
    if (next == Next::more && !reloaded_) continue;
    std::chrono::milliseconds wait{uplink.enabled() ? uplink.interval_ms : 1000};
    if (next == Next::retry) wait = std::chrono::milliseconds(backoff_ms_);
    clock_->wait_until(lock, wake_, clock_->steady_now() + wait,
                       [&] { return stop_ || reloaded_; });
    if (stop_) break;
    if (reloaded_) {
      reloaded_ = false;
      backoff_ms_ = 0;  // a new token (or URL) is tried at once
      metrics_.consecutive_failures = 0;
      next_probe_ = {};  // and protocol 2, if the central did not speak it
    }
  }
  drain_window();  // stop() has set abort_: the requests end at once
  save_state();
}

void Uplink::check_clock(const Config& config) {
  const auto now = clock_->steady_now();
  if (now < next_clock_check_) return;
  next_clock_check_ = now + 1s;
  const auto wall = clock_->now_ms();
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
  const auto now = clock_->steady_now();
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
  count_held();
  while (!recent_.empty() && now - recent_.front().first > 60s) recent_.pop_front();
  std::int64_t sum = 0;
  for (const auto& entry : recent_) sum += entry.second;
  metrics_.rate_per_minute = sum;
}

void Uplink::save_state() {
  const auto now = clock_->steady_now();
  std::map<std::string, std::string> state{
      {"last_success_ms", std::to_string(metrics_.last_success_ms.load())},
      {"last_error_ms", std::to_string(metrics_.last_error_ms.load())},
      {"last_error", metrics_.last_error()},
      {"auth_failed", metrics_.auth_failed ? "1" : "0"},
      {"confirmed_last_minute", std::to_string(metrics_.rate_per_minute.load())},
      {"protocol_version", protocol_},
      {"held_measurements", std::to_string(metrics_.held.load())},
  };
  std::string text;
  for (const auto& [key, value] : state) {
    text += key;
    text += '=';
    text += value;
    text += '\n';
  }
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

Uplink::Next Uplink::back_off(const UplinkConfig& config, const UploadOutcome& outcome) {
  const auto& what = outcome.reason;
  ++metrics_.request_failures;
  ++metrics_.consecutive_failures;
  metrics_.last_error_ms = clock_->now_ms();
  metrics_.set_last_error(what);
  if (outcome.kind == Kind::auth_failed) {
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
  const bool refused = outcome.kind == Kind::refused;
  backoff_ms_ = backoff_ms(BackoffPolicy{config.retry_min_ms, config.retry_max_ms},
                           metrics_.consecutive_failures.load(), refused, outcome.retry_after_ms,
                           [this](std::int64_t low, std::int64_t high) {
                             return std::uniform_int_distribution<std::int64_t>(low, high)(random_);
                           });
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
  // Protocol 1 cannot carry version 2's flags: those measurements wait.
  if (protocol_ == kProtocolVersion1) limits.held_flags = kVersion2Flags;
  if (split_records_ != 0) {
    limits.max_records = split_records_;
    limits.max_bytes = split_bytes_;
  }
  UplinkBatch selected;
  const bool part = isolation_.active() && !after;
  if (part) {
    selected = isolation_.next_part();
  } else {
    auto read = buffer_->select_unsynced(limits, after);
    if (!read) {
      logger_.warning(kUplink, "cannot read the buffer: " + read.error().message);
      backoff_ms_ = uplink.retry_min_ms;
      return Next::retry;
    }
    selected = std::move(*read);
  }
  if (selected.empty()) {
    if (!after) split_records_ = 0;
    return Next::idle;
  }
  const auto token = read_token(uplink);
  if (!token) return back_off(uplink, no_credentials(token.error().message));
  // The transports are built from the uplink settings: any change means new ones.
  if (transport_config_ != uplink) {
    if (!window_.empty()) return Next::more;  // new settings: once the window is empty
    transports_.clear();
    transport_config_ = uplink;
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
  in.batch = std::move(selected);
  in.slot = slot;
  in.part = part;
  auto& batch = in.batch;
  batch.backlog_records = std::max<std::int64_t>(
      0, metrics_.waiting.load() - static_cast<std::int64_t>(batch.records()));
  if (metrics_.oldest_waiting_received_ms > 0) {
    batch.oldest_received_ms = metrics_.oldest_waiting_received_ms.load();
  }
  in.protocol = protocol_;
  UplinkEnvelope envelope{config.gateway_id, buffer_->buffer_id(), clock_->now_ms(), in.protocol};
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
    std::promise<HttpAnswer> done;
    done.set_value(transport->post(*post));
    in.answer = done.get_future();
  } else {
    in.answer =
        std::async(std::launch::async, [transport, post] { return transport->post(*post); });
  }
  window_.push_back(std::move(in));
  metrics_.in_flight = static_cast<std::int64_t>(window_.size());
  return std::nullopt;
}

Uplink::Next Uplink::send_once(const Config& config) {
  const auto& uplink = config.uplink;
  // Requests in flight at once: several only while a backlog drains (each
  // batch selected after the one before it), one while a split or an
  // isolation round is in force.
  const std::size_t depth = split_records_ != 0 || isolation_.active()
                                ? 1
                                : std::max<std::size_t>(1, uplink.max_in_flight);
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
  if (stopped == Next::retry) {  // back_off has said why and set the backoff
    drain_window();
    return Next::retry;
  }
  InFlight front = std::move(window_.front());
  window_.pop_front();
  const auto answer = front.answer.get();
  metrics_.in_flight = static_cast<std::int64_t>(window_.size());
  metrics_.bytes_sent += static_cast<std::int64_t>(front.post->body.size());
  if (abort_) {
    drain_window();
    return Next::idle;  // shutdown: whatever the central stored is resent next run
  }
  const auto splits = metrics_.splits.load();
  const auto missing = metrics_.missing.load();
  const auto next = finish(config, front, answer);
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
    const auto answer = in.answer.get();
    metrics_.in_flight = static_cast<std::int64_t>(window_.size());
    metrics_.bytes_sent += static_cast<std::int64_t>(in.post->body.size());
    if (abort_) {
      ++metrics_.request_failures;
      continue;
    }
    const auto outcome =
        classify_answer(answer, in.batch, UploadTarget{in.post->url, {}, in.protocol});
    if (outcome.kind == Kind::delivered) {
      deliver(*config_(), in.batch, outcome.response, true);
    } else {
      ++metrics_.request_failures;
    }
  }
}

Uplink::Next Uplink::deliver(const Config& config, const UplinkBatch& batch,
                             const IngestResponse& response, bool behind_failure) {
  const auto& uplink = config.uplink;
  auto applied = buffer_->apply_ingest_response(batch, response, clock_->now_ms());
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
  recent_.emplace_back(clock_->steady_now(),
                       applied->raw_confirmed + applied->measurements_confirmed);
  metrics_.last_success_ms = clock_->now_ms();
  if (!behind_failure) {
    metrics_.consecutive_failures = 0;
    if (probing_) {
      probing_ = false;
      metrics_.held = 0;
      logger_.info(kUplink, "the central speaks protocol 2 now: the held measurements are sent");
    }
    if (metrics_.auth_failed) {
      logger_.info(kUplink, "the central accepts the token again: uploads resumed");
      metrics_.auth_failed = false;
    }
  }
  if (applied->raw_rejected + applied->measurements_rejected > 0) {
    for (std::size_t i = 0; i < batch.raw_events.size(); ++i) {
      const auto& r = response.raw_events[i];
      if (r.outcome != RecordOutcome::rejected) continue;
      logger_.error(kUplink, "raw event seq " + std::to_string(batch.raw_events[i].seq) +
                                 " rejected by the central (" + r.reason + ": " + r.detail +
                                 "); quarantined, see `meter-agent status`, resend with "
                                 "`meter-agent requeue`");
    }
    for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
      const auto& r = response.measurements[i];
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

Uplink::Next Uplink::finish(const Config& config, const InFlight& in, const HttpAnswer& answer) {
  const auto& uplink = config.uplink;
  const auto outcome =
      classify_answer(answer, in.batch, UploadTarget{in.post->url, uplink.ca_file, in.protocol});
  if (in.part || outcome.server_error) return isolate(config, in, outcome);
  isolation_.whole_answered(in.batch, false);  // not a 500: the count starts again
  switch (outcome.kind) {
    case Kind::delivered:
      return deliver(config, in.batch, outcome.response);
    case Kind::split: {
      ++metrics_.splits;
      ++metrics_.request_failures;
      // Halving the records per array selects the same batch again when each
      // array holds one record (a raw event and a measurement): it is sent in
      // parts instead.
      const std::size_t largest =
          std::max(in.batch.raw_events.size(), in.batch.measurements.size());
      if (largest <= outcome.split_records) {
        isolation_.split_now(in.batch);
      } else {
        split_records_ = outcome.split_records;
        split_bytes_ = outcome.split_bytes;
      }
      logger_.warning(kUplink, outcome.reason + "; sending it in halves (" +
                                   std::to_string(outcome.split_records) + " records per array)");
      if (outcome.retry_after_ms && *outcome.retry_after_ms > 0) {
        backoff_ms_ = std::min(*outcome.retry_after_ms, kMaxRetryAfterMs);
        return Next::retry;
      }
      return Next::more;
    }
    case Kind::too_large:
      ++metrics_.splits;
      return quarantine_too_large(in.batch, outcome);
    case Kind::protocol_unsupported:
      return fall_back(outcome);
    case Kind::retry_later:
    case Kind::auth_failed:
    case Kind::refused:
      return back_off(uplink, outcome);
  }
  return back_off(uplink, outcome);  // not reached: every kind is handled above
}

Uplink::Next Uplink::fall_back(const UploadOutcome& outcome) {
  ++metrics_.request_failures;
  metrics_.last_error_ms = clock_->now_ms();
  metrics_.set_last_error(outcome.reason);
  // Nothing was stored: the batch is sent again in version 1, without what
  // version 1 cannot carry (those stay waiting: never quarantined, never pruned).
  protocol_ = std::string(kProtocolVersion1);
  metrics_.protocol_version = 1;
  next_probe_ = clock_->steady_now() + kProtocolProbe;
  drain_window();  // requests behind it were sent in version 2 too
  count_held();
  const std::string held = std::to_string(metrics_.held.load());
  if (probing_) {
    logger_.info(kUplink, "the central still speaks protocol 1: " + held +
                              " measurements held until it is upgraded");
  } else {
    logger_.warning(kUplink, "central speaks protocol 1: " + held +
                                 " measurements held until it is upgraded (" + outcome.reason +
                                 "); raw events and the other measurements are sent in protocol "
                                 "1, protocol 2 is tried again every 10 minutes and on reload");
  }
  probing_ = false;
  backoff_ms_ = 0;
  return Next::more;
}

void Uplink::maybe_probe() {
  if (protocol_ != kProtocolVersion1 || !window_.empty()) return;
  if (clock_->steady_now() < next_probe_) return;
  protocol_ = std::string(kProtocolVersion);
  metrics_.protocol_version = 2;
  probing_ = true;
  logger_.info(kUplink, "asking whether the central speaks protocol 2 now");
}

void Uplink::count_held() {
  if (protocol_ != kProtocolVersion1) {
    if (!probing_) metrics_.held = 0;
    return;
  }
  auto held = buffer_->count_waiting_with_flags(kVersion2Flags);
  if (!held) {
    logger_.warning(kUplink, "cannot count the held measurements: " + held.error().message);
    return;
  }
  metrics_.held = *held;
}

Uplink::Next Uplink::isolate(const Config& config, const InFlight& in,
                             const UploadOutcome& outcome) {
  const auto& uplink = config.uplink;
  if (!in.part) {
    // A whole batch answered 500.
    if (!isolation_.whole_answered(in.batch, true)) return back_off(uplink, outcome);
    ++metrics_.splits;
    ++metrics_.request_failures;
    logger_.warning(kUplink, outcome.reason + " " +
                                 std::to_string(BatchIsolation::kServerErrorsBeforeSplit) +
                                 " times in a row for the same batch: sending it in parts, to "
                                 "find a record the central fails on");
    return Next::more;
  }
  switch (outcome.kind) {
    case Kind::delivered: {
      const auto step = isolation_.part_accepted();
      const auto next = deliver(config, in.batch, outcome.response);
      quarantine_poison(step.quarantine);
      return next == Next::idle && isolation_.active() ? Next::more : next;
    }
    case Kind::split:
      ++metrics_.splits;
      ++metrics_.request_failures;
      isolation_.part_too_large();
      return Next::more;
    case Kind::too_large: {
      ++metrics_.splits;
      const auto next = quarantine_too_large(in.batch, outcome);
      isolation_.part_done();
      return next;
    }
    case Kind::retry_later:
      if (outcome.server_error) {
        ++metrics_.request_failures;
        const auto step = isolation_.part_server_error(outcome.reason);
        quarantine_poison(step.quarantine);
        if (step.gave_up) {
          logger_.warning(kUplink, "records answered " + outcome.reason +
                                       " alone, and no other part was accepted after them: the "
                                       "central seems to fail on everything; they are not "
                                       "quarantined, the batch is sent whole again");
          --metrics_.request_failures;  // back_off counts it
          return back_off(uplink, outcome);
        }
        return Next::more;
      }
      [[fallthrough]];
    case Kind::protocol_unsupported:
      // An older central: the round starts again in version 1.
      isolation_ = BatchIsolation{};
      return fall_back(outcome);
    case Kind::auth_failed:
    case Kind::refused:
      return back_off(uplink, outcome);  // the same part is sent again after it
  }
  return back_off(uplink, outcome);  // not reached: every kind is handled above
}

void Uplink::quarantine_poison(const std::vector<BatchIsolation::Quarantine>& records) {
  for (const auto& quarantined : records) {
    const auto& record = quarantined.record;
    auto applied = buffer_->apply_ingest_response(
        record, reject_all(record, BatchIsolation::kReason, quarantined.answer), clock_->now_ms());
    if (!applied) {
      logger_.warning(kUplink,
                      "cannot quarantine a record (sent again later): " + applied.error().message);
      continue;
    }
    const auto count = applied->raw_rejected + applied->measurements_rejected;
    metrics_.rejected += count;
    metrics_.quarantined += count;
    metrics_.waiting -= count;
    const std::string which =
        record.raw_events.empty()
            ? "measurement " + record.measurements.front().measurement.event_id + " revision " +
                  std::to_string(record.measurements.front().measurement.revision)
            : "raw event seq " + std::to_string(record.raw_events.front().seq);
    logger_.error(kUplink, which + " alone makes the central fail (" + quarantined.answer +
                               ") while other records are accepted; quarantined (" +
                               BatchIsolation::kReason +
                               "), see `meter-agent status`, resend with `meter-agent requeue`");
  }
}

Uplink::Next Uplink::quarantine_too_large(const UplinkBatch& batch, const UploadOutcome& outcome) {
  // It neither blocks the rest nor is dropped.
  if (auto applied = buffer_->apply_ingest_response(batch, outcome.response, clock_->now_ms());
      applied) {
    metrics_.rejected += static_cast<std::int64_t>(batch.records());
    logger_.error(kUplink, "one record is too large for the central (" + outcome.reason +
                               "); quarantined, see `meter-agent status`");
  }
  split_records_ = 0;
  return Next::more;
}

}  // namespace meter::agent
