// The batched connection (mqtt.acknowledge: batched): the agent's own MQTT
// client on one broker connection. It reads every message that has arrived,
// commits them all to the inbox with one sync (AcknowledgePath::commit_group)
// and only then sends their PUBACKs, in the order the messages came:
// LevelDB's group commit on one connection, which Paho cannot do (it sends
// the PUBACK when its message callback returns). How many messages share a
// sync is bounded by the broker's in-flight window for this client: with
// MQTT 5 the Receive Maximum this connection asks for (kReceiveMaximum), with
// MQTT 3.1.1 mosquitto's max_inflight_messages.
//
// Kept from the Paho connection: the acknowledgement after the sync; each
// message in the inbox once (a redelivery aside); a persistent session under
// a stable client id, `<client id>-batched`; TLS and credentials as mqtt.*
// says; reconnects with jittered backoff. The daemon's Paho connection keeps
// the status topic and its last will, and leaves the mappings' filters.
//
// Its session outlives a change back to `acknowledge: each`: its filters are
// recorded in `<inbox>/batched-session` before each SUBSCRIBE, and while the
// configuration says `each` the thread drains it — once another connection
// holds the filters, it leaves them, takes what the broker had queued until
// kDrainQuiet passes without a message, ends the session and removes the
// record.
//
// Threads: start/reconfigure/stop on the daemon's main loop; one thread of
// its own does the connection's I/O and the commits.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/ops/log.hpp"
#include "agent/ops/metrics.hpp"
#include "agent/source/acknowledge_path.hpp"
#include "agent/source/mqtt_transport.hpp"
#include "agent/source/mqtt_wire.hpp"
#include "common/config/config.hpp"
#include "common/util/clock.hpp"

namespace meter::agent {

class BatchedSource {
 public:
  using Connector = std::function<Result<std::unique_ptr<MqttTransport>>(
      const MqttConfig&, std::chrono::milliseconds)>;
  struct Shared {
    std::function<std::shared_ptr<const Config>()> config;  // read at each connect
    AcknowledgePath& acknowledge_path;
    Metrics& metrics;
    Logger& logger;
    const Clock& clock;
    std::string buffer_path;  // its inbox directory keeps the session's record
    Connector connect;        // empty: MqttTransport::connect (a seam for tests)
  };

  // MQTT 5: messages the broker may have in flight to us at once, i.e. the
  // most that can share one sync.
  static constexpr std::uint16_t kReceiveMaximum = 1024;
  // A drained session ends after this long without a message.
  static constexpr std::chrono::seconds kDrainQuiet{3};

  explicit BatchedSource(Shared shared);
  ~BatchedSource();
  BatchedSource(const BatchedSource&) = delete;
  BatchedSource& operator=(const BatchedSource&) = delete;

  // Starts the thread when the configuration asks for the batched connection
  // or a session of it is recorded (to drain).
  void start();
  // After a reload: a new connection (its settings changed), new
  // subscriptions (the filters changed), the thread started, or a drain.
  void reconfigure(const Config& before, const Config& after);
  // Stops reading; the messages in hand are committed and acknowledged if
  // one more attempt succeeds (else the broker redelivers them); then
  // DISCONNECT, and the thread ends. Waits for the thread: at most one
  // commit attempt, one write, or a TCP connect in progress (10 s); the
  // deadline is not used.
  void stop(std::chrono::steady_clock::time_point deadline);

 private:
  struct Pending {
    std::uint16_t packet_id = 0;  // 0: QoS 0, nothing to acknowledge
    bool committed = false;
  };
  enum class Ended { asked, drained };

  void run();
  Result<Ended> serve(const Config& config, bool drain);
  Status commit_and_acknowledge(MqttTransport& transport, int protocol_version,
                                std::vector<RawMessage>& group, std::vector<Pending>& pending);
  Status send(MqttTransport& transport, std::string_view bytes);
  Status end_session(const Config& config);
  Result<std::unique_ptr<MqttTransport>> open(const Config& config, bool clean_start,
                                              mqtt_wire::Parser& parser,
                                              mqtt_wire::Connack& connack);
  bool session_recorded() const;
  bool filters_taken_back(const Config& config) const;
  void wait_for(std::chrono::milliseconds delay);  // ends early on stop or a reload
  bool interrupted() const { return stop_.load() || reconnect_.load(); }

  Shared shared_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reconnect_{false};        // a reload changed the connection
  std::atomic<bool> filters_changed_{false};  // a reload changed the mappings' filters
  std::atomic<bool> changed_{false};          // any reload (wakes an idle thread)
  std::mt19937_64 random_;
  // The connection thread's own state.
  std::set<std::string> subscribed_;  // what the session has, as far as we know
  bool subscribed_this_process_ = false;
  std::chrono::steady_clock::time_point last_sent_{};
  std::chrono::milliseconds keepalive_{0};  // of the connection being served (0: off)
};

}  // namespace meter::agent
