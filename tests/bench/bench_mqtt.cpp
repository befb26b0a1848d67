// bench_mqtt: live QoS 1 throughput with a local mosquitto (issue 3), in one
// run: a do-nothing Paho C++ subscriber (acknowledges as it receives), the
// agent (`meter-agent run`) and the naive baseline (naive_subscriber.py:
// Python paho-mqtt, JSON parse + sha256 + one SQLite WAL commit per message at
// the same synchronous level), for durability normal and power_loss.
//
// Two measurements per subscriber, each with a fresh broker:
// - drain: the subscriber's persistent session is created, the subscriber goes
//   offline, N messages are published into the broker's queue, then the
//   subscriber starts and the drain is timed: no publisher in the measurement.
// - live: the subscriber is connected while the publisher sends N messages.
// Every rate is counted from the first to the last message the subscriber
// took (the agent's from its /metrics counter, polled). The publisher is a
// small raw-socket client writing pre-encoded PUBLISH packets (a Paho
// publisher with 100 in flight peaked near 17k/s on this class of machine); its standalone rate
// (no subscriber) is reported beside.
//
//   bench_mqtt [--messages N] [--devices D] [--modes drain,live]
//              [--durability normal,power_loss] [--replay FILE] [--naive off]
// --naive off leaves the naive baseline out (its power_loss runs take minutes).
// --replay FILE publishes a recorded stream (tests/sim/meter_sim.py --write FILE) instead of the
// generated seed-JSON workload, through the same raw-socket publisher; the agent maps it with
// the shipped presets, and the naive baseline (seed JSON only) is left out.
#include <arpa/inet.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/agent_process.hpp"
#include "support/mosquitto.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A broker tuned for measuring: no per-message logging, unlimited queues.
class BenchBroker {
 public:
  BenchBroker() : port_(free_port()) {
    const std::string config = "listener " + std::to_string(port_) +
                               " 127.0.0.1\n"
                               "allow_anonymous true\n"
                               "persistence false\n"
                               "max_queued_messages 0\n"
                               "max_queued_bytes 0\n"
                               "max_inflight_messages 100\n"
                               "log_dest stderr\n"
                               "log_type error\n"
                               "log_type warning\n" +
                               std::string(::geteuid() == 0 ? "user root\n" : "");
    write_text_file(dir_.file("mosquitto.conf"), config);
    process_ = ChildProcess({"/usr/sbin/mosquitto", "-c", dir_.file("mosquitto.conf")},
                            dir_.file("mosquitto.log"));
    if (!wait_until([&] { return port_accepts(port_); }, 10s)) {
      throw std::runtime_error("mosquitto did not start: " +
                               read_text_file(dir_.file("mosquitto.log")));
    }
  }
  ~BenchBroker() { process_.kill_and_reap(); }
  int port() const { return port_; }

 private:
  TempDir dir_;
  int port_;
  ChildProcess process_;
};

void put_u16(std::string& out, std::size_t value) {
  out.push_back(static_cast<char>((value >> 8) & 0xff));
  out.push_back(static_cast<char>(value & 0xff));
}

void put_length(std::string& out, std::size_t length) {
  do {
    auto byte = static_cast<unsigned char>(length % 128);
    length /= 128;
    if (length > 0) byte = static_cast<unsigned char>(byte | 0x80);
    out.push_back(static_cast<char>(byte));
  } while (length > 0);
}

std::string publish_packet(const std::string& topic, const std::string& payload,
                           std::size_t packet_id) {
  std::string body;
  put_u16(body, topic.size());
  body += topic;
  put_u16(body, packet_id);
  body += payload;
  std::string packet(1, static_cast<char>(0x32));  // PUBLISH, QoS 1
  put_length(packet, body.size());
  return packet + body;
}

struct Workload {
  std::vector<std::string> packets;  // pre-encoded PUBLISH packets
};

Workload make_workload(long messages, long devices) {
  Workload workload;
  workload.packets.reserve(static_cast<std::size_t>(messages));
  for (long i = 0; i < messages; ++i) {
    std::string device = "d";
    device += std::to_string(i % devices);
    std::string payload = "{\"device_id\":\"";
    payload += device;
    payload += "\",\"timestamp\":\"";
    payload += format_timestamp(1767225600000LL + (i / devices) * 1000);
    payload += "\",\"metric_type\":\"energy\",\"value\":";
    payload += std::to_string(i / devices);
    payload += ",\"unit\":\"kWh\"}";
    std::string topic = "meters/";
    topic += device;
    workload.packets.push_back(
        publish_packet(topic, payload, static_cast<std::size_t>(i % 65535) + 1));
  }
  return workload;
}

// Set once in main: a replayed stream (--replay) holds every preset's topics, so the subscribers
// take everything and the agent maps it with the shipped presets, as scripts/quickstart.sh does.
bool replaying = false;

// A recorded stream: topic<TAB>payload per line (config/samples/mqtt-messages.tsv's format,
// written by tests/sim/meter_sim.py --write FILE), replayed in file order.
Workload load_workload(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  Workload workload;
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos) throw std::runtime_error(path + ": a line without a tab");
    workload.packets.push_back(publish_packet(line.substr(0, tab), line.substr(tab + 1),
                                              workload.packets.size() % 65535 + 1));
  }
  return workload;
}

// A raw-socket MQTT 3.1.1 publisher: writes the pre-encoded packets with at
// most `window` unacknowledged, counts PUBACKs on a reader thread.
// Returns messages per second from the first write to the last PUBACK.
double raw_publish(int port, const Workload& workload, std::size_t window = 10000) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    throw std::runtime_error("publisher: connect failed");
  }
  std::string connect_packet;
  {
    std::string body;
    put_u16(body, 4);
    body += "MQTT";
    body.push_back(4);     // 3.1.1
    body.push_back(0x02);  // clean session
    put_u16(body, 0);      // no keepalive
    const std::string client_id = "bench-raw-publisher";
    put_u16(body, client_id.size());
    body += client_id;
    connect_packet.push_back(0x10);
    put_length(connect_packet, body.size());
    connect_packet += body;
  }
  auto write_all = [&](const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("publisher: send failed");
      data += n;
      size -= static_cast<std::size_t>(n);
    }
  };
  write_all(connect_packet.data(), connect_packet.size());
  char connack[4];
  std::size_t got = 0;
  while (got < 4) {
    const ssize_t n = ::recv(fd, connack + got, 4 - got, 0);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("publisher: no CONNACK");
    }
    got += static_cast<std::size_t>(n);
  }

  const std::size_t total = workload.packets.size();
  std::mutex mutex;
  std::condition_variable changed;
  std::size_t acked = 0;
  Clock::time_point last_ack;
  std::thread reader([&] {
    char buffer[65536];
    std::size_t bytes = 0;
    while (true) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      bytes += static_cast<std::size_t>(n);
      const std::lock_guard lock(mutex);
      acked = bytes / 4;  // only PUBACKs (4 bytes) arrive
      last_ack = Clock::now();
      changed.notify_all();
      if (acked >= total) break;
    }
    const std::lock_guard lock(mutex);
    changed.notify_all();
  });

  const auto start = Clock::now();
  std::string batch;
  std::size_t sent = 0;
  try {
    while (sent < total) {
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return sent - acked < window; });
      }
      batch.clear();
      const std::size_t end = std::min(total, sent + 64);
      for (std::size_t i = sent; i < end; ++i) batch += workload.packets[i];
      write_all(batch.data(), batch.size());
      sent = end;
    }
  } catch (...) {
    ::shutdown(fd, SHUT_RDWR);
    reader.join();
    ::close(fd);
    throw;
  }
  bool complete = false;
  {
    std::unique_lock lock(mutex);
    complete = changed.wait_for(lock, 120s, [&] { return acked >= total; });
  }
  const char disconnect[2] = {static_cast<char>(0xe0), 0};
  ::send(fd, disconnect, 2, MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_RDWR);
  reader.join();
  ::close(fd);
  if (!complete) throw std::runtime_error("publisher: PUBACKs missing");
  return static_cast<double>(total) / seconds_between(start, last_ack);
}

// Messages per second a subscriber took, and the publisher's rate in live runs.
struct Rate {
  double subscriber = 0;
  double publisher = 0;
  long max_lag = 0;             // live: most messages acknowledged but not yet normalized
  double catch_up_seconds = 0;  // live: from the last acknowledgement to all normalized
};

// The do-nothing Paho C++ subscriber: persistent session, message callback
// that only counts (PUBACK as it returns).
class NullSubscriber {
 public:
  NullSubscriber(int port, long expected)
      : client_("tcp://127.0.0.1:" + std::to_string(port), "bench-null-subscriber",
                dir_.path().string()),
        expected_(expected) {
    client_.set_message_callback([this](mqtt::const_message_ptr) {
      const auto now = Clock::now();
      const std::lock_guard lock(mutex_);
      if (received_ == 0) first_ = now;
      ++received_;
      last_ = now;
      if (received_ >= expected_) done_.notify_all();
    });
  }
  ~NullSubscriber() { disconnect(); }
  void connect_and_subscribe() {
    mqtt::connect_options options;
    options.set_clean_session(false);
    options.set_keep_alive_interval(60);
    client_.connect(options)->wait();
    client_.subscribe(replaying ? "#" : "meters/#", 1)->wait();
  }
  void connect() {
    mqtt::connect_options options;
    options.set_clean_session(false);
    options.set_keep_alive_interval(60);
    client_.connect(options)->wait();
  }
  void disconnect() {
    try {
      if (client_.is_connected()) client_.disconnect()->wait_for(5s);
    } catch (const std::exception&) {
    }
  }
  double wait_rate(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    if (!done_.wait_for(lock, timeout, [&] { return received_ >= expected_; })) {
      throw std::runtime_error("do-nothing subscriber: only " + std::to_string(received_) +
                               " messages");
    }
    return static_cast<double>(received_ - 1) / seconds_between(first_, last_);
  }

 private:
  TempDir dir_;
  mqtt::async_client client_;
  long expected_;
  std::mutex mutex_;
  std::condition_variable done_;
  long received_ = 0;
  Clock::time_point first_, last_;
};

Rate run_null(const Workload& workload, bool drain) {
  BenchBroker broker;
  const auto n = static_cast<long>(workload.packets.size());
  NullSubscriber subscriber(broker.port(), n);
  subscriber.connect_and_subscribe();
  Rate rate;
  if (drain) {
    subscriber.disconnect();
    raw_publish(broker.port(), workload);
    subscriber.connect();
    rate.subscriber = subscriber.wait_rate(120s);
  } else {
    rate.publisher = raw_publish(broker.port(), workload);
    rate.subscriber = subscriber.wait_rate(120s);
  }
  subscriber.disconnect();
  return rate;
}

std::string agent_mappings() {
  if (replaying) {
    return "metrics:\n"
           "  energy: {kind: counter, unit: kWh}\n"
           "  power: {kind: gauge, unit: kW}\n"
           "presets_dir: " METER_SOURCE_DIR
           "/config/presets\n"
           "mappings:\n"
           "  - preset: seed\n"
           "  - preset: tasmota\n"
           "  - preset: shelly_em\n"
           "  - preset: zigbee2mqtt\n"
           "  - preset: plain\n"
           "    topic: \"plain/+/+\"\n";
  }
  return "metrics:\n"
         "  energy: {kind: counter, unit: kWh}\n"
         "  power: {kind: gauge, unit: kW}\n"
         "mappings:\n"
         "  - topic: \"meters/#\"\n";
}

// Waits (polling /metrics) until the agent moved `expected` acknowledged
// messages into its raw log; the rate from the first to the last receive time
// there (received_ms, stamped in the message callback just before the commit
// that acknowledges), so polling does not skew it.
double agent_rate(const AgentProcess& agent, long expected, std::chrono::seconds timeout) {
  if (!wait_until([&] { return agent.metric("meter_agent_messages_raw_logged_total") >= expected; },
                  timeout, 5ms)) {
    throw std::runtime_error("agent: messages did not arrive; log:\n" + agent.log());
  }
  sqlite3* db = nullptr;
  double rate = 0;
  if (sqlite3_open_v2(agent.buffer_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), min(received_ms), max(received_ms) FROM raw_messages",
                           -1, &statement, nullptr) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
      const auto count = sqlite3_column_int64(statement, 0);
      const auto span_ms = sqlite3_column_int64(statement, 2) - sqlite3_column_int64(statement, 1);
      if (span_ms > 0)
        rate = static_cast<double>(count - 1) * 1000.0 / static_cast<double>(span_ms);
    }
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  if (rate <= 0) throw std::runtime_error("agent: cannot read its raw log");
  return rate;
}

// Normalization lag while an agent takes messages: acknowledged minus
// normalized, sampled from /metrics every 50 ms on a thread of its own.
class LagSampler {
 public:
  explicit LagSampler(const AgentProcess& agent)
      : thread_([this, &agent] {
          while (!stop_) {
            const auto text = agent.metrics();
            const auto appended = metric_value(text, "meter_agent_messages_appended_total");
            const auto normalized = metric_value(text, "meter_agent_messages_normalized_total");
            if (appended >= 0 && normalized >= 0) {
              max_lag_ = std::max<long>(max_lag_, static_cast<long>(appended - normalized));
            }
            std::this_thread::sleep_for(50ms);  // a sampling period, not a synchronization
          }
        }) {}
  ~LagSampler() { stop(); }
  long stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return max_lag_;
  }

 private:
  std::atomic<bool> stop_{false};
  long max_lag_ = 0;
  std::thread thread_;
};

// --ingest-workers N: mqtt.ingest_workers of the agent (-1: its default).
int g_ingest_workers = -1;
// --acknowledge each|batched: mqtt.acknowledge of the agent ("": its default).
std::string g_acknowledge;

Rate run_agent(const Workload& workload, bool drain, const std::string& durability) {
  BenchBroker broker;
  const auto n = static_cast<long>(workload.packets.size());
  AgentProcess agent(broker.port(), "", agent_mappings(), "bench-gw");
  // AgentProcess writes durability normal; switch to the requested level.
  std::string config = agent.config_text();
  const std::string from = "durability: normal";
  config.replace(config.find(from), from.size(), "durability: " + durability);
  if (g_ingest_workers >= 0) {
    const std::string mqtt = "mqtt:\n";
    config.insert(config.find(mqtt) + mqtt.size(),
                  "  ingest_workers: " + std::to_string(g_ingest_workers) + "\n");
  }
  if (!g_acknowledge.empty()) {
    const std::string mqtt = "mqtt:\n";
    config.insert(config.find(mqtt) + mqtt.size(), "  acknowledge: " + g_acknowledge + "\n");
  }
  write_text_file(agent.config_path(), config);
  agent.start();
  // Connected and, with ingest workers, every worker subscribed: a message
  // published before the first subscription has nobody to go to.
  auto wait_ready = [&] {
    if (!agent.wait_connected()) throw std::runtime_error("agent did not connect:\n" + agent.log());
    if (g_ingest_workers > 0 && !wait_until(
                                    [&] {
                                      return agent.metric("meter_agent_ingest_workers_connected") ==
                                             g_ingest_workers;
                                    },
                                    60s, 5ms)) {
      throw std::runtime_error("agent: ingest workers did not connect:\n" + agent.log());
    }
    // The batched connection (the default, unless each or workers are asked for).
    const bool batched = g_acknowledge != "each" && g_ingest_workers <= 0;
    if (batched && !agent.wait_log("batched connection: subscribed", 60s)) {
      throw std::runtime_error("agent: the batched connection did not subscribe:\n" + agent.log());
    }
  };
  wait_ready();
  Rate rate;
  if (drain) {
    if (agent.stop() != 0) throw std::runtime_error("agent did not stop cleanly");
    raw_publish(broker.port(), workload);
    agent.start();
    rate.subscriber = agent_rate(agent, n, 300s);
  } else {
    LagSampler lag(agent);
    rate.publisher = raw_publish(broker.port(), workload);
    rate.subscriber = agent_rate(agent, n, 300s);
    const auto acked_at = Clock::now();
    if (!wait_until([&] { return agent.metric("meter_agent_messages_normalized_total") >= n; },
                    300s, 5ms)) {
      throw std::runtime_error("agent: normalization did not finish:\n" + agent.log());
    }
    rate.catch_up_seconds = seconds_between(acked_at, Clock::now());
    rate.max_lag = lag.stop();
  }
  agent.stop();
  return rate;
}

std::string sqlite_sync(const std::string& durability) {
  return durability == "power_loss" ? "FULL" : "NORMAL";
}

double naive_seconds(const std::string& output) {
  const std::string key = "seconds_from_first_message ";
  const auto at = output.find(key);
  if (at == std::string::npos) throw std::runtime_error("naive subscriber: " + output);
  return std::stod(output.substr(at + key.size()));
}

Rate run_naive(const Workload& workload, bool drain, const std::string& durability) {
  BenchBroker broker;
  TempDir dir;
  const auto n = static_cast<long>(workload.packets.size());
  const std::string script = std::string(METER_SOURCE_DIR) + "/tests/bench/naive_subscriber.py";
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   script,
                                   "--port",
                                   std::to_string(broker.port()),
                                   "--db",
                                   dir.file("naive.db"),
                                   "--count",
                                   std::to_string(n),
                                   "--synchronous",
                                   sqlite_sync(durability)};
  auto session_argv = argv;
  session_argv.push_back("--session-only");
  {
    ChildProcess session(session_argv, dir.file("session.out"));
    if (session.wait_exit(30s) != 0) {
      throw std::runtime_error("naive subscriber: " + read_text_file(dir.file("session.out")));
    }
  }
  Rate rate;
  const std::string out = dir.file("naive.out");
  if (drain) {
    raw_publish(broker.port(), workload);
    ChildProcess naive(argv, out);
    if (naive.wait_exit(600s) != 0) throw std::runtime_error("naive: " + read_text_file(out));
  } else {
    ChildProcess naive(argv, out);
    if (!wait_until([&] { return read_text_file(out).find("ready") != std::string::npos; }, 30s)) {
      throw std::runtime_error("naive subscriber not ready: " + read_text_file(out));
    }
    rate.publisher = raw_publish(broker.port(), workload);
    if (naive.wait_exit(600s) != 0) throw std::runtime_error("naive: " + read_text_file(out));
  }
  rate.subscriber = static_cast<double>(n - 1) / naive_seconds(read_text_file(out));
  return rate;
}

// ---- resources: a gateway's steady state ---------------------------------------

std::int64_t proc_status_kb(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

double proc_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command (which may hold spaces) start after the last ')'.
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int index = 3; fields >> field; ++index) {
    if (index == 14 || index == 15) ticks += std::stod(field);  // utime, stime
    if (index == 15) break;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string seed_payload(long device, long step) {
  return "{\"device_id\":\"d" + std::to_string(device) + "\",\"timestamp\":\"" +
         format_timestamp(1767225600000LL + step * 1000) +
         "\",\"metric_type\":\"energy\",\"value\":" + std::to_string(step) + ",\"unit\":\"kWh\"}";
}

struct Resources {
  std::int64_t stored = 0;
  double cpu_percent = 0;  // of one core, while taking readings at the given rate
  std::int64_t rss_kb = 0;
  std::int64_t peak_rss_kb = 0;
};

// The agent on a buffer already holding `stored` measurements takes `rate`
// QoS 1 readings per second for `seconds`: its CPU share of one core over
// that window (from /proc/PID/stat) and its resident memory at the end.
Resources run_resources(long stored, long devices, double rate, double seconds) {
  BenchBroker broker;
  AgentProcess agent(broker.port(), "", agent_mappings(), "bench-gw");
  Resources result;
  {
    auto config = parse_config(agent.config_text(), "<bench>");
    if (!config) throw std::runtime_error(config.error().message);
    auto opened = Buffer::open(config->buffer);
    if (!opened) throw std::runtime_error(opened.error().message);
    auto& buffer = **opened;
    std::vector<RawMessage> chunk;
    for (long i = 0; i < stored; ++i) {
      RawMessage m;
      m.topic = "meters/d" + std::to_string(i % devices);
      m.payload = seed_payload(i % devices, i / devices);
      m.received_ms = 1767225600000LL + (i / devices) * 1000;
      chunk.push_back(std::move(m));
      if (chunk.size() == 50000 || i + 1 == stored) {
        if (auto appended = buffer.append_raw_batch(chunk); !appended) {
          throw std::runtime_error(appended.error().message);
        }
        chunk.clear();
        if (auto normalized = buffer.normalize_all(*config); !normalized) {
          throw std::runtime_error(normalized.error().message);
        }
      }
    }
    (void)buffer.checkpoint();
    auto status = buffer.status();
    if (!status) throw std::runtime_error(status.error().message);
    result.stored = status->measurements;
  }
  agent.start();
  if (!agent.wait_connected()) throw std::runtime_error("agent did not connect:\n" + agent.log());
  mqtt::async_client publisher("tcp://127.0.0.1:" + std::to_string(broker.port()),
                               "bench-steady-publisher");
  publisher.connect()->wait();
  const long steps = static_cast<long>(rate * seconds);
  const long first_step = stored / devices + 1;
  const double cpu_before = proc_cpu_seconds(agent.pid());
  const auto start = Clock::now();
  for (long i = 0; i < steps; ++i) {
    // Paced by the clock: reading i is due at start + i / rate.
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(static_cast<long>(1e6 * static_cast<double>(i) / rate)));
    const long device = i % devices;
    publisher.publish("meters/d" + std::to_string(device),
                      seed_payload(device, first_step + i / devices), 1, false);
  }
  if (!wait_until([&] { return agent.metric("meter_agent_messages_normalized_total") >= steps; },
                  60s, 20ms)) {
    throw std::runtime_error("agent: readings did not arrive:\n" + agent.log());
  }
  const double wall = seconds_between(start, Clock::now());
  result.cpu_percent = 100.0 * (proc_cpu_seconds(agent.pid()) - cpu_before) / wall;
  result.rss_kb = proc_status_kb(agent.pid(), "VmRSS");
  result.peak_rss_kb = proc_status_kb(agent.pid(), "VmHWM");
  publisher.disconnect()->wait();
  agent.stop();
  return result;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) parts.push_back(part);
  return parts;
}

std::string rate_text(double rate) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f", rate);
  return text;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", seconds);
  return text;
}

std::string ratio_text(double a, double b) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f×", a / b);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  long messages = 50000;
  long devices = 1000;
  std::string modes = "drain,live";
  std::string durabilities = "normal,power_loss";
  long stored = 1000000;
  double steady_rate = 100;
  double steady_seconds = 60;
  std::string replay;
  bool with_naive = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const std::string value = argv[i + 1];
    if (key == "--messages") {
      messages = std::stol(value);
    } else if (key == "--devices") {
      devices = std::stol(value);
    } else if (key == "--modes") {
      modes = value;
    } else if (key == "--durability") {
      durabilities = value;
    } else if (key == "--stored") {
      stored = std::stol(value);
    } else if (key == "--steady-rate") {
      steady_rate = std::stod(value);
    } else if (key == "--steady-seconds") {
      steady_seconds = std::stod(value);
    } else if (key == "--ingest-workers") {
      g_ingest_workers = std::stoi(value);
    } else if (key == "--acknowledge") {
      g_acknowledge = value;
    } else if (key == "--naive") {
      with_naive = value != "off";
    } else if (key == "--replay") {
      replay = value;
      replaying = true;
    } else {
      std::cerr << "unknown option " << key << "\n";
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::cerr << "usage: bench_mqtt [--messages N] [--devices D] [--modes drain,live,resources] "
                 "[--durability normal,power_loss] [--stored N] [--steady-rate R] "
                 "[--steady-seconds S] [--replay FILE] [--naive off] [--ingest-workers N]\n"
                 "       [--acknowledge each|batched]\n";
    return 2;
  }
  try {
    if (modes == "resources") {
      const Resources r = run_resources(stored, devices, steady_rate, steady_seconds);
      std::cout << "\n| measurements stored | readings/s | seconds | agent CPU (% of one core) | "
                   "RSS MiB | peak RSS MiB |\n|--:|--:|--:|--:|--:|--:|\n| "
                << r.stored << " | " << steady_rate << " | " << steady_seconds << " | "
                << std::fixed << std::setprecision(2) << r.cpu_percent << " | "
                << static_cast<double>(r.rss_kb) / 1024 << " | "
                << static_cast<double>(r.peak_rss_kb) / 1024 << " |\n";
      return 0;
    }
    const Workload workload =
        replay.empty() ? make_workload(messages, devices) : load_workload(replay);
    messages = static_cast<long>(workload.packets.size());
    double standalone = 0;
    {
      BenchBroker broker;  // no subscriber: the publisher alone
      standalone = raw_publish(broker.port(), workload);
    }
    std::cerr << "publisher standalone: " << rate_text(standalone) << " msgs/s\n";

    std::ostringstream table;
    table << "| run | durability | do-nothing msgs/s | agent msgs/s | naive msgs/s | agent / "
             "do-nothing | agent / naive | publisher msgs/s (in run) | agent: most pending "
             "normalization | agent: s to normalize the rest |\n"
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& mode : split(modes)) {
      const bool drain = mode == "drain";
      const Rate null_rate = run_null(workload, drain);  // durability does not apply
      std::cerr << mode << " do-nothing: " << rate_text(null_rate.subscriber) << "\n";
      for (const auto& durability : split(durabilities)) {
        const Rate agent = run_agent(workload, drain, durability);
        std::cerr << mode << " " << durability << " agent: " << rate_text(agent.subscriber) << "\n";
        // The naive baseline reads the seed's JSON only: not run on a replayed stream.
        const Rate naive =
            replaying || !with_naive ? Rate{} : run_naive(workload, drain, durability);
        std::cerr << mode << " " << durability << " naive: " << rate_text(naive.subscriber) << "\n";
        table << "| " << (drain ? "backlog drain" : "live") << " | " << durability << " | "
              << rate_text(null_rate.subscriber) << " | " << rate_text(agent.subscriber) << " | "
              << (naive.subscriber > 0 ? rate_text(naive.subscriber) : "–") << " | "
              << ratio_text(agent.subscriber, null_rate.subscriber) << " | "
              << (naive.subscriber > 0 ? ratio_text(agent.subscriber, naive.subscriber) : "–")
              << " | "
              << (drain ? std::string("– (queued before)")
                        : rate_text(null_rate.publisher) + " / " + rate_text(agent.publisher) +
                              " / " + rate_text(naive.publisher))
              << " | " << (drain ? std::string("–") : std::to_string(agent.max_lag)) << " | "
              << (drain ? std::string("–") : seconds_text(agent.catch_up_seconds)) << " |\n";
      }
    }
    std::cout << "\n"
              << messages << " QoS 1 messages, "
              << (replaying ? "replayed from " + replay : std::to_string(devices) + " devices")
              << "; publisher standalone (raw socket, no subscriber): " << rate_text(standalone)
              << " msgs/s\n\n"
              << table.str();
  } catch (const std::exception& error) {
    std::cerr << "bench_mqtt: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
