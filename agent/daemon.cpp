#include "agent/daemon.hpp"

#include <malloc.h>
#include <mqtt/async_client.h>
#include <sys/resource.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "agent/cli/cli.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kMqtt = "mqtt";
constexpr std::string_view kBuffer = "buffer";
constexpr std::string_view kNormalize = "normalize";
constexpr std::string_view kConfig = "config";
constexpr std::string_view kAgent = "agent";
constexpr std::string_view kHttp = "http";

constexpr auto kConnectTimeout = 10s;
constexpr auto kSubscribeTimeout = 10s;
constexpr auto kAppendRetryMax = 5000ms;
constexpr auto kStatusRefresh = 2s;
// The normalizer gathers messages this long after a pass before the next one
// (the normalization lag this adds at low rates), and checkpoints at most this
// often when no automatic checkpoint did.
constexpr auto kNormalizeGather = 250ms;
constexpr int kNormalizerNice = 5;
// The normalizing connection's page cache: large while working through a
// backlog (batches touch a page per series), small at a gateway's pace, so
// the agent stays small (docs/BENCHMARKS.md: RSS with 1M measurements).
constexpr std::int64_t kLargePass = 1000;
constexpr std::int64_t kLargeCacheKib = 16384;
constexpr std::int64_t kSmallCacheKib = 2048;
// How long the acknowledge path waits for the normalizer to take in a full
// inbox before it counts as a failed commit (logged, retried with backoff).
constexpr auto kInboxFullWait = 2s;
constexpr auto kCheckpointInterval = 10s;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string read_text(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream content;
  content << file.rdbuf();
  return content.str();
}

std::set<std::string> topic_filters(const Config& config) {
  std::set<std::string> filters;
  for (const auto& mapping : config.mappings) filters.insert(mapping.topic);
  return filters;
}

std::string server_uri(const MqttConfig& mqtt) {
  std::string host = mqtt.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return (mqtt.tls.enabled ? "ssl://" : "tcp://") + host + ":" +
         std::to_string(mqtt.effective_port());
}

std::string client_id(const Config& config) {
  return config.mqtt.client_id.empty() ? "meter-agent-" + config.gateway_id : config.mqtt.client_id;
}

// Everything that needs a new connection when it changes (not the password
// itself, which is read again on every connect).
std::string connection_identity(const Config& config) {
  const auto& m = config.mqtt;
  std::ostringstream out;
  out << server_uri(m) << '|' << client_id(config) << '|' << m.protocol_version << '|'
      << m.keepalive_ms << '|' << m.session_expiry_ms << '|' << m.username << '|' << m.password_file
      << '|' << m.password_env << '|' << m.tls.enabled << '|' << m.tls.ca_file << '|'
      << m.tls.cert_file << '|' << m.tls.key_file << '|' << m.tls.verify << '|'
      << m.status_topic_prefix << '|' << config.gateway_id;
  return out.str();
}

// Top-level (and mqtt.*) keys whose YAML differs between two versions of the file.
std::vector<std::string> changed_keys(const std::string& old_text, const std::string& new_text) {
  std::vector<std::string> changed;
  try {
    const YAML::Node old_root = YAML::Load(old_text);
    const YAML::Node new_root = YAML::Load(new_text);
    std::set<std::string> keys;
    auto collect = [&](const YAML::Node& root) {
      if (!root.IsMap()) return;
      for (const auto& item : root) keys.insert(item.first.as<std::string>());
    };
    collect(old_root);
    collect(new_root);
    auto dump = [](const YAML::Node& node) {
      if (!node) return std::string("<absent>");
      YAML::Emitter emitter;
      emitter << node;
      return std::string(emitter.c_str());
    };
    for (const auto& key : keys) {
      const auto before = dump(old_root[key]);
      const auto after = dump(new_root[key]);
      if (before == after) continue;
      if (key == "mqtt" && old_root[key].IsMap() && new_root[key].IsMap()) {
        std::set<std::string> inner;
        for (const auto& item : old_root[key]) inner.insert(item.first.as<std::string>());
        for (const auto& item : new_root[key]) inner.insert(item.first.as<std::string>());
        for (const auto& name : inner) {
          if (dump(old_root[key][name]) != dump(new_root[key][name])) {
            changed.push_back("mqtt." + name);
          }
        }
        continue;
      }
      changed.push_back(key);
    }
  } catch (const std::exception&) {
    changed.push_back("(could not compare the files)");
  }
  return changed;
}

std::optional<std::string> read_password(const MqttConfig& mqtt, std::string& problem) {
  if (!mqtt.password_file.empty()) {
    std::ifstream file(mqtt.password_file, std::ios::binary);
    if (!file) {
      problem = "cannot read mqtt.password_file " + mqtt.password_file;
      return std::nullopt;
    }
    std::string password((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
      password.pop_back();
    }
    return password;
  }
  if (!mqtt.password_env.empty()) {
    const char* value = std::getenv(mqtt.password_env.c_str());
    if (value == nullptr) {
      problem = "the environment variable " + mqtt.password_env + " (mqtt.password_env) is not set";
      return std::nullopt;
    }
    return std::string(value);
  }
  return std::string();
}

}  // namespace

Daemon::Daemon(Config config, DaemonOptions options, Logger& logger)
    : options_(std::move(options)), logger_(logger), random_(std::random_device{}()) {
  if (options_.buffer_path) config.buffer.path = *options_.buffer_path;
  if (config.source != "<string>" && !config.source.empty())
    config_text_ = read_text(config.source);
  config_ = std::make_shared<const Config>(std::move(config));
}

Daemon::~Daemon() {
  if (!abandon_) destroy_client();
}

std::shared_ptr<const Config> Daemon::config() const {
  std::lock_guard lock(config_mutex_);
  return config_;
}

int Daemon::http_port() const { return http_ ? http_->port() : 0; }

void Daemon::request_stop() {
  stop_ = true;
  loop_wake_.notify_all();
}

void Daemon::request_reload() {
  reload_ = true;
  loop_wake_.notify_all();
}

// ---- the acknowledge path -------------------------------------------------

// Runs on Paho's thread. Returning is what acknowledges the message (PUBACK),
// so this returns only after the message is committed; a failed commit is
// retried here, never acknowledged. If it blocks longer than 1.5 x keepalive
// the broker drops the connection and redelivers the message later (DUP) —
// the raw log may then hold it twice, the measurements once.
void Daemon::on_message(const std::shared_ptr<const mqtt::message>& message) {
  in_callback_ = true;
  ++metrics_.received;
  RawMessage raw;
  std::chrono::milliseconds delay = 20ms;
  std::int64_t failures = 0;
  for (;;) {
    try {
      if (raw.received_ms == 0) {
        raw.topic = message->get_topic();
        raw.payload = message->get_payload_str();
        raw.qos = message->get_qos();
        raw.retained = message->is_retained();
        raw.dup = message->is_duplicate();
        raw.received_ms = now_ms();
      }
      auto appended = append_to_inbox(raw);
      if (appended) {
        ++metrics_.appended;
        if (failures > 0) {
          metrics_.append_blocked = false;
          logger_.warning(kBuffer, "the buffer accepts writes again after " +
                                       std::to_string(failures) +
                                       " failed attempts; acknowledging again");
        }
        wake_normalizer();
        in_callback_ = false;
        return;
      }
      ++failures;
      ++metrics_.append_failures;
      metrics_.append_blocked = true;
      logger_.error(kBuffer, "cannot store a message (topic '" + raw.topic +
                                 "'), NOT acknowledging it; the broker keeps it and will "
                                 "redeliver: " +
                                 appended.error().message);
    } catch (const std::exception& e) {
      ++failures;
      ++metrics_.append_failures;
      logger_.error(kBuffer,
                    std::string("unexpected error storing a message, retrying: ") + e.what());
    } catch (...) {
      ++failures;
      ++metrics_.append_failures;
      logger_.error(kBuffer, "unexpected error storing a message, retrying");
    }
    // A retry delay, not a synchronization: the disk needs time to get room.
    std::this_thread::sleep_for(delay);
    delay = std::min<std::chrono::milliseconds>(delay * 2, kAppendRetryMax);
  }
}

// The commit of the acknowledge path: one record in the inbox (common/buffer/inbox.hpp),
// which the normalizer moves into the raw log. Refused while the inbox holds
// more than kInboxMaxBytes the normalizer has not moved: then the database
// itself is failing, and the broker should keep what we cannot store.
Status Daemon::append_to_inbox(const RawMessage& raw) {
  // The normalizer checks the budget after each pass, which may take seconds
  // while this path acknowledges thousands of messages: what was acknowledged
  // since counts too, at what it will take once stored.
  const std::int64_t budget = disk_budget_.load();
  const std::int64_t message_bytes =
      budget_bytes_of_message(static_cast<std::int64_t>(raw.topic.size() + raw.payload.size()));
  const auto estimate = [&] {
    return budget_used_at_check_.load() + acknowledged_bytes_.load() -
           acknowledged_bytes_at_check_.load() + message_bytes;
  };
  if (budget != 0 && !over_budget_ && estimate() > budget) {
    // Only an estimate says so: wait for the normalizer to measure (it takes
    // in what is pending and checks) rather than refuse on a guess.
    const auto checks = budget_checks_.load();
    wake_normalizer();
    std::unique_lock lock(absorbed_mutex_);
    absorbed_changed_.wait_for(lock, kInboxFullWait, [&] { return budget_checks_ != checks; });
  }
  if (over_budget_ || (budget != 0 && estimate() > budget)) {
    return Error{"the buffer has used its disk budget (buffer.max_size_mib, " +
                 std::to_string(disk_budget_.load() / (1024 * 1024)) +
                 " MiB); nothing unconfirmed is deleted to make room: acknowledging again once "
                 "the central side has confirmed records and the uplink has pruned them"};
  }
  const bool full_disk = max_page_count_.load() != 0;  // the test seam
  inbox_->set_space_limit(full_disk ? std::optional<std::int64_t>(0) : std::nullopt);
  const auto backlog = [&] {
    const auto written = inbox_->position();
    return (written.segment - inbox_absorbed_segment_.load()) * kInboxSegmentBytes +
           written.offset - inbox_absorbed_offset_.load();
  };
  if (backlog() > options_.inbox_max_bytes) {
    // Usually the normalizer is only behind (a burst on a busy CPU): wait for
    // it. Holding the acknowledgement back is the flow control MQTT expects.
    ++metrics_.inbox_full_waits;
    wake_normalizer();
    std::unique_lock lock(absorbed_mutex_);
    absorbed_changed_.wait_for(lock, kInboxFullWait,
                               [&] { return backlog() <= options_.inbox_max_bytes; });
    if (backlog() > options_.inbox_max_bytes) {
      return Error{"the inbox holds " + std::to_string(backlog() / 1024) +
                   " KiB of messages the buffer database has not taken in (see the "
                   "normalizer's errors)"};
    }
  }
  auto appended = inbox_->append(raw);
  if (appended) {
    acknowledged_bytes_ += message_bytes;
  }
  return appended;
}

// ---- the normalizer --------------------------------------------------------

void Daemon::wake_normalizer() {
  {
    std::lock_guard lock(work_mutex_);
    if (work_pending_) return;
    work_pending_ = true;
  }
  work_ready_.notify_one();
}

void Daemon::note_absorbed(const AbsorbStats& absorbed) {
  {
    std::lock_guard lock(absorbed_mutex_);
    inbox_absorbed_segment_ = absorbed.position.segment;
    inbox_absorbed_offset_ = absorbed.position.offset;
  }
  absorbed_changed_.notify_all();
  metrics_.raw_logged += absorbed.messages;
  if (absorbed.last_seq != 0) metrics_.last_appended_seq = absorbed.last_seq;
  for (const auto& damaged : absorbed.damaged) {
    logger_.error(kBuffer,
                  "an inbox segment ends in a record that does not read (a crash or "
                  "power loss while it was written; that message was never "
                  "acknowledged): " +
                      damaged);
  }
  for (const auto& problem : absorbed.problems) logger_.warning(kBuffer, problem);
}

// The disk budget: the database's pages in use, its WAL and the inbox not
// yet absorbed (at what it will take once stored: budget_bytes_of_inbox).
// Checked by the normalizer after every pass and when idle.
void Daemon::check_disk_budget(Buffer& buffer) {
  const std::int64_t budget = disk_budget_.load();
  bool over = false;
  std::int64_t used = 0;
  if (budget != 0) {
    // Taken before measuring: a message acknowledged meanwhile may count twice, never not at all.
    const auto acknowledged = acknowledged_bytes_.load();
    auto database = buffer.used_bytes();
    if (!database) {
      logger_.warning(kBuffer,
                      "cannot measure the buffer for its disk budget: " + database.error().message);
      return;
    }
    const auto inbox = budget_bytes_of_inbox(inbox_pending_bytes(
        buffer.path(), {inbox_absorbed_segment_.load(), inbox_absorbed_offset_.load()}));
    if (budget_used_up(*database + inbox, budget)) {
      // The WAL file keeps the largest size it ever had (~10 MiB after a
      // burst: automatic checkpoints every 10,000 pages) although a checkpoint
      // has emptied it: before refusing messages, give that room back.
      if (auto truncated = buffer.checkpoint_truncate(); !truncated) {
        logger_.warning(
            kBuffer, "cannot truncate the WAL for the disk budget: " + truncated.error().message);
      } else if (*truncated) {
        database = buffer.used_bytes();
        if (!database) {
          logger_.warning(kBuffer, "cannot measure the buffer for its disk budget: " +
                                       database.error().message);
          return;
        }
      }
    }
    used = *database + inbox;
    over = budget_used_up(used, budget);
    budget_used_at_check_ = used;
    acknowledged_bytes_at_check_ = acknowledged;
    {
      std::lock_guard lock(absorbed_mutex_);
      ++budget_checks_;
    }
    absorbed_changed_.notify_all();
  }
  metrics_.buffer_used_bytes = used;
  if (over != over_budget_.exchange(over)) {
    if (over) {
      logger_.error(kBuffer, "the buffer reached its disk budget (" + std::to_string(used) +
                                 " of " + std::to_string(budget) +
                                 " bytes): NOT acknowledging MQTT messages; the broker keeps "
                                 "them. Nothing unconfirmed is deleted.");
    } else {
      logger_.warning(kBuffer, "the buffer is below its disk budget again (" +
                                   std::to_string(used) + " of " + std::to_string(budget) +
                                   " bytes): acknowledging again");
    }
  }
  metrics_.over_budget = over;
}

void Daemon::refresh_status(Buffer& buffer) {
  auto status = buffer.status();
  if (status) {
    metrics_.set_buffer_status(*status);
  } else {
    logger_.warning(kBuffer, "cannot read the buffer status: " + status.error().message);
  }
}

void Daemon::normalizer_loop() {
  // Behind the acknowledge path and the broker when the CPU is short: a
  // backlog here only delays normalization, a slow acknowledgement delays
  // every meter. (Lowering one's own priority needs no privilege.)
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNormalizerNice) != 0) {
    logger_.debug(kNormalize, "cannot lower the normalizer's priority");
  }
  Buffer& buffer = *normalize_buffer_;
  std::int64_t applied_cap = 0;
  auto last_refresh = std::chrono::steady_clock::time_point{};
  std::chrono::milliseconds failure_delay = 100ms;
  bool failing = false;
  bool status_stale = true;
  auto last_pass_end = std::chrono::steady_clock::time_point{};
  auto last_checkpoint = std::chrono::steady_clock::now();
  bool checkpoint_due = false;
  bool large_cache = true;  // normalize_pending tunes a fresh connection for batches
  // The systemd watchdog pings only while this loop beats within half its
  // interval (60 s in the unit; far shorter in tests): no wait may be longer
  // than a quarter of it.
  const auto watchdog =
      std::chrono::duration_cast<std::chrono::milliseconds>(notifier_.watchdog_interval());
  const auto within_watchdog = [&](std::chrono::milliseconds wait) {
    return watchdog.count() > 0 ? std::min(wait, std::max(watchdog / 4, 10ms)) : wait;
  };
  while (!normalizer_stop_) {
    {
      std::unique_lock lock(work_mutex_);
      const std::chrono::milliseconds timeout = failing        ? failure_delay
                                                : status_stale ? 1000ms
                                                               : 2000ms;
      work_ready_.wait_for(lock, within_watchdog(timeout),
                           [&] { return work_pending_ || normalizer_stop_.load(); });
      // At a gateway's pace (a reading every few ms or slower) every message
      // would wake a pass of two transactions: gather them for a moment
      // instead. Under load the passes below run back to back anyway.
      if (work_pending_) {
        work_ready_.wait_until(lock, last_pass_end + within_watchdog(kNormalizeGather),
                               [&] { return normalizer_stop_.load(); });
      }
      work_pending_ = false;
    }
    normalizer_heartbeat_.beat();  // waiting is not being stuck
    bool did_work = false;
    while (!normalizer_stop_) {
      normalizer_heartbeat_.beat();
      const auto cap = max_page_count_.load();
      if (cap != applied_cap) {
        (void)buffer.set_max_page_count(cap != 0 ? cap : 4294967294LL);
        applied_cap = cap;
      }
      const auto current = config();
      auto absorbed = buffer.absorb_inbox(current->normalize.batch_size, true);
      if (!absorbed) {
        ++metrics_.normalize_failures;
        logger_.error(kBuffer,
                      "cannot move acknowledged messages from the inbox into the raw "
                      "log, will retry: " +
                          absorbed.error().message);
        failing = true;
        failure_delay = std::min<std::chrono::milliseconds>(failure_delay * 2, 5000ms);
        break;
      }
      note_absorbed(*absorbed);
      if (absorbed->messages >= kLargePass && !large_cache) {
        (void)buffer.set_cache_kib(kLargeCacheKib);
        large_cache = true;
      }
      auto stats = buffer.normalize_pending(*current, current->normalize.batch_size);
      if (!stats) {
        ++metrics_.normalize_failures;
        logger_.error(kNormalize, "normalization failed, will retry: " + stats.error().message);
        failing = true;
        failure_delay = std::min<std::chrono::milliseconds>(failure_delay * 2, 5000ms);
        break;
      }
      if (failing) logger_.info(kNormalize, "normalization works again");
      failing = false;
      failure_delay = 100ms;
      metrics_.add(*stats);
      // After every pass, not only once caught up: under a steady inflow (a
      // broker replaying its queue, a burst) this loop does not go idle, and
      // the buffer would grow past its budget unchecked.
      check_disk_budget(buffer);
      if (stats->messages == 0 && absorbed->messages == 0) break;
      did_work = true;
      logger_.debug(kNormalize, "normalized " + std::to_string(stats->messages) +
                                    " messages: " + std::to_string(stats->new_measurements) +
                                    " new, " + std::to_string(stats->duplicates) + " duplicates");
    }
    if (large_cache && did_work) {
      // Caught up after a backlog: a gateway's steady pace needs a small
      // cache; give the memory back (glibc keeps freed small blocks).
      (void)buffer.set_cache_kib(kSmallCacheKib);
      ::malloc_trim(0);
      large_cache = false;
    }
    const auto now = std::chrono::steady_clock::now();
    last_pass_end = now;
    checkpoint_due = checkpoint_due || did_work;
    if (checkpoint_due && now - last_checkpoint >= kCheckpointInterval) {
      // Only this connection writes the database (the acknowledge path writes
      // the inbox), and its automatic checkpoints follow a busy stretch; this
      // one keeps the WAL short after a quiet one.
      if (auto checkpointed = buffer.checkpoint(); checkpointed) {
        ++metrics_.checkpoints;
      } else {
        logger_.warning(kBuffer, "checkpoint failed: " + checkpointed.error().message);
      }
      last_checkpoint = now;
      checkpoint_due = false;
    }
    check_disk_budget(buffer);
    // The status (for /metrics) costs a few cheap queries (counts kept by
    // triggers): at most every second while busy, and once more when done.
    status_stale = status_stale || did_work;
    if ((status_stale && now - last_refresh >= 1s) || now - last_refresh >= kStatusRefresh) {
      refresh_status(buffer);
      last_refresh = now;
      status_stale = false;
    }
  }
  refresh_status(buffer);
}

// ---- the connection --------------------------------------------------------

std::string Daemon::status_topic() const {
  const auto current = config();
  return current->mqtt.status_topic_prefix + "/" + current->gateway_id + "/status";
}

void Daemon::create_client() {
  const auto current = config();
  const auto uri = server_uri(current->mqtt);
  if (current->mqtt.protocol_version == 5) {
    client_ = std::make_unique<mqtt::async_client>(uri, client_id(*current),
                                                   mqtt::create_options(MQTTVERSION_5));
  } else {
    client_ = std::make_unique<mqtt::async_client>(uri, client_id(*current));
  }
  client_->set_message_callback([this](mqtt::const_message_ptr message) { on_message(message); });
  client_->set_connection_lost_handler([this](const std::string&) {
    connection_lost_ = true;
    loop_wake_.notify_all();
  });
  metrics_.mqtt_connected = false;
}

void Daemon::destroy_client() {
  if (!client_) return;
  try {
    if (client_->is_connected()) client_->disconnect()->wait_for(5s);
  } catch (const std::exception&) {
  }
  client_.reset();
  metrics_.mqtt_connected = false;
}

void Daemon::schedule_reconnect() {
  const auto current = config();
  const std::chrono::milliseconds min_delay(current->mqtt.reconnect_min_ms);
  const std::chrono::milliseconds max_delay(current->mqtt.reconnect_max_ms);
  backoff_ = backoff_.count() == 0 ? min_delay : std::min(backoff_ * 2, max_delay);
  // Full jitter in [backoff/2, backoff]: gateways that lost the same broker do
  // not all come back in the same millisecond.
  std::uniform_int_distribution<std::int64_t> jitter(backoff_.count() / 2, backoff_.count());
  next_connect_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(jitter(random_));
}

void Daemon::try_connect() {
  const auto current = config();
  const auto& m = current->mqtt;
  mqtt::connect_options options;
  if (m.protocol_version == 5) {
    options.set_mqtt_version(MQTTVERSION_5);
    options.set_clean_session(false);
    options.set_clean_start(false);
    mqtt::properties properties;
    properties.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL,
                                  static_cast<int>(m.session_expiry_ms / 1000)));
    options.set_properties(properties);
  } else {
    options.set_mqtt_version(MQTTVERSION_3_1_1);
    options.set_clean_session(false);
  }
  options.set_keep_alive_interval(
      std::chrono::seconds(std::max<std::int64_t>(1, m.keepalive_ms / 1000)));
  options.set_connect_timeout(kConnectTimeout);
  options.set_automatic_reconnect(false);  // done here, with jitter and re-subscription
  const std::string offline =
      "{\"status\":\"offline\",\"version\":\"" + std::string(kVersion) + "\"}";
  options.set_will(mqtt::will_options(status_topic(), offline, 1, true));
  if (!m.username.empty()) options.set_user_name(m.username);
  std::string problem;
  auto password = read_password(m, problem);
  if (!password) {
    ++metrics_.connect_failures;
    logger_.error(kMqtt, "cannot connect: " + problem);
    schedule_reconnect();
    return;
  }
  if (!password->empty()) options.set_password(*password);
  if (m.tls.enabled) {
    mqtt::ssl_options ssl;
    if (!m.tls.ca_file.empty()) ssl.set_trust_store(m.tls.ca_file);
    if (!m.tls.cert_file.empty()) ssl.set_key_store(m.tls.cert_file);
    if (!m.tls.key_file.empty()) ssl.set_private_key(m.tls.key_file);
    ssl.set_enable_server_cert_auth(m.tls.verify);
    ssl.set_verify(m.tls.verify);  // host name check
    // No ssl.set_error_handler(): Paho C++ 1.2 registers the address of this
    // local ssl_options as the handler's context, which is gone (moved from,
    // then out of scope) when the connect thread reports an error —
    // AddressSanitizer caught the stack-use-after-scope. The connect failure
    // below carries OpenSSL's reason anyway.
    options.set_ssl(std::move(ssl));
  }
  const auto uri = server_uri(m);
  try {
    auto token = client_->connect(options);
    if (!token->wait_for(kConnectTimeout + 2s)) {
      throw std::runtime_error("no answer within " +
                               std::to_string(std::chrono::seconds(kConnectTimeout + 2s).count()) +
                               " s");
    }
    const bool session_present = token->get_connect_response().is_session_present();
    connection_lost_ = false;
    ++metrics_.connects;
    if (metrics_.connects > 1) ++metrics_.reconnects;
    logger_.info(kMqtt, "connected to " + uri + " as " + client_id(*current) + " (MQTT " +
                            (m.protocol_version == 5 ? "5" : "3.1.1") + ", session " +
                            (session_present ? "resumed" : "new") + ")");
    const auto wanted = topic_filters(*current);
    if (!session_present) {
      // A new session has no subscriptions (first start, or the broker lost
      // it): subscribe and wait; nothing is queued ahead of the SUBACK.
      subscribed_.clear();
      if (!subscribe(wanted)) throw std::runtime_error("subscription failed");
      subscribed_this_process_ = true;
    } else if (!subscribed_this_process_ || wanted != subscribed_) {
      // A resumed session may hold another config's filters (changed while we
      // were away): subscribe once per process, without waiting — the SUBACK
      // queues behind the backlog the broker is already sending us.
      subscribe_async(wanted);
      subscribed_this_process_ = true;
    }
    metrics_.mqtt_connected = true;
    backoff_ = 0ms;
    publish_status(true, false);
  } catch (const std::exception& e) {
    ++metrics_.connect_failures;
    metrics_.mqtt_connected = false;
    logger_.error(kMqtt, "cannot connect to " + uri + ": " + e.what());
    try {
      if (client_->is_connected()) client_->disconnect()->wait_for(2s);
    } catch (const std::exception&) {
    }
    schedule_reconnect();
  }
}

bool Daemon::subscribe(const std::set<std::string>& filters) {
  if (filters.empty()) return true;
  auto topics = std::make_shared<mqtt::string_collection>();
  std::vector<int> qos;
  for (const auto& filter : filters) {
    topics->push_back(filter);
    qos.push_back(1);
  }
  auto token = client_->subscribe(topics, qos);
  if (!token->wait_for(kSubscribeTimeout)) {
    logger_.error(kMqtt, "no SUBACK within " + std::to_string(kSubscribeTimeout.count()) + " s");
    return false;
  }
  const auto& response = token->get_subscribe_response();
  const auto codes = response.get_reason_codes();
  bool all = true;
  std::size_t index = 0;
  for (const auto& filter : filters) {
    const int code = index < codes.size() ? static_cast<int>(codes[index]) : 0;
    ++index;
    if (code >= 0x80) {
      all = false;
      logger_.error(kMqtt, "the broker refused the subscription to '" + filter + "' (code " +
                               std::to_string(code) + ")");
    } else {
      subscribed_.insert(filter);
      logger_.info(kMqtt, "subscribed to '" + filter + "' (QoS " + std::to_string(code) + ")");
    }
  }
  return all;
}

void Daemon::subscribe_async(const std::set<std::string>& filters) {
  if (filters.empty()) return;
  auto topics = std::make_shared<mqtt::string_collection>();
  std::vector<int> qos;
  for (const auto& filter : filters) {
    topics->push_back(filter);
    qos.push_back(1);
  }
  pending_subscribe_ = client_->subscribe(topics, qos);
  pending_filters_ = filters;
}

void Daemon::check_pending_subscription() {
  if (!pending_subscribe_ || !pending_subscribe_->is_complete()) return;
  auto token = std::move(pending_subscribe_);
  pending_subscribe_.reset();
  try {
    token->wait();  // completed: throws if it failed
    const auto codes = token->get_subscribe_response().get_reason_codes();
    std::size_t index = 0;
    bool all = true;
    for (const auto& filter : pending_filters_) {
      const int code = index < codes.size() ? static_cast<int>(codes[index]) : 0;
      ++index;
      if (code >= 0x80) {
        all = false;
        logger_.error(kMqtt, "the broker refused the subscription to '" + filter + "' (code " +
                                 std::to_string(code) + ")");
      } else {
        subscribed_.insert(filter);
        logger_.info(kMqtt, "subscribed to '" + filter + "' (QoS " + std::to_string(code) + ")");
      }
    }
    if (!all) reconnect_pending_ = true;
  } catch (const std::exception& e) {
    logger_.error(kMqtt, std::string("subscription failed, reconnecting: ") + e.what());
    reconnect_pending_ = true;
  }
}

void Daemon::unsubscribe(const std::set<std::string>& filters) {
  auto topics = std::make_shared<mqtt::string_collection>();
  for (const auto& filter : filters) topics->push_back(filter);
  try {
    // Not waited for: the UNSUBACK may queue behind a backlog of messages.
    client_->unsubscribe(topics);
    for (const auto& filter : filters) {
      subscribed_.erase(filter);
      logger_.info(kMqtt, "unsubscribed from '" + filter + "'");
    }
  } catch (const std::exception& e) {
    logger_.warning(kMqtt, std::string("unsubscribe failed: ") + e.what());
  }
}

void Daemon::publish_status(bool online, bool wait) {
  std::string payload = "{\"status\":\"";
  payload += online ? "online" : "offline";
  payload += "\",\"version\":\"";
  payload += kVersion;
  payload += "\"";
  if (online) {
    const auto status = metrics_.buffer_status();
    const std::int64_t last =
        std::max(metrics_.last_appended_seq.load(), status ? status->last_seq : std::int64_t{0});
    payload += ",\"pending_normalization\":" +
               std::to_string(
                   status ? std::max<std::int64_t>(0, last - status->normalized_through_seq) : 0);
    payload += ",\"unsynced\":" + std::to_string(status ? status->unsynced : 0);
  }
  payload += "}";
  try {
    // Never waited for while connecting: the PUBACK is read by the thread that
    // may be busy in the message callback.
    auto token = client_->publish(status_topic(), payload.data(), payload.size(), 1, true);
    if (wait) token->wait_for(2s);
  } catch (const std::exception& e) {
    logger_.warning(kMqtt, std::string("cannot publish the status: ") + e.what());
  }
}

// ---- reload ----------------------------------------------------------------

void Daemon::reload() {
  const auto current = config();
  const std::string path = current->source;
  auto fresh = load_config(path);
  if (!fresh) {
    logger_.error(kConfig,
                  "reload refused, keeping the running configuration: " + fresh.error().message);
    return;
  }
  if (options_.buffer_path) fresh->buffer.path = *options_.buffer_path;
  const std::string new_text = read_text(path);
  const auto changed = changed_keys(config_text_, new_text);
  if (fresh->buffer.path != current->buffer.path) {
    logger_.warning(kConfig,
                    "buffer.path changes only on restart; still using " + current->buffer.path);
    fresh->buffer.path = current->buffer.path;
  }
  std::string list;
  for (const auto& key : changed) list += (list.empty() ? "" : ", ") + key;
  logger_.info(kConfig,
               "reloaded " + path + (list.empty() ? ": nothing changed" : ": changed " + list));
  const bool reconnect = connection_identity(*fresh) != connection_identity(*current);
  const bool resubscribe = topic_filters(*fresh) != topic_filters(*current);
  const bool http_changed = fresh->http.listen != current->http.listen;
  {
    std::lock_guard lock(config_mutex_);
    config_ = std::make_shared<const Config>(std::move(*fresh));
  }
  config_text_ = new_text;
  logger_.configure(config()->log);
  disk_budget_ = config()->buffer.max_size_bytes;  // the normalizer applies it on its next pass
  if (reconnect) {
    reconnect_pending_ = true;
  } else if (resubscribe && metrics_.mqtt_connected) {
    const auto wanted = topic_filters(*config());
    std::set<std::string> stale;
    std::set<std::string> added;
    for (const auto& filter : subscribed_) {
      if (!wanted.count(filter)) stale.insert(filter);
    }
    for (const auto& filter : wanted) {
      if (!subscribed_.count(filter)) added.insert(filter);
    }
    if (!stale.empty()) unsubscribe(stale);
    if (!added.empty()) subscribe_async(added);
  }
  if (http_changed) start_http();
  if (uplink_) uplink_->reloaded();  // new token or settings: tried at once
}

void Daemon::start_http() {
  http_.reset();
  const auto current = config();
  http_listen_ = current->http.listen;
  if (http_listen_.empty()) return;
  auto server = HttpServer::start(http_listen_, [this](const std::string& path) {
    if (path == "/healthz") {
      const bool healthy = metrics_.mqtt_connected && !metrics_.append_blocked;
      return HttpResponse{
          healthy ? 200 : 503, "text/plain; charset=utf-8",
          std::string(metrics_.mqtt_connected ? "mqtt connected" : "mqtt disconnected") +
              (metrics_.append_blocked ? ", buffer NOT accepting writes\n" : ", buffer ok\n")};
    }
    if (path == "/metrics") {
      return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                          metrics_.render_prometheus(now_ms()) +
                              (uplink_ ? uplink_->metrics().render_prometheus(now_ms()) : "")};
    }
    return HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
  });
  if (!server) {
    logger_.error(kHttp, server.error().message);
    return;
  }
  http_ = std::move(*server);
  logger_.info(kHttp, "serving /healthz and /metrics on " + http_listen_ + " (port " +
                          std::to_string(http_->port()) + ")");
}

// ---- the main loop ---------------------------------------------------------

int Daemon::run(const std::function<void()>& poll) {
  const auto current = config();
  logger_.info(kAgent, std::string("meter-agent ") + kVersion + " starting, gateway " +
                           current->gateway_id + ", buffer " + current->buffer.path);
  auto opened = Buffer::open(current->buffer);
  if (!opened) {
    logger_.error(kBuffer, opened.error().message);
    return kExitFailure;
  }
  normalize_buffer_ = std::move(*opened);
  auto absorbed_to = normalize_buffer_->inbox_position();
  if (!absorbed_to) {
    logger_.error(kBuffer, absorbed_to.error().message);
    return kExitFailure;
  }
  inbox_absorbed_segment_ = absorbed_to->segment;
  inbox_absorbed_offset_ = absorbed_to->offset;
  auto inbox =
      InboxWriter::open(current->buffer.path, current->buffer.durability == Durability::power_loss,
                        absorbed_to->segment);
  if (!inbox) {
    logger_.error(kBuffer, inbox.error().message);
    return kExitFailure;
  }
  inbox_ = std::move(*inbox);
  disk_budget_ = current->buffer.max_size_bytes;
  check_disk_budget(*normalize_buffer_);
  refresh_status(*normalize_buffer_);
  normalizer_ = std::thread([this] { normalizer_loop(); });
  wake_normalizer();  // whatever a previous run left pending
  uplink_ = std::make_unique<Uplink>([this] { return config(); }, logger_);
  if (auto started = uplink_->start(current->buffer); !started) {
    logger_.error(kBuffer, started.error().message);
    uplink_.reset();
  }
  start_http();
  create_client();
  next_connect_at_ = std::chrono::steady_clock::now();
  notifier_.ready();  // the buffer is open; connecting is the loop's job

  while (!stop_) {
    if (poll) poll();
    if (stop_) break;
    notifier_.watchdog(normalizer_heartbeat_);
    if (reload_.exchange(false)) {
      notifier_.reloading();
      reload();
      notifier_.ready();
    }
    check_pending_subscription();
    if (reconnect_pending_ && !metrics_.append_blocked) {
      reconnect_pending_ = false;
      logger_.info(kMqtt, "the connection settings changed: reconnecting");
      pending_subscribe_.reset();
      destroy_client();
      subscribed_.clear();
      subscribed_this_process_ = false;
      create_client();
      backoff_ = 0ms;
      next_connect_at_ = std::chrono::steady_clock::now();
    }
    if (connection_lost_.exchange(false) && metrics_.mqtt_connected) {
      metrics_.mqtt_connected = false;
      ++metrics_.connections_lost;
      logger_.warning(kMqtt, "connection lost; reconnecting");
      backoff_ = 0ms;
      schedule_reconnect();
    }
    if (!metrics_.mqtt_connected && std::chrono::steady_clock::now() >= next_connect_at_) {
      try_connect();
    }
    std::unique_lock lock(loop_mutex_);
    loop_wake_.wait_for(lock, 100ms,
                        [&] { return stop_.load() || reload_.load() || connection_lost_.load(); });
  }
  shutdown();
  return kExitOk;
}

void Daemon::shutdown() {
  stopping_ = true;
  notifier_.stopping();
  logger_.info(kAgent, "stopping: no new messages; finishing the batch in hand");
  const auto deadline = std::chrono::steady_clock::now() + options_.shutdown_bound;
  if (client_) {
    try {
      if (client_->is_connected()) {
        publish_status(false, true);
        client_->disconnect()->wait_for(3s);
      }
    } catch (const std::exception& e) {
      logger_.warning(kMqtt, std::string("disconnect: ") + e.what());
    }
    metrics_.mqtt_connected = false;
  }
  // A callback still retrying a failed commit cannot return (that would
  // acknowledge); wait for it within the bound, then leave it behind.
  while (in_callback_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  if (in_callback_) {
    abandon_ = true;
    logger_.error(kAgent,
                  "a message could not be stored before shutdown; it is NOT acknowledged "
                  "and the broker will redeliver it");
  } else {
    client_.reset();
  }
  if (uplink_) uplink_->stop();  // ends a request in flight; the central side dedups a resend
  normalizer_stop_ = true;
  work_ready_.notify_all();
  if (normalizer_.joinable()) normalizer_.join();
  if (normalize_buffer_) {
    // Everything acknowledged into the raw log, so offline commands see it.
    for (;;) {
      auto absorbed = normalize_buffer_->absorb_inbox(50000, true);
      if (!absorbed) {
        logger_.warning(kBuffer, "the inbox stays for the next start: " + absorbed.error().message);
        break;
      }
      note_absorbed(*absorbed);
      if (absorbed->messages == 0) break;
    }
    if (auto checkpointed = normalize_buffer_->checkpoint(); !checkpointed) {
      logger_.warning(kBuffer, checkpointed.error().message);
    }
  }
  http_.reset();
  logger_.info(kAgent, "stopped");
}

// ---- the command -----------------------------------------------------------

namespace {
volatile std::sig_atomic_t stop_signal = 0;
volatile std::sig_atomic_t reload_signal = 0;

extern "C" void on_stop_signal(int) { stop_signal = 1; }
extern "C" void on_reload_signal(int) { reload_signal = 1; }
}  // namespace

int run_daemon_command(const std::string& config_path,
                       const std::optional<std::string>& buffer_path) {
  Logger logger(std::cerr, Logger::stderr_is_journal());
  auto config = load_config(config_path);
  if (!config) {
    logger.error(kConfig, config.error().message);
    return kExitConfig;
  }
  logger.configure(config->log);
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_handler = on_stop_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  action.sa_handler = on_reload_signal;
  sigaction(SIGHUP, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  DaemonOptions options;
  options.buffer_path = buffer_path;
  Daemon daemon(std::move(*config), options, logger);
  const int code = daemon.run([&] {
    if (stop_signal) daemon.request_stop();
    if (reload_signal) {
      reload_signal = 0;
      daemon.request_reload();
    }
  });
  if (daemon.must_abandon()) {
    std::cerr.flush();
    std::_Exit(code);
  }
  return code;
}

}  // namespace meter::agent
