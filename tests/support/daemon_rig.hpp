// The daemon in this process, on a real broker, with its buffer in a temp
// dir: what tests/agent/test_daemon_*.cpp drive through its test seams
// (Daemon::set_disk_budget, set_max_page_count, DaemonOptions).
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/daemon.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace meter::test {

// Reading `i` of meter d1: energy = i kWh, one second apart from 2026-01-01
// (without a timestamp when `with_timestamp` is false: the receive time).
inline std::string d1_reading(long i, bool with_timestamp = true) {
  return "{\"device_id\":\"d1\"" +
         (with_timestamp ? ",\"timestamp\":\"" + format_timestamp(1767225600000LL + i * 1000) + "\""
                         : std::string()) +
         ",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) + ",\"unit\":\"kWh\"}";
}

class DaemonRig {
 public:
  // `mqtt_extra`: more lines under `mqtt:` (each "  key: value\n").
  DaemonRig(const std::string& gateway_id, int broker_port, const std::string& mqtt_extra = "",
            agent::DaemonOptions options = {})
      : config_(make_config(gateway_id, broker_port, mqtt_extra)),
        logger_(log_, false),
        daemon_(config_, options, logger_) {
    runner_ = std::thread([this] { exit_code_ = daemon_.run(); });
  }
  ~DaemonRig() { stop(); }
  DaemonRig(const DaemonRig&) = delete;
  DaemonRig& operator=(const DaemonRig&) = delete;

  agent::Daemon& daemon() { return daemon_; }
  const agent::Metrics& metrics() const { return daemon_.metrics(); }
  std::string log() const { return log_.str(); }
  std::string buffer_path() const { return dir_.file("buffer.db"); }

  // Stops the daemon; its exit code.
  int stop() {
    if (runner_.joinable()) {
      daemon_.request_stop();
      runner_.join();
    }
    return exit_code_;
  }

  std::unique_ptr<Buffer> open_buffer() const {
    BufferConfig config;
    config.path = buffer_path();
    config.durability = Durability::normal;
    auto opened = Buffer::open(config);
    REQUIRE(opened);
    return std::move(*opened);
  }

  // The buffer database's size in pages (to compute a max_page_count from).
  std::int64_t page_count() const {
    sqlite::Database db(buffer_path());
    auto statement = db.prepare("PRAGMA page_count");
    REQUIRE(statement.step());
    return statement.column_int(0);
  }

  // How many stored measurements carry each value.
  std::map<std::string, int> values_stored() const {
    std::map<std::string, int> seen;
    REQUIRE(open_buffer()->for_each_measurement([&](const Measurement& m) { ++seen[m.value]; }));
    return seen;
  }

  // Publishes at QoS 1 from mosquitto_pub processes, one after the other
  // (each exits 0 after its PUBACK): Paho runs every client of a process on
  // one receive thread, so an in-process publisher would wait behind the
  // daemon's callback while it blocks.
  void publish_from_other_processes(const std::string& topic,
                                    const std::vector<std::string>& payloads) const {
    std::string script = "set -e\n";
    for (const auto& payload : payloads) {
      script += "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_port_) + " -q 1 -t " +
                topic + " -m '" + payload + "'\n";
    }
    write_text_file(dir_.file("publish.sh"), script);
    REQUIRE(std::system(("sh " + dir_.file("publish.sh")).c_str()) == 0);
  }

 private:
  Config make_config(const std::string& gateway_id, int broker_port,
                     const std::string& mqtt_extra) {
    broker_port_ = broker_port;
    auto parsed =
        parse_config("gateway_id: " + gateway_id + "\nbuffer:\n  path: " + dir_.file("buffer.db") +
                         "\n  durability: normal\n"
                         "metrics:\n  energy: {kind: counter, unit: kWh}\n"
                         "mappings:\n  - topic: \"meters/#\"\n"
                         "mqtt:\n  host: 127.0.0.1\n  port: " +
                         std::to_string(broker_port) + "\n" + mqtt_extra,
                     "<test>");
    if (!parsed) FAIL("test config does not parse: " << parsed.error().message);
    return *parsed;
  }

  TempDir dir_;
  int broker_port_ = 0;
  Config config_;
  std::ostringstream log_;
  agent::Logger logger_;
  agent::Daemon daemon_;
  std::thread runner_;
  int exit_code_ = -1;
};

}  // namespace meter::test
