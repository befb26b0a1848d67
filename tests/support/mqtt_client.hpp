// MQTT clients for tests (Paho C++): a publisher that counts every PUBACK
// (mosquitto_pub -l at QoS 1 loses messages: it disconnects early), and a
// subscriber that collects messages.
#pragma once

#include <mqtt/async_client.h>

#include <chrono>
#include <deque>
#include <memory>
#include <string>

namespace meter::test {

class TestPublisher {
 public:
  TestPublisher(int port, const std::string& client_id, int window = 100)
      : client_("tcp://127.0.0.1:" + std::to_string(port), client_id), window_(window) {
    mqtt::connect_options options;
    options.set_clean_session(true);
    options.set_max_inflight(window);
    client_.connect(options)->wait();
  }
  ~TestPublisher() {
    try {
      flush();
      client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const std::exception&) {
    }
  }
  // Publishes at QoS 1; at most `window` unacknowledged at a time.
  void publish(const std::string& topic, const std::string& payload, bool retained = false) {
    if (static_cast<int>(pending_.size()) >= window_) {
      pending_.front()->wait();
      pending_.pop_front();
      ++acknowledged_;
    }
    pending_.push_back(client_.publish(topic, payload.data(), payload.size(), 1, retained));
  }
  // Waits for every PUBACK.
  void flush() {
    while (!pending_.empty()) {
      pending_.front()->wait();
      pending_.pop_front();
      ++acknowledged_;
    }
  }
  long acknowledged() const { return acknowledged_; }

 private:
  mqtt::async_client client_;
  int window_;
  std::deque<mqtt::delivery_token_ptr> pending_;
  long acknowledged_ = 0;
};

class TestSubscriber {
 public:
  TestSubscriber(int port, const std::string& client_id, const std::string& filter)
      : client_("tcp://127.0.0.1:" + std::to_string(port), client_id) {
    mqtt::connect_options options;
    options.set_clean_session(true);
    client_.start_consuming();
    client_.connect(options)->wait();
    client_.subscribe(filter, 1)->wait();
  }
  ~TestSubscriber() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const std::exception&) {
    }
  }
  // The next message within `timeout`, or null.
  mqtt::const_message_ptr next(std::chrono::milliseconds timeout) {
    mqtt::const_message_ptr message;
    client_.try_consume_message_for(&message, timeout);
    return message;
  }
  // Waits for a message whose payload contains `text`.
  bool wait_for_payload(const std::string& text, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto message = next(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (message && message->get_payload_str().find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  mqtt::async_client client_;
};

}  // namespace meter::test
