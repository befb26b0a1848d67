// The real `meter-agent run` as a child process against a test broker, with
// its config, log and buffer in a temporary directory and its /metrics
// endpoint on a free loopback port.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/buffer/buffer.hpp"
#include "support/mosquitto.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace meter::test {

inline std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char chunk[4096];
      ssize_t n = 0;
      while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) {
        response.append(chunk, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return response;
}

// The value of an unlabelled metric in Prometheus text, or -1.
inline std::int64_t metric_value(const std::string& text, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const auto at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + key.size()));
}

inline std::string seed_mappings() {
  return "metrics:\n"
         "  energy: {kind: counter, unit: kWh}\n"
         "  power: {kind: gauge, unit: kW}\n"
         "mappings:\n"
         "  - topic: \"meters/#\"\n";
}

class AgentProcess {
 public:
  // `mqtt_extra`: more lines under `mqtt:` (indented by two spaces);
  // `mappings`: the metrics and mappings sections.
  AgentProcess(int broker_port, std::string mqtt_extra = "", std::string mappings = seed_mappings(),
               std::string gateway_id = "test-gw")
      : broker_port_(broker_port), http_port_(free_port()), gateway_id_(std::move(gateway_id)) {
    write_config(std::move(mqtt_extra), std::move(mappings));
  }

  void write_config(std::string mqtt_extra, std::string mappings) {
    mqtt_extra_ = std::move(mqtt_extra);
    mappings_ = std::move(mappings);
    write_text_file(config_path(), config_text());
  }
  std::string config_text() const {
    return "gateway_id: " + gateway_id_ +
           "\n"
           "buffer:\n"
           "  path: " +
           buffer_path() +
           "\n"
           "  durability: normal\n" +
           mappings_ +
           // Tests compare flags exactly; whether this machine's clock is
           // synchronized must not change them (tests/uplink covers clock trust).
           "normalize:\n"
           "  clock: synchronized\n"
           "mqtt:\n"
           "  host: 127.0.0.1\n"
           "  port: " +
           std::to_string(broker_port_) + "\n" + mqtt_extra_ +
           "  reconnect: {min: 100ms, max: 1s}\n"
           "http:\n"
           "  listen: 127.0.0.1:" +
           std::to_string(http_port_) + "\n";
  }

  void start() {
    run_log_start_ = log().size();
    process_ = ChildProcess({METER_AGENT_BINARY, "run", "--config", config_path()}, log_path());
  }
  // SIGTERM; the exit code, or nothing if it did not stop in time.
  std::optional<int> stop(std::chrono::milliseconds bound = std::chrono::seconds(15)) {
    process_.signal(SIGTERM);
    return process_.wait_exit(bound);
  }
  void kill() { process_.kill_and_reap(); }
  void signal(int number) { process_.signal(number); }
  pid_t pid() const { return process_.pid(); }

  std::string metrics() const { return http_get(http_port_, "/metrics"); }
  std::int64_t metric(const std::string& name) const { return metric_value(metrics(), name); }
  // Connected and subscribed: the daemon's connection, and when the agent runs
  // the batched connection (the default: not with `acknowledge: each` or ingest
  // workers) that one's SUBACK too. On a first start the filters are the
  // batched connection's alone, so a message published before its SUBACK has no
  // subscriber (a slow machine's TLS handshake makes that wait seconds).
  bool wait_connected(std::chrono::milliseconds timeout = std::chrono::seconds(20)) const {
    if (!wait_until([&] { return metric("meter_agent_mqtt_connected") == 1; }, timeout,
                    std::chrono::milliseconds(20))) {
      return false;
    }
    return !batched() || wait_log_this_run("batched connection: subscribed to", timeout);
  }
  // Whether the config runs the batched connection (the default).
  bool batched() const {
    return mqtt_extra_.find("acknowledge: each") == std::string::npos &&
           mqtt_extra_.find("ingest_workers") == std::string::npos;
  }
  bool wait_log(const std::string& text,
                std::chrono::milliseconds timeout = std::chrono::seconds(20)) const {
    return wait_until([&] { return log().find(text) != std::string::npos; }, timeout,
                      std::chrono::milliseconds(20));
  }
  // The same in what the latest start() wrote (the log file goes on across restarts).
  bool wait_log_this_run(const std::string& text,
                         std::chrono::milliseconds timeout = std::chrono::seconds(20)) const {
    return wait_until([&] { return log_this_run().find(text) != std::string::npos; }, timeout,
                      std::chrono::milliseconds(20));
  }
  std::string log_this_run() const { return log().substr(run_log_start_); }

  // Opens the buffer the agent writes (a second connection, as `status` does).
  std::unique_ptr<Buffer> open_buffer() const {
    BufferConfig config;
    config.path = buffer_path();
    config.durability = Durability::normal;
    auto opened = Buffer::open(config);
    if (!opened) throw std::runtime_error(opened.error().message);
    return std::move(*opened);
  }
  std::int64_t measurements() const {
    auto status = open_buffer()->status();
    return status ? status->measurements : -1;
  }
  bool wait_measurements(std::int64_t count,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    return wait_until([&] { return measurements() >= count; }, timeout,
                      std::chrono::milliseconds(50));
  }

  std::string log() const { return read_text_file(log_path()); }
  std::string config_path() const { return dir_.file("agent.yaml"); }
  std::string buffer_path() const { return dir_.file("buffer.db"); }
  std::string log_path() const { return dir_.file("agent.log"); }
  int http_port() const { return http_port_; }
  const TempDir& dir() const { return dir_; }
  const std::string& gateway_id() const { return gateway_id_; }

 private:
  TempDir dir_;
  int broker_port_;
  int http_port_;
  std::string gateway_id_;
  std::string mqtt_extra_;
  std::string mappings_;
  ChildProcess process_;
  std::size_t run_log_start_ = 0;  // where the latest start() began in the log file
};

}  // namespace meter::test
