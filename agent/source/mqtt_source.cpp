#include "agent/source/mqtt_source.hpp"

#include <mqtt/async_client.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <vector>

#include "agent/version.hpp"

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kMqtt = "mqtt";

constexpr auto kConnectTimeout = 10s;
constexpr auto kSubscribeTimeout = 10s;

std::string client_id(const Config& config) {
  return config.mqtt.client_id.empty() ? "meter-agent-" + config.gateway_id : config.mqtt.client_id;
}

}  // namespace

std::string server_uri(const MqttConfig& mqtt) {
  std::string host = mqtt.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return (mqtt.tls.enabled ? "ssl://" : "tcp://") + host + ":" +
         std::to_string(mqtt.effective_port());
}

Result<std::string> read_password(const MqttConfig& mqtt) {
  if (!mqtt.password_file.empty()) {
    std::ifstream file(mqtt.password_file, std::ios::binary);
    if (!file) return Error{"cannot read mqtt.password_file " + mqtt.password_file};
    std::string password((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
      password.pop_back();
    }
    return password;
  }
  if (!mqtt.password_env.empty()) {
    const char* value = std::getenv(mqtt.password_env.c_str());
    if (value == nullptr) {
      return Error{"the environment variable " + mqtt.password_env +
                   " (mqtt.password_env) is not set"};
    }
    return std::string(value);
  }
  return std::string();
}

std::set<std::string> topic_filters(const Config& config) {
  std::set<std::string> filters;
  for (const auto& mapping : config.mappings) filters.insert(mapping.topic);
  return filters;
}

std::string ingest_share_group(const Config& config) {
  // A share name must not contain '/', '+' or '#'.
  std::string group = client_id(config);
  for (auto& c : group) {
    if (c == '/' || c == '+' || c == '#') c = '_';
  }
  return group;
}

std::set<std::string> shared_filters(const Config& config) {
  std::set<std::string> filters;
  const auto prefix = "$share/" + ingest_share_group(config) + "/";
  for (const auto& filter : topic_filters(config)) filters.insert(prefix + filter);
  return filters;
}

std::string ingest_worker_client_id(const Config& config, int index) {
  return client_id(config) + "-ingest-" + std::to_string(index);
}

std::string batched_client_id(const Config& config) { return client_id(config) + "-batched"; }

bool connection_settings_differ(const Config& before, const Config& after) {
  // The server as connected to (an unset port and its default are the same
  // server); the reconnect backoff applies to the next try without a new
  // connection.
  auto connected_as = [](const MqttConfig& mqtt) {
    MqttConfig settings = mqtt;
    settings.port = mqtt.effective_port();
    settings.reconnect_min_ms = 0;
    settings.reconnect_max_ms = 0;
    return settings;
  };
  return connected_as(after.mqtt) != connected_as(before.mqtt) ||
         after.gateway_id != before.gateway_id;
}

MqttSource::MqttSource(Shared shared)
    : shared_(std::move(shared)), random_(std::random_device{}()) {}

MqttSource::~MqttSource() {
  if (abandoned_) {
    // Its message callback is still running (the process is about to _Exit):
    // destroying the client would wait for it forever.
    (void)client_.release();
    return;
  }
  destroy_client();
}

// ---- the message callback (Paho's thread) ---------------------------------

// Returning is what acknowledges the message (PUBACK), so this returns only
// after the sink committed it; the sink retries a failed commit, never
// returning without.
void MqttSource::on_message(const mqtt::message& message) {
  in_callback_ = true;
  ++shared_.metrics.received;
  RawMessage raw;
  // An exception escaping this callback ends the process (std::terminate):
  // a copy that fails (memory) is retried like a failed commit.
  for (;;) {
    try {
      raw.topic = message.get_topic();
      raw.payload = message.get_payload_str();
      raw.qos = message.get_qos();
      raw.retained = message.is_retained();
      raw.dup = message.is_duplicate();
      raw.received_ms = shared_.clock.now_ms();
      break;
    } catch (const std::exception& e) {
      ++shared_.metrics.append_failures;
      shared_.logger.error(
          "buffer", std::string("unexpected error storing a message, retrying: ") + e.what());
      std::this_thread::sleep_for(20ms);
    }
  }
  shared_.sink.commit(raw);
  in_callback_ = false;
}

// ---- the connection --------------------------------------------------------

std::string MqttSource::status_topic() const {
  const auto current = shared_.config();
  return current->mqtt.status_topic_prefix + "/" + current->gateway_id + "/status";
}

std::string MqttSource::connection_client_id() const {
  return shared_.worker ? shared_.worker->client_id : client_id(*shared_.config());
}

std::set<std::string> MqttSource::wanted_filters(const Config& config) const {
  if (shared_.worker) return shared_.worker->filters;
  // The workers, or the batched connection, subscribe.
  if (config.mqtt.ingest_workers > 0 || config.mqtt.batched_acknowledge) return {};
  return topic_filters(config);
}

bool MqttSource::unsubscribes_done() const {
  for (const auto& token : unsubscribes_) {
    if (!token->is_complete()) return false;
  }
  return true;
}

void MqttSource::start() {
  create_client();
  next_connect_at_ = shared_.clock.steady_now();
}

void MqttSource::create_client() {
  const auto current = shared_.config();
  const auto uri = server_uri(current->mqtt);
  if (current->mqtt.protocol_version == 5) {
    client_ = std::make_unique<mqtt::async_client>(uri, connection_client_id(),
                                                   mqtt::create_options(MQTTVERSION_5));
  } else {
    client_ = std::make_unique<mqtt::async_client>(uri, connection_client_id());
  }
  client_->set_message_callback(
      [this](const mqtt::const_message_ptr& message) { on_message(*message); });
  client_->set_connection_lost_handler([this](const std::string&) {
    connection_lost_ = true;
    shared_.wake_supervisor();
  });
  shared_.metrics.mqtt_connected = false;
}

void MqttSource::destroy_client() {
  if (!client_) return;
  try {
    if (client_->is_connected()) client_->disconnect()->wait_for(5s);
  } catch (const std::exception&) {
  }
  client_.reset();
  shared_.metrics.mqtt_connected = false;
}

void MqttSource::schedule_reconnect() {
  const auto current = shared_.config();
  const std::chrono::milliseconds min_delay(current->mqtt.reconnect_min_ms);
  const std::chrono::milliseconds max_delay(current->mqtt.reconnect_max_ms);
  backoff_ = backoff_.count() == 0 ? min_delay : std::min(backoff_ * 2, max_delay);
  // Full jitter in [backoff/2, backoff]: gateways that lost the same broker do
  // not all come back in the same millisecond.
  std::uniform_int_distribution<std::int64_t> jitter(backoff_.count() / 2, backoff_.count());
  next_connect_at_ = shared_.clock.steady_now() + std::chrono::milliseconds(jitter(random_));
}

void MqttSource::supervise() {
  auto& metrics = shared_.metrics;
  auto& logger = shared_.logger;
  check_pending_subscription();
  if (leave_after_batched_ && metrics.mqtt_connected && metrics.batched_subscribed) {
    leave_after_batched_ = false;
    unsubscribe(topic_filters(*shared_.config()));
  }
  if (reconnect_pending_ && !metrics.append_blocked) {
    reconnect_pending_ = false;
    logger.info(kMqtt, "the connection settings changed: reconnecting");
    pending_subscribe_.reset();
    destroy_client();
    subscribed_.clear();
    subscribed_this_process_ = false;
    note_subscriptions();
    create_client();
    backoff_ = 0ms;
    next_connect_at_ = shared_.clock.steady_now();
  }
  if (connection_lost_.exchange(false) && metrics.mqtt_connected) {
    metrics.mqtt_connected = false;
    ++metrics.connections_lost;
    logger.warning(kMqtt, "connection lost; reconnecting");
    backoff_ = 0ms;
    schedule_reconnect();
  }
  if (!metrics.mqtt_connected && shared_.clock.steady_now() >= next_connect_at_) {
    if (auto connected = connect(); !connected) {
      ++metrics.connect_failures;
      metrics.mqtt_connected = false;
      logger.error(kMqtt, connected.error().message);
      schedule_reconnect();
    }
  }
}

Result<mqtt::connect_options> MqttSource::connect_options(bool clean_session) const {
  const auto current = shared_.config();
  const auto& m = current->mqtt;
  mqtt::connect_options options;
  if (m.protocol_version == 5) {
    options.set_mqtt_version(MQTTVERSION_5);
    options.set_clean_session(clean_session);
    options.set_clean_start(clean_session);
    mqtt::properties properties;
    properties.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL,
                                  static_cast<int>(m.session_expiry_ms / 1000)));
    options.set_properties(properties);
  } else {
    options.set_mqtt_version(MQTTVERSION_3_1_1);
    options.set_clean_session(clean_session);
  }
  options.set_keep_alive_interval(
      std::chrono::seconds(std::max<std::int64_t>(1, m.keepalive_ms / 1000)));
  options.set_connect_timeout(kConnectTimeout);
  options.set_automatic_reconnect(false);  // done here, with jitter and re-subscription
  if (!shared_.worker) {
    // The gateway's status: only the daemon's own connection has it (a
    // worker that dies is restarted; the gateway is not offline).
    const std::string offline =
        "{\"status\":\"offline\",\"version\":\"" + std::string(kVersion) + "\"}";
    options.set_will(mqtt::will_options(status_topic(), offline, 1, true));
  }
  if (!m.username.empty()) options.set_user_name(m.username);
  auto password = read_password(m);
  if (!password) return Error{"cannot connect: " + password.error().message};
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
  return options;
}

Status MqttSource::connect() {
  const auto current = shared_.config();
  const auto& m = current->mqtt;
  auto& metrics = shared_.metrics;
  auto& logger = shared_.logger;
  auto built = connect_options(false);
  if (!built) return built.error();
  auto options = std::move(*built);
  const auto uri = server_uri(m);
  try {
    auto token = client_->connect(options);
    if (!token->wait_for(kConnectTimeout + 2s)) {
      throw std::runtime_error("no answer within " +
                               std::to_string(std::chrono::seconds(kConnectTimeout + 2s).count()) +
                               " s");
    }
    const bool session_present = token->get_connect_response().is_session_present();
    session_resumed_ = session_present;
    connection_lost_ = false;
    ++metrics.connects;
    if (metrics.connects > 1) ++metrics.reconnects;
    logger.info(kMqtt, "connected to " + uri + " as " + connection_client_id() + " (MQTT " +
                           (m.protocol_version == 5 ? "5" : "3.1.1") + ", session " +
                           (session_present ? "resumed" : "new") + ")");
    const auto wanted = wanted_filters(*current);
    // Filters this connection must leave: a worker's that a reload removed
    // (or all of them, draining); the daemon's own when workers or the
    // batched connection took over.
    std::set<std::string> leave;
    leave_after_batched_ = false;
    if (shared_.worker) {
      leave = shared_.worker->unsubscribe_on_connect;
    } else if (m.ingest_workers > 0) {
      leave = topic_filters(*current);
    } else if (m.batched_acknowledge) {
      // Left only once the batched connection holds the filters itself, so
      // that no message is published while neither session has them.
      if (metrics.batched_subscribed) {
        leave = topic_filters(*current);
      } else {
        leave_after_batched_ = session_present;
      }
    }
    if (session_present && !leave.empty()) unsubscribe(leave);
    if (!session_present) {
      // A new session has no subscriptions (first start, or the broker lost
      // it): subscribe and wait; nothing is queued ahead of the SUBACK.
      subscribed_.clear();
      note_subscriptions();
      if (!subscribe(wanted, Wait::for_suback)) throw std::runtime_error("subscription failed");
      subscribed_this_process_ = true;
    } else if (!subscribed_this_process_ || wanted != subscribed_) {
      // A resumed session may hold another config's filters (changed while we
      // were away): subscribe once per process, without waiting — the SUBACK
      // queues behind the backlog the broker is already sending us.
      (void)subscribe(wanted, Wait::no);
      subscribed_this_process_ = true;
    }
    metrics.mqtt_connected = true;
    backoff_ = 0ms;
    if (!shared_.worker) publish_status(true, false);
    return Ok{};
  } catch (const std::exception& e) {
    try {
      if (client_->is_connected()) client_->disconnect()->wait_for(2s);
    } catch (const std::exception&) {
    }
    return Error{"cannot connect to " + uri + ": " + e.what()};
  }
}

// Sends one SUBSCRIBE for `filters` at QoS 1. Wait::for_suback reads the
// SUBACK here; Wait::no leaves it to check_pending_subscription().
Status MqttSource::subscribe(const std::set<std::string>& filters, Wait wait) {
  if (filters.empty()) return Ok{};
  auto topics = std::make_shared<mqtt::string_collection>();
  std::vector<int> qos;
  for (const auto& filter : filters) {
    topics->push_back(filter);
    qos.push_back(1);
  }
  auto token = client_->subscribe(topics, qos);
  if (wait == Wait::no) {
    pending_subscribe_ = std::move(token);
    pending_filters_ = filters;
    return Ok{};
  }
  if (!token->wait_for(kSubscribeTimeout)) {
    shared_.logger.error(kMqtt,
                         "no SUBACK within " + std::to_string(kSubscribeTimeout.count()) + " s");
    return Error{"no SUBACK"};
  }
  return read_suback(*token, filters);
}

// The one place a SUBACK is read: what the broker granted, filter by filter.
Status MqttSource::read_suback(mqtt::token& token, const std::set<std::string>& filters) {
  const auto codes = token.get_subscribe_response().get_reason_codes();
  std::string refused;
  std::size_t index = 0;
  for (const auto& filter : filters) {
    const int code = index < codes.size() ? static_cast<int>(codes[index]) : 0;
    ++index;
    if (code >= 0x80) {
      shared_.logger.error(kMqtt, "the broker refused the subscription to '" + filter + "' (code " +
                                      std::to_string(code) + ")");
      refused += (refused.empty() ? "" : ", ") + filter;
    } else {
      subscribed_.insert(filter);
      shared_.logger.info(kMqtt,
                          "subscribed to '" + filter + "' (QoS " + std::to_string(code) + ")");
    }
  }
  note_subscriptions();
  if (!refused.empty()) return Error{"the broker refused " + refused};
  return Ok{};
}

void MqttSource::check_pending_subscription() {
  if (!pending_subscribe_ || !pending_subscribe_->is_complete()) return;
  auto token = std::move(pending_subscribe_);
  pending_subscribe_.reset();
  try {
    token->wait();  // completed: throws if it failed
    if (!read_suback(*token, pending_filters_)) reconnect_pending_ = true;
  } catch (const std::exception& e) {
    shared_.logger.error(kMqtt, std::string("subscription failed, reconnecting: ") + e.what());
    reconnect_pending_ = true;
  }
}

// Whether this connection's session holds every mapping filter (as far as
// its SUBACKs and UNSUBSCRIBEs tell): the batched connection's drain waits
// for it before it ends its own session.
void MqttSource::note_subscriptions() {
  if (shared_.worker) return;
  const auto filters = topic_filters(*shared_.config());
  shared_.metrics.mqtt_subscribed =
      !filters.empty() &&
      std::includes(subscribed_.begin(), subscribed_.end(), filters.begin(), filters.end());
}

void MqttSource::unsubscribe(const std::set<std::string>& filters) {
  auto topics = std::make_shared<mqtt::string_collection>();
  for (const auto& filter : filters) topics->push_back(filter);
  try {
    // Not waited for: the UNSUBACK may queue behind a backlog of messages.
    std::erase_if(unsubscribes_, [](const auto& token) { return token->is_complete(); });
    unsubscribes_.push_back(client_->unsubscribe(topics));
    for (const auto& filter : filters) {
      subscribed_.erase(filter);
      shared_.logger.info(kMqtt, "unsubscribed from '" + filter + "'");
    }
    note_subscriptions();
  } catch (const std::exception& e) {
    shared_.logger.warning(kMqtt, std::string("unsubscribe failed: ") + e.what());
  }
}

void MqttSource::publish_status(bool online, bool wait) {
  const auto& metrics = shared_.metrics;
  std::string payload = "{\"status\":\"";
  payload += online ? "online" : "offline";
  payload += "\",\"version\":\"";
  payload += kVersion;
  payload += "\"";
  if (online) {
    const auto status = metrics.buffer_status();
    const std::int64_t last =
        std::max(metrics.last_appended_seq.load(), status ? status->last_seq : std::int64_t{0});
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
    shared_.logger.warning(kMqtt, std::string("cannot publish the status: ") + e.what());
  }
}

void MqttSource::reconfigure(const Config& before, const Config& after) {
  if (connection_settings_differ(before, after)) {
    reconnect_pending_ = true;
    return;
  }
  const auto wanted = wanted_filters(after);
  if (wanted == wanted_filters(before) || !shared_.metrics.mqtt_connected) return;
  std::set<std::string> stale;
  std::set<std::string> added;
  for (const auto& filter : subscribed_) {
    if (!wanted.contains(filter)) stale.insert(filter);
  }
  for (const auto& filter : wanted) {
    if (!subscribed_.contains(filter)) added.insert(filter);
  }
  if (!stale.empty()) unsubscribe(stale);
  if (!added.empty()) (void)subscribe(added, Wait::no);
}

Status MqttSource::end_session() {
  destroy_client();
  create_client();
  auto options = connect_options(true);
  if (!options) return options.error();
  try {
    if (!client_->connect(*options)->wait_for(kConnectTimeout + 2s)) {
      return Error{"ending the session: no CONNACK"};
    }
    client_->disconnect()->wait_for(5s);
  } catch (const std::exception& e) {
    return Error{std::string("ending the session: ") + e.what()};
  }
  client_.reset();
  return Ok{};
}

bool MqttSource::stop(std::chrono::steady_clock::time_point deadline) {
  if (client_) {
    try {
      if (client_->is_connected()) {
        if (!shared_.worker) publish_status(false, true);
        client_->disconnect()->wait_for(3s);
      }
    } catch (const std::exception& e) {
      shared_.logger.warning(kMqtt, std::string("disconnect: ") + e.what());
    }
    shared_.metrics.mqtt_connected = false;
  }
  // A callback still retrying a failed commit cannot return (that would
  // acknowledge); wait for it within the bound, then leave it behind.
  while (in_callback_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  if (in_callback_) {
    abandoned_ = true;
    return false;
  }
  client_.reset();
  return true;
}

}  // namespace meter::agent
