// The MQTT source: the Paho client of the daemon. It connects (persistent
// session, QoS 1, last will), reconnects with jittered backoff, subscribes to
// the mappings' topic filters, keeps the retained online/offline status topic
// and hands every message to a MessageSink, whose return is the PUBACK.
//
// Threads: `start`, `supervise`, `reconfigure` and `stop` run on the
// supervising thread (the daemon's main loop); the message callback runs on
// Paho's thread and only stamps the message and hands it to the sink.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/source/message_sink.hpp"
#include "common/config/config.hpp"
#include "common/util/clock.hpp"
#include "common/util/result.hpp"

namespace mqtt {
class async_client;
class connect_options;
class message;
class token;
}  // namespace mqtt

namespace meter::agent {

// tcp://host:port or ssl://host:port (an IPv6 address in brackets).
std::string server_uri(const MqttConfig& mqtt);
// The broker password from mqtt.password_file or mqtt.password_env ("" when neither).
Result<std::string> read_password(const MqttConfig& mqtt);
// The topic filters the mappings subscribe to.
std::set<std::string> topic_filters(const Config& config);
// Whether going from `before` to `after` needs a new connection: a changed
// gateway id (the default client id, the status topic) or MQTT setting, except
// the backoff (read at every retry). The password itself is read again on
// every connect, so only where it comes from counts.
bool connection_settings_differ(const Config& before, const Config& after);

// An ingest worker's connection (agent/source/ingest_worker.cpp): its own
// client id, the shared-subscription filters it is given, no status topic.
struct WorkerIdentity {
  std::string client_id;
  std::set<std::string> filters;                 // $share/<group>/<filter>
  std::set<std::string> unsubscribe_on_connect;  // a reload removed them; or, draining, all
};

// The shared subscription's group of a gateway's ingest workers.
std::string ingest_share_group(const Config& config);
// `$share/<group>/<filter>` for each of the mappings' filters.
std::set<std::string> shared_filters(const Config& config);
// The client id of ingest worker `index` (stable: its session outlives restarts).
std::string ingest_worker_client_id(const Config& config, int index);
// The client id of the batched connection (mqtt.acknowledge: batched), stable too.
std::string batched_client_id(const Config& config);

class MqttSource {
 public:
  struct Shared {
    std::function<std::shared_ptr<const Config>()> config;  // read at each connect
    MessageSink& sink;
    Metrics& metrics;
    Logger& logger;
    const Clock& clock;
    std::function<void()> wake_supervisor;  // a connection was lost: call supervise() soon
    // Set: an ingest worker's connection. Unset: the daemon's own, which
    // subscribes to the mappings' filters itself when mqtt.ingest_workers is
    // 0 and mqtt.acknowledge is `each`, and otherwise only keeps the status
    // topic (and leaves those filters).
    std::optional<WorkerIdentity> worker;
  };
  explicit MqttSource(Shared shared);
  ~MqttSource();
  MqttSource(const MqttSource&) = delete;
  MqttSource& operator=(const MqttSource&) = delete;

  // Creates the client; the first connect is due at once.
  void start();
  // The supervising loop's step: a SUBACK that arrived, a reconnect a reload
  // asked for, a lost connection, a connect that is due.
  void supervise();
  // Whether supervise() has news to act on (the loop's wait ends early).
  bool needs_supervision() const { return connection_lost_.load(); }
  // After a reload swapped the configuration: a new connection, or only the
  // subscriptions that changed.
  void reconfigure(const Config& before, const Config& after);
  // Whether the last connect resumed a session the broker had kept.
  bool session_resumed() const { return session_resumed_; }
  // Whether every UNSUBSCRIBE sent has been answered.
  bool unsubscribes_done() const;
  // Ends the client's session at the broker: connects once with a clean
  // session and disconnects (a retired worker, once drained).
  Status end_session();
  // Publishes "offline", disconnects and waits until `deadline` for a message
  // callback still in the sink. False if it is still there (retrying a commit
  // that fails): that message is not acknowledged, and the client must not be
  // destroyed (the process exits with std::_Exit).
  bool stop(std::chrono::steady_clock::time_point deadline);

 private:
  void on_message(const mqtt::message& message);
  void create_client();
  void destroy_client();
  void schedule_reconnect();
  Status connect();
  std::string connection_client_id() const;
  std::set<std::string> wanted_filters(const Config& config) const;
  Result<mqtt::connect_options> connect_options(bool clean_session) const;
  enum class Wait { for_suback, no };
  Status subscribe(const std::set<std::string>& filters, Wait wait);
  Status read_suback(mqtt::token& token, const std::set<std::string>& filters);
  void check_pending_subscription();
  void unsubscribe(const std::set<std::string>& filters);
  void note_subscriptions();
  void publish_status(bool online, bool wait);
  std::string status_topic() const;

  Shared shared_;
  std::unique_ptr<mqtt::async_client> client_;
  std::shared_ptr<mqtt::token> pending_subscribe_;  // a SUBSCRIBE not waited for
  std::set<std::string> pending_filters_;
  std::set<std::string> subscribed_;  // filters the broker's session has (as far as we know)
  bool subscribed_this_process_ = false;
  // A reload changed the connection (acted on once no commit is failing).
  bool reconnect_pending_ = false;
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point next_connect_at_{};
  std::mt19937_64 random_;
  std::atomic<bool> connection_lost_{false};
  std::atomic<bool> in_callback_{false};
  bool session_resumed_ = false;
  // The session still has the mappings' filters, to leave once the batched
  // connection has subscribed to them (Metrics::batched_subscribed).
  bool leave_after_batched_ = false;
  std::vector<std::shared_ptr<mqtt::token>> unsubscribes_;  // sent, maybe not answered
  bool abandoned_ = false;
};

}  // namespace meter::agent
