// What the ingest tests (ingest workers, the batched connection) publish and
// check: numbered readings, and how many times each number reached the raw log
// (first deliveries) and the measurements of a stopped agent's buffer.
#pragma once

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <string>

#include "common/normalize/timestamp.hpp"
#include "support/agent_process.hpp"
#include "support/mqtt_client.hpp"

namespace meter::test {

// Reading `i`: meter m<i % 10>, energy i kWh, its own second.
inline std::string reading(long i) {
  return "{\"device_id\":\"m" + std::to_string(i % 10) + "\",\"timestamp\":\"" +
         format_timestamp(1767225600000LL + i * 1000) +
         "\",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) + ",\"unit\":\"kWh\"}";
}

inline void publish_range(int port, long from, long to) {
  TestPublisher publisher(port, "ingest-publisher", 100);
  for (long i = from; i < to; ++i)
    publisher.publish("meters/m" + std::to_string(i % 10), reading(i));
  publisher.flush();
}

// The agent's configuration with `mqtt_extra` and durability power_loss.
inline void configure_power_loss(AgentProcess& agent, const std::string& mqtt_extra) {
  agent.write_config(mqtt_extra, seed_mappings());
  std::string config = agent.config_text();
  const std::string normal = "  durability: normal\n";
  config.replace(config.find(normal), normal.size(), "  durability: power_loss\n");
  write_text_file(agent.config_path(), config);
}

// value -> how many raw messages (not DUP) and measurements carry it.
struct Stored {
  std::map<std::int64_t, int> raw;  // first deliveries
  std::map<std::int64_t, int> measurements;
};

inline Stored stored(const AgentProcess& agent) {
  Stored result;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(agent.buffer_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
          SQLITE_OK);
  auto each = [&](const char* sql, std::map<std::int64_t, int>& into) {
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) == SQLITE_OK);
    while (sqlite3_step(statement) == SQLITE_ROW) ++into[sqlite3_column_int64(statement, 0)];
    sqlite3_finalize(statement);
  };
  each("SELECT CAST(json_extract(payload, '$.value') AS INTEGER) FROM raw_messages WHERE dup = 0",
       result.raw);
  each("SELECT CAST(value AS INTEGER) FROM measurements", result.measurements);
  sqlite3_close(db);
  return result;
}

inline void check_each_once(const std::map<std::int64_t, int>& seen, long count, const char* what) {
  INFO(what);
  CHECK(seen.size() == static_cast<std::size_t>(count));
  for (long i = 0; i < count; ++i) {
    INFO("value " << i);
    const auto found = seen.find(i);
    CHECK((found != seen.end() && found->second == 1));
    if (found == seen.end() || found->second != 1) break;  // one line, not thousands
  }
}

}  // namespace meter::test
