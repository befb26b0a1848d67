// A real buffer in a temporary directory with a config in the seed's terms,
// plus helpers to feed it seed-format readings.
#pragma once

#include <catch2/catch.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/model/sync.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/temp_dir.hpp"

namespace meter::test {

inline const char* kSeedConfig = R"(
gateway_id: test-gw
buffer:
  durability: normal
metrics:
  energy:
    kind: counter
    unit: kWh
    jump_threshold: 10000
  power:
    kind: gauge
    unit: kW
mappings:
  - topic: "meters/#"
    format: seed_json
    timestamp:
      format: rfc3339
      zone: Europe/Berlin
)";

inline Config make_config(const std::string& yaml = kSeedConfig) {
  auto config = parse_config(yaml, "<test>");
  if (!config) FAIL("test config does not parse: " << config.error().message);
  return *config;
}

inline std::string seed_payload(const std::string& device, const std::optional<std::string>& ts,
                                const std::string& metric, const std::string& value,
                                const std::string& unit) {
  std::string json = "{\"device_id\":\"" + device + "\"";
  if (ts) json += ",\"timestamp\":\"" + *ts + "\"";
  json += ",\"metric_type\":\"" + metric + "\",\"value\":" + value + ",\"unit\":\"" + unit + "\"}";
  return json;
}

// A response that answers every record with `outcome`.
inline IngestResponse answer_all(const UplinkBatch& batch, RecordOutcome outcome) {
  IngestResponse response;
  response.raw_events.assign(batch.raw_events.size(), RecordResult{outcome, "", ""});
  response.measurements.assign(batch.measurements.size(), RecordResult{outcome, "", ""});
  return response;
}

class BufferFixture {
 public:
  explicit BufferFixture(const std::string& yaml = kSeedConfig) : config_(make_config(yaml)) {
    config_.buffer.path = dir_.file("buffer.db");
    reopen();
  }

  void reopen() {
    buffer_.reset();
    auto opened = Buffer::open(config_.buffer);
    if (!opened) FAIL("cannot open buffer: " << opened.error().message);
    buffer_ = std::move(*opened);
  }

  Buffer& buffer() { return *buffer_; }
  Config& config() { return config_; }
  const TempDir& dir() const { return dir_; }

  std::int64_t append(
      const std::string& payload,
      std::int64_t received_ms = 1735689600000,  // 2025-01-01: after every test reading
      bool dup = false, bool retained = false, const std::string& topic = "meters/m1") {
    RawMessage message;
    message.topic = topic;
    message.payload = payload;
    message.received_ms = received_ms;
    message.dup = dup;
    message.retained = retained;
    auto seq = buffer_->append_raw_batch({message});
    if (!seq) FAIL("append failed: " << seq.error().message);
    return *seq;
  }

  // The central confirms the current revision of every unsynced measurement
  // `which` picks, through the uplink's own path (select_unsynced, then
  // apply_ingest_response); nothing else. How many it confirmed.
  std::int64_t confirm_measurements(const std::function<bool(const Measurement&)>& which) {
    auto batch = buffer_->select_unsynced(SyncLimits{1'000'000, std::size_t{1} << 30});
    REQUIRE(batch);
    IngestResponse response = answer_all(*batch, RecordOutcome::missing);
    for (std::size_t i = 0; i < batch->measurements.size(); ++i) {
      if (which(batch->measurements[i].measurement))
        response.measurements[i].outcome = RecordOutcome::confirmed;
    }
    auto applied = buffer_->apply_ingest_response(*batch, response, 0);
    REQUIRE(applied);
    return applied->measurements_confirmed;
  }

  NormalizeStats normalize() {
    // As the daemon and the offline commands do before normalizing.
    auto roles = buffer_->set_local_only_metrics(config_);
    if (!roles) FAIL("cannot record the metrics with a role: " << roles.error().message);
    auto stats = buffer_->normalize_all(config_);
    if (!stats) FAIL("normalize failed: " << stats.error().message);
    return *stats;
  }

  std::vector<Measurement> measurements() {
    std::vector<Measurement> all;
    auto listed = buffer_->for_each_measurement([&](const Measurement& m) { all.push_back(m); });
    if (!listed) FAIL("export failed: " << listed.error().message);
    return all;
  }

  // The measurement of `device`/`metric` at `timestamp` (canonical text).
  Measurement at(const std::string& device, const std::string& metric,
                 const std::string& timestamp) {
    std::vector<Measurement> found;
    for (auto& m : measurements()) {
      if (m.device_id == device && m.metric_type == metric &&
          format_timestamp(m.timestamp_ms) == timestamp) {
        found.push_back(m);
      }
    }
    if (found.size() != 1) {
      FAIL("expected one measurement of " << device << "/" << metric << " at " << timestamp
                                          << ", found " << found.size());
    }
    return found.front();
  }

  std::vector<RawOutcome> outcomes() {
    std::vector<RawOutcome> all;
    auto listed = buffer_->for_each_raw_outcome([&](const RawOutcome& o) { all.push_back(o); });
    if (!listed) FAIL("outcomes failed: " << listed.error().message);
    return all;
  }

 private:
  TempDir dir_;
  Config config_;
  std::unique_ptr<Buffer> buffer_;
};

}  // namespace meter::test
