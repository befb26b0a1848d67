#include "agent/source/batched_source.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <variant>

#include "agent/source/mqtt_source.hpp"
#include "common/buffer/inbox.hpp"
#include "common/util/durable_file.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kMqtt = "mqtt";
constexpr auto kConnectTimeout = 10s;
constexpr auto kWriteTimeout = 10s;
constexpr auto kPollInterval = 100ms;  // how soon a stop or a reload is noticed
constexpr std::size_t kReadChunk = 256 * 1024;
// A group's size: past either bound the group is committed before reading on.
constexpr std::size_t kGroupMessages = 4096;
constexpr std::size_t kGroupBytes = 16 * 1024 * 1024;
// The largest packet MQTT can carry (a remaining length of 268,435,455).
constexpr std::size_t kMaxPacket = 268'435'455 + 5;
constexpr auto kRetryMin = 20ms;

std::string record_path(const std::string& buffer_path) {
  return inbox_directory(buffer_path) + "/batched-session";
}

std::vector<std::string> as_list(const std::set<std::string>& filters) {
  return {filters.begin(), filters.end()};
}

std::set<std::string> minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::set<std::string> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

// Sets a flag for as long as it lives (a gauge that must drop on every return).
class FlagWhileAlive {
 public:
  explicit FlagWhileAlive(std::atomic<bool>& flag) : flag_(flag) { flag_.store(true); }
  ~FlagWhileAlive() { flag_ = false; }
  FlagWhileAlive(const FlagWhileAlive&) = delete;
  FlagWhileAlive& operator=(const FlagWhileAlive&) = delete;
  FlagWhileAlive(FlagWhileAlive&&) = delete;
  FlagWhileAlive& operator=(FlagWhileAlive&&) = delete;

 private:
  std::atomic<bool>& flag_;
};

std::string hex(int code) {
  static constexpr char kDigits[] = "0123456789abcdef";
  return std::string("0x") + kDigits[(code >> 4) & 0xf] + kDigits[code & 0xf];
}

}  // namespace

BatchedSource::BatchedSource(Shared shared)
    : shared_(std::move(shared)), random_(std::random_device{}()) {
  if (!shared_.connect) shared_.connect = MqttTransport::connect;
}

BatchedSource::~BatchedSource() { stop(SteadyClock::now()); }

// ---- the session's record ---------------------------------------------------------

bool BatchedSource::session_recorded() const {
  std::ifstream file(record_path(shared_.buffer_path));
  return file.good();
}

namespace {

// The filters the session may hold, one per line.
std::set<std::string> recorded_filters(const std::string& buffer_path) {
  std::ifstream file(record_path(buffer_path));
  std::set<std::string> filters;
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty()) filters.insert(line);
  }
  return filters;
}

}  // namespace

// Whether another connection holds the mappings' filters, so that the
// drained session may end: the daemon's own (a SUBACK for each), or, with
// ingest workers, every worker connected (each subscribes as it connects).
bool BatchedSource::filters_taken_back(const Config& config) const {
  const auto& metrics = shared_.metrics;
  if (config.mqtt.ingest_workers > 0) {
    return metrics.ingest_workers_connected.load() >= config.mqtt.ingest_workers;
  }
  return metrics.mqtt_subscribed.load();
}

// ---- the daemon's side ------------------------------------------------------------

void BatchedSource::start() {
  if (thread_.joinable()) return;
  if (!shared_.config()->mqtt.batched_acknowledge && !session_recorded()) return;
  stop_ = false;
  shared_.metrics.batched_enabled = shared_.config()->mqtt.batched_acknowledge;
  thread_ = std::thread([this] { run(); });
}

void BatchedSource::reconfigure(const Config& before, const Config& after) {
  if (!thread_.joinable()) {
    start();
    return;
  }
  if (connection_settings_differ(before, after)) {
    reconnect_ = true;
  } else if (topic_filters(before) != topic_filters(after)) {
    filters_changed_ = true;
  }
  {
    std::lock_guard lock(mutex_);
    changed_ = true;
  }
  wake_.notify_all();
}

void BatchedSource::stop(std::chrono::steady_clock::time_point /*deadline*/) {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  // The thread notices within kPollInterval, or after one commit attempt
  // (AcknowledgePath waits at most kNormalizerWait per wait), one write, or
  // a TCP connect in progress.
  thread_.join();
}

void BatchedSource::wait_for(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, delay, [&] { return stop_.load() || changed_.load(); });
}

// ---- the connection's thread ------------------------------------------------------

void BatchedSource::run() {
  auto& logger = shared_.logger;
  std::chrono::milliseconds backoff{0};
  while (!stop_) {
    {
      std::lock_guard lock(mutex_);
      changed_ = false;
    }
    reconnect_ = false;
    filters_changed_ = false;
    const auto config = shared_.config();
    const bool drain = !config->mqtt.batched_acknowledge;
    shared_.metrics.batched_enabled = !drain;
    if (drain) shared_.metrics.batched_subscribed = false;
    if (drain && !session_recorded()) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_.load() || changed_.load(); });
      continue;
    }
    if (drain && !filters_taken_back(*config)) {
      // The session may end only once another holds the filters: the
      // daemon's own connection (its SUBACK), or the ingest workers.
      wait_for(500ms);
      continue;
    }
    Result<Ended> served = Error{""};
    try {
      served = serve(*config, drain);
    } catch (const std::exception& e) {
      // Memory, or a filter the encoder refuses: a failed connection.
      served = Error{std::string("unexpected error: ") + e.what()};
    }
    if (served) {
      backoff = 0ms;
      if (*served == Ended::drained) {
        if (auto removed = remove_file_durably(record_path(shared_.buffer_path)); !removed) {
          logger.error(kMqtt, "batched connection: " + removed.error().message);
          wait_for(std::chrono::milliseconds(config->mqtt.reconnect_max_ms));
        } else {
          logger.info(kMqtt,
                      "batched connection: its session is drained and ended (mqtt.acknowledge "
                      "is each)");
        }
      }
      continue;
    }
    ++shared_.metrics.batched_connection_failures;
    const auto minimum = std::chrono::milliseconds(config->mqtt.reconnect_min_ms);
    const auto maximum = std::chrono::milliseconds(config->mqtt.reconnect_max_ms);
    backoff = std::clamp(backoff * 2, minimum, maximum);
    // Jitter in [backoff/2, backoff], as the Paho connection does.
    std::uniform_int_distribution<std::int64_t> jitter(backoff.count() / 2, backoff.count());
    const auto delay = std::chrono::milliseconds(jitter(random_));
    logger.warning(kMqtt, "batched connection: " + served.error().message + "; retrying in " +
                              std::to_string(delay.count()) + " ms");
    wait_for(delay);
  }
}

Status BatchedSource::send(MqttTransport& transport, std::string_view bytes) {
  auto sent = transport.write(bytes, kWriteTimeout);
  if (sent) last_sent_ = SteadyClock::now();
  return sent;
}

Result<std::unique_ptr<MqttTransport>> BatchedSource::open(const Config& config, bool clean_start,
                                                           mqtt_wire::Parser& parser,
                                                           mqtt_wire::Connack& connack) {
  const auto& m = config.mqtt;
  auto password = read_password(m);
  if (!password) return password.error();
  auto transport = shared_.connect(m, kConnectTimeout);
  if (!transport) return transport.error();
  const auto where = (*transport)->describe();
  mqtt_wire::ConnectOptions options;
  options.protocol_version = m.protocol_version;
  options.client_id = batched_client_id(config);
  options.clean_start = clean_start;
  options.keepalive_s = static_cast<std::uint16_t>(m.keepalive_ms / 1000);
  if (!m.username.empty()) options.username = m.username;
  if (!password->empty()) options.password = *password;
  if (m.protocol_version == mqtt_wire::kMqtt5) {
    options.session_expiry_s =
        clean_start
            ? 0
            : static_cast<std::uint32_t>(std::clamp<std::int64_t>(
                  m.session_expiry_ms / 1000, 0, std::numeric_limits<std::uint32_t>::max()));
    options.receive_maximum = kReceiveMaximum;
  }
  if (auto sent = send(**transport, mqtt_wire::encode_connect(options)); !sent) {
    return Error{"cannot connect to " + where + ": " + sent.error().message};
  }
  const auto deadline = SteadyClock::now() + kConnectTimeout;
  std::string input;
  for (;;) {
    auto packet = parser.next();
    if (!packet) return Error{"cannot connect to " + where + ": " + packet.error().message};
    if (*packet) {
      const auto* answer = std::get_if<mqtt_wire::Connack>(&**packet);
      if (answer == nullptr) {
        return Error{"cannot connect to " + where + ": the broker sent another packet first"};
      }
      connack = *answer;
      break;
    }
    const auto now = SteadyClock::now();
    if (stop_) return Error{"stopped while connecting to " + where};
    if (now >= deadline) {
      return Error{"cannot connect to " + where + ": no CONNACK within " +
                   std::to_string(std::chrono::seconds(kConnectTimeout).count()) + " s"};
    }
    auto got =
        (*transport)
            ->read(input, kReadChunk,
                   std::min<std::chrono::milliseconds>(
                       kPollInterval,
                       std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)));
    if (!got) return Error{"cannot connect to " + where + ": " + got.error().message};
    parser.feed(input);
    input.clear();
  }
  if (connack.reason_code != 0) {
    return Error{"cannot connect to " + where + ": the broker refused: " +
                 mqtt_wire::connack_reason_text(m.protocol_version, connack.reason_code)};
  }
  return transport;
}

Result<BatchedSource::Ended> BatchedSource::serve(const Config& config, bool drain) {
  const auto& m = config.mqtt;
  const int version = m.protocol_version;
  auto& metrics = shared_.metrics;
  auto& logger = shared_.logger;
  mqtt_wire::Parser parser(version, kMaxPacket);
  mqtt_wire::Connack connack;
  auto opened = open(config, false, parser, connack);
  if (!opened) return opened.error();
  MqttTransport& transport = **opened;
  const auto where = transport.describe();
  const FlagWhileAlive connected(metrics.batched_connected);
  // MQTT 5: the broker may set the keepalive; 0 turns it off (no PINGREQ).
  const auto keepalive = std::chrono::milliseconds(
      connack.server_keepalive ? *connack.server_keepalive * 1000LL : m.keepalive_ms);
  const bool pinging = keepalive.count() > 0;
  keepalive_ = keepalive;
  logger.info(kMqtt, "batched connection: connected to " + where + " as " +
                         batched_client_id(config) + " (MQTT " + (version == 5 ? "5" : "3.1.1") +
                         ", session " + (connack.session_present ? "resumed" : "new") + ")" +
                         (drain ? ", to drain and end its session" : ""));
  if (!connack.session_present) {
    subscribed_.clear();
    metrics.batched_subscribed = false;
  }

  std::uint16_t last_id = 0;
  auto next_id = [&] {
    last_id = static_cast<std::uint16_t>(last_id == 65535 ? 1 : last_id + 1);
    return last_id;
  };
  std::map<std::uint16_t, std::vector<std::string>> awaiting_suback;
  std::map<std::uint16_t, std::vector<std::string>> awaiting_unsuback;
  auto subscribe = [&](const std::set<std::string>& filters) -> Status {
    if (filters.empty()) return Ok{};
    // Recorded first: a crash right after the SUBSCRIBE leaves a session
    // whose filters the drain knows.
    auto known = recorded_filters(shared_.buffer_path);
    known.insert(filters.begin(), filters.end());
    std::string text;
    for (const auto& filter : known) text += filter + "\n";
    if (auto recorded = replace_file_durably(record_path(shared_.buffer_path), text); !recorded) {
      return Error{"cannot record the session before subscribing: " + recorded.error().message};
    }
    const auto id = next_id();
    awaiting_suback[id] = as_list(filters);
    return send(transport, mqtt_wire::encode_subscribe(version, id, as_list(filters), 1));
  };
  auto unsubscribe = [&](const std::set<std::string>& filters) -> Status {
    if (filters.empty()) return Ok{};
    const auto id = next_id();
    awaiting_unsuback[id] = as_list(filters);
    return send(transport, mqtt_wire::encode_unsubscribe(version, id, as_list(filters)));
  };

  std::set<std::string> wanted = drain ? std::set<std::string>{} : topic_filters(config);
  {
    Status sent = Ok{};
    if (drain) {
      auto leave = recorded_filters(shared_.buffer_path);
      const auto current = topic_filters(config);
      leave.insert(current.begin(), current.end());
      leave.insert(subscribed_.begin(), subscribed_.end());
      sent = unsubscribe(leave);
    } else {
      if (!connack.session_present || !subscribed_this_process_ || wanted != subscribed_) {
        sent = subscribe(wanted);
      }
      if (sent && connack.session_present) {
        // What the session may hold that this configuration does not: known
        // from this process, or recorded by an earlier one.
        const auto held =
            subscribed_this_process_ ? subscribed_ : recorded_filters(shared_.buffer_path);
        sent = unsubscribe(minus(held, wanted));
      }
    }
    if (!sent) return Error{where + ": " + sent.error().message};
  }

  std::vector<RawMessage> group;
  std::vector<Pending> pending;
  std::size_t group_bytes = 0;
  auto last_message = SteadyClock::now();
  bool ping_outstanding = false;
  auto ping_sent = SteadyClock::now();
  std::string input;
  // A connection that fails with messages in hand: they are committed
  // without acknowledgement (one attempt) — QoS 1 ones come again anyway
  // (then twice in the raw log), but QoS 0 ones never would.
  const auto keep_unacknowledged = [&](Error error) -> Error {
    if (group.empty()) return error;
    try {
      const auto results = shared_.acknowledge_path.commit_group(group);
      const auto kept = std::count(results.begin(), results.end(), true);
      logger.warning(kMqtt, "batched connection: " + std::to_string(kept) + " of " +
                                std::to_string(group.size()) +
                                " messages in hand stored, not acknowledged, as the connection "
                                "failed");
    } catch (const std::exception& e) {
      logger.error(kMqtt,
                   std::string("batched connection: messages in hand not stored: ") + e.what());
    }
    group.clear();
    return error;
  };
  const auto end_connection = [&](std::optional<std::uint32_t> session_expiry) {
    (void)send(transport, mqtt_wire::encode_disconnect(version, session_expiry));
    transport.close();
  };

  for (;;) {
    if (stop_ || reconnect_) {
      end_connection(std::nullopt);
      return Ended::asked;
    }
    if (filters_changed_.exchange(false) && !drain) {
      const auto now_wanted = topic_filters(*shared_.config());
      Status sent = subscribe(minus(now_wanted, wanted));
      if (sent) sent = unsubscribe(minus(wanted, now_wanted));
      if (!sent) return Error{where + ": " + sent.error().message};
      wanted = now_wanted;
    }
    const auto now = SteadyClock::now();
    if (pinging && ping_outstanding && now - ping_sent > keepalive) {
      return Error{where + ": no PINGRESP within the keepalive (" +
                   std::to_string(keepalive.count() / 1000) + " s); reconnecting"};
    }
    if (pinging && !ping_outstanding && now - last_sent_ >= keepalive) {
      if (auto sent = send(transport, mqtt_wire::encode_pingreq()); !sent) {
        return Error{where + ": " + sent.error().message};
      }
      ping_outstanding = true;
      ping_sent = now;
    }

    // The packets already here, then what else has arrived: wait only while
    // nothing is in hand.
    bool waited = false;
    // A pass ends by this time even if packets keep coming (a broker that
    // sends only PINGRESPs must not keep a stop or a reload waiting).
    const auto pass_end = SteadyClock::now() + kPollInterval;
    for (;;) {
      bool full = false;
      for (;;) {
        if (group.size() >= kGroupMessages || group_bytes >= kGroupBytes ||
            SteadyClock::now() >= pass_end) {
          full = true;
          break;
        }
        auto next = parser.next();
        if (!next) {
          return keep_unacknowledged(
              Error{where + ": closing the connection: " + next.error().message});
        }
        if (!*next) break;
        auto& packet = **next;
        if (auto* publish = std::get_if<mqtt_wire::Publish>(&packet)) {
          ++metrics.received;
          group_bytes += publish->topic.size() + publish->payload.size();
          pending.push_back({publish->qos > 0 ? publish->packet_id : std::uint16_t{0}, false});
          RawMessage& raw = group.emplace_back();
          raw.topic = std::move(publish->topic);
          raw.payload = std::move(publish->payload);
          raw.qos = publish->qos;
          raw.retained = publish->retain;
          raw.dup = publish->dup;
          raw.received_ms = shared_.clock.now_ms();
          last_message = SteadyClock::now();
        } else if (auto* suback = std::get_if<mqtt_wire::Suback>(&packet)) {
          auto found = awaiting_suback.find(suback->packet_id);
          if (found == awaiting_suback.end()) continue;
          const auto& filters = found->second;
          for (std::size_t i = 0; i < filters.size(); ++i) {
            const int code = i < suback->reason_codes.size() ? suback->reason_codes[i] : 0x80;
            if (code >= 0x80) {
              logger.error(kMqtt, "batched connection: the broker refused the subscription to '" +
                                      filters[i] + "' (" + hex(code) +
                                      "): messages on it are not received");
            } else {
              subscribed_.insert(filters[i]);
              logger.info(kMqtt, "batched connection: subscribed to '" + filters[i] + "'");
            }
          }
          subscribed_this_process_ = true;
          awaiting_suback.erase(found);
          if (!drain &&
              std::includes(subscribed_.begin(), subscribed_.end(), wanted.begin(), wanted.end())) {
            metrics.batched_subscribed = true;
          }
        } else if (auto* unsuback = std::get_if<mqtt_wire::Unsuback>(&packet)) {
          auto found = awaiting_unsuback.find(unsuback->packet_id);
          if (found == awaiting_unsuback.end()) continue;
          for (const auto& filter : found->second) {
            if (subscribed_.erase(filter) > 0) {
              logger.info(kMqtt, "batched connection: unsubscribed from '" + filter + "'");
            }
          }
          awaiting_unsuback.erase(found);
        } else if (std::holds_alternative<mqtt_wire::Pingresp>(packet)) {
          ping_outstanding = false;
        } else if (auto* disconnect = std::get_if<mqtt_wire::Disconnect>(&packet)) {
          return keep_unacknowledged(Error{
              where + ": the broker ended the connection (" + hex(disconnect->reason_code) +
              (disconnect->reason_string.empty() ? "" : ": " + disconnect->reason_string) + ")"});
        } else if (std::holds_alternative<mqtt_wire::Connack>(packet)) {
          return keep_unacknowledged(Error{where + ": closing the connection: a second CONNACK"});
        }
        // PUBACK and its kind: we publish nothing, so there is nothing to match.
      }
      if (full) break;
      const auto timeout = group.empty() && !waited ? kPollInterval : 0ms;
      waited = true;
      auto got = transport.read(input, kReadChunk, timeout);
      // A failed connection: the group in hand is not acknowledged; the
      // broker sends its QoS 1 messages again on the next connection.
      if (!got) return keep_unacknowledged(Error{where + ": " + got.error().message});
      if (*got == 0) break;
      parser.feed(input);
      input.clear();
    }

    if (!group.empty()) {
      if (auto done = commit_and_acknowledge(transport, version, group, pending); !done) {
        return Error{where + ": " + done.error().message};
      }
      group.clear();
      pending.clear();
      group_bytes = 0;
      // The PINGRESP may have waited unread behind a long commit.
      if (ping_outstanding) ping_sent = SteadyClock::now();
      last_message = SteadyClock::now();  // a drain's quiet counts from the last commit
    }
    if (drain && awaiting_unsuback.empty() && SteadyClock::now() - last_message >= kDrainQuiet) {
      if (version == mqtt_wire::kMqtt5) {
        end_connection(0);  // a Session Expiry Interval of 0 ends the session
      } else {
        end_connection(std::nullopt);
        if (auto ended = end_session(config); !ended) return ended.error();
      }
      return Ended::drained;
    }
  }
}

// MQTT 3.1.1 ends a session by connecting with a clean session.
Status BatchedSource::end_session(const Config& config) {
  mqtt_wire::Parser parser(config.mqtt.protocol_version, kMaxPacket);
  mqtt_wire::Connack connack;
  auto opened = open(config, true, parser, connack);
  if (!opened) return opened.error();
  (void)send(**opened, mqtt_wire::encode_disconnect(config.mqtt.protocol_version));
  (*opened)->close();
  return Ok{};
}

// Commits what has not been committed of `group` (all of it, the first
// time) with one sync, then acknowledges, in order, every message up to the
// first one not committed. A refused commit (the disk budget, a failing
// disk) is retried with backoff; meanwhile nothing is read, so the broker's
// in-flight window holds the rest back, as Paho's blocked callback would.
Status BatchedSource::commit_and_acknowledge(MqttTransport& transport, int protocol_version,
                                             std::vector<RawMessage>& group,
                                             std::vector<Pending>& pending) {
  auto& metrics = shared_.metrics;
  std::chrono::milliseconds delay = kRetryMin;
  std::size_t acknowledged = 0;
  std::vector<std::size_t> todo(group.size());
  for (std::size_t i = 0; i < todo.size(); ++i) todo[i] = i;
  for (;;) {
    std::vector<bool> results;
    try {
      if (todo.size() == group.size()) {
        results = shared_.acknowledge_path.commit_group(group);
      } else {
        std::vector<RawMessage> rest;
        rest.reserve(todo.size());
        for (const auto index : todo) rest.push_back(group[index]);
        results = shared_.acknowledge_path.commit_group(rest);
      }
    } catch (const std::exception& e) {
      results.assign(todo.size(), false);
      ++metrics.append_failures;
      shared_.logger.error(kMqtt,
                           std::string("unexpected error storing messages, retrying: ") + e.what());
    }
    std::vector<std::size_t> still;
    bool any = false;
    for (std::size_t k = 0; k < todo.size(); ++k) {
      if (k < results.size() && results[k]) {
        pending[todo[k]].committed = true;
        any = true;
      } else {
        still.push_back(todo[k]);
      }
    }
    if (any) ++metrics.group_commits;
    if (shared_.logger.enabled(LogLevel::debug, kMqtt)) {
      shared_.logger.debug(
          kMqtt, "batched connection: " + std::to_string(todo.size() - still.size()) + " of " +
                     std::to_string(todo.size()) + " messages committed with one sync");
    }
    todo = std::move(still);
    std::string acknowledgements;
    while (acknowledged < pending.size() && pending[acknowledged].committed) {
      if (pending[acknowledged].packet_id != 0) {
        acknowledgements +=
            mqtt_wire::encode_puback(protocol_version, pending[acknowledged].packet_id);
      }
      ++acknowledged;
    }
    if (!acknowledgements.empty()) {
      if (auto sent = send(transport, acknowledgements); !sent) return sent;
    }
    if (todo.empty()) return Ok{};
    if (stop_) {
      return Error{std::to_string(todo.size()) +
                   " messages not stored at the stop: not acknowledged, the broker keeps them"};
    }
    // Keeps the connection alive while the disk gets room (the PINGRESPs
    // wait unread): a PINGREQ before each wait, none longer than half the
    // keepalive.
    if (SteadyClock::now() - last_sent_ >= std::chrono::seconds(1)) {
      if (auto sent = send(transport, mqtt_wire::encode_pingreq()); !sent) return sent;
    }
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, delay, [&] { return stop_.load(); });
    }
    std::chrono::milliseconds longest = AcknowledgePath::kAppendRetryMax;
    if (keepalive_.count() > 0)
      longest = std::min(longest, std::max<std::chrono::milliseconds>(kRetryMin, keepalive_ / 2));
    delay = std::min<std::chrono::milliseconds>(delay * 2, longest);
  }
}

}  // namespace meter::agent
