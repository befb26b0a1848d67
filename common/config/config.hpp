// The agent's configuration: parsed once from YAML into an immutable,
// validated struct. Unknown keys, wrong types and impossible values are
// errors that name file:line:column and the key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/decode/json_pointer.hpp"
#include "common/normalize/decimal.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/util/result.hpp"

namespace meter {

enum class MetricKind { counter, gauge };

// Which way a counter register moves (`direction`).
enum class Direction {
  imported,  // `import`: only rises (a fall is a glitch, rollback or reset)
  exported,  // `export`: only rises, like import (energy fed into the grid)
  net,       // `net`: may fall; signed deltas; glitches by rate only
};

// When a counter register resets by design (`period`).
enum class Period {
  none,
  daily,  // resets at local midnight in `period_zone` (Tasmota Today, OpenDTU YieldDay)
};

// What a metric says about its device besides its own value (`role`).
enum class MetricRole {
  none,
  uptime_seconds,  // falls when the device restarts
  boot_count,      // rises when the device restarts
};

struct MetricConfig {
  std::string name;  // e.g. "energy"; never contains '|'
  MetricKind kind = MetricKind::gauge;
  std::string unit;  // canonical unit, e.g. "kWh"
  // counter only: a delta above this (canonical unit) is flagged suspicious_jump.
  std::optional<Decimal> jump_threshold;
  // The series rules of docs/QUALITY.md (counter only unless noted).
  std::size_t glitch_window = 3;        // readings after an off-course one to wait for a return
  std::optional<Decimal> max_rate;      // most the register advances per hour (canonical unit)
  std::optional<Decimal> rollback_max;  // largest drop taken for a restored older total
  Decimal gap_factor = Decimal::from_int(10);  // gap: interval > factor x median interval
  Direction direction = Direction::imported;
  Period period = Period::none;
  std::string period_zone_name;                  // period daily: IANA zone
  const date::time_zone* period_zone = nullptr;  // resolved from period_zone_name
  MetricRole role = MetricRole::none;            // counter or gauge

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const MetricConfig&, const MetricConfig&) = default;
};

enum class Durability {
  power_loss,  // synchronous=FULL: a committed append survives power loss (default)
  normal,  // synchronous=NORMAL: survives a killed process; may lose the last commits on power loss
};

struct BufferConfig {
  std::string path = "/var/lib/meter-agent/buffer.db";
  Durability durability = Durability::power_loss;
  // The disk budget (buffer.max_size_mib): past it the daemon stops
  // acknowledging MQTT messages instead of deleting unsynced data. 0: none
  // (the disk's own size is the limit).
  std::int64_t max_size_bytes = 0;

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const BufferConfig&, const BufferConfig&) = default;
};

// How a mapping reads a payload (config/presets/README.md has the details).
enum class PayloadFormat {
  seed_json,  // the seed's own JSON: device_id, timestamp, metric_type, value, unit members
  json,       // any JSON document; the mapping's JSON pointers say where each field is
  plain,      // the payload is one number (e.g. "1234.5"); everything else from the topic
};

struct TimestampConfig {
  TimestampFormat format = TimestampFormat::rfc3339;
  std::string zone_name;                  // empty: no zone (offset required)
  const date::time_zone* zone = nullptr;  // resolved from zone_name
  // format json: where the timestamp is in the payload; none: the receive
  // time is used (flag gateway_timestamp). Unused by seed_json and plain.
  std::optional<JsonPointer> path;

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const TimestampConfig&, const TimestampConfig&) = default;
};

// Whether `text` matches `pattern`, in which one '*' stands for any run of
// characters (none included) and every other character for itself; on a match
// `star` (when given) receives what the '*' stood for ("" without a '*').
bool pattern_matches(std::string_view pattern, std::string_view text,
                     std::string_view* star = nullptr);

// Where a text field of a reading (device_id, metric_type, unit) comes from.
struct TextSource {
  enum class Kind {
    constant,             // `constant`
    json_path,            // the value at `path` (a string, or a number's text)
    topic_level,          // one topic level: `topic_level` from 0, negative from the end (-1: last)
    topic_levels_from,    // the levels from `topic_level` (>= 0) on, joined by '/'
    per_metric_constant,  // units only: `per_metric[metric_type]`
    key,                  // `key`: the member key a reading's `each` matched ("switch:0")
    key_match,            // `key_match`: what the '*' of `each.keys` stood for ("0")
    parts,                // `parts`: the texts of `parts`, joined without separator
  };
  Kind kind = Kind::constant;
  std::string constant;
  JsonPointer path;
  int topic_level = 0;
  std::map<std::string, std::string, std::less<>> per_metric;
  // topic_level only: the level must match this pattern; the text is what
  // its '*' stood for (`{topic_level: -1, match: "switch:*"}` -> "0").
  std::string level_pattern;
  // topic_level only: the text is looked up here (`map: {yieldday: Wh}`);
  // a level not listed is a decode error.
  std::map<std::string, std::string, std::less<>> level_map;
  std::vector<TextSource> parts;

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const TextSource&, const TextSource&) = default;
};

// What a reading's JSON value may be when it is an array (Tasmota's
// multi-channel "Power": [12, 0]).
enum class ArrayValues {
  error,     // an array is a decode error (default: the mapping expected one number)
  channels,  // one reading per element; element i gets device_id "<device_id>/ch<i+1>"
};

// `each`: one reading per member of the object at `object` whose key matches
// `keys` (Shelly's `switch:0`, `em1:1` in a NotifyStatus); the reading's value
// path (and `key`, `key_match` text sources) then refer to that member.
struct EachMember {
  JsonPointer object;
  std::string keys;  // a pattern with at most one '*'

  friend bool operator==(const EachMember&, const EachMember&) = default;
};

// How a value is combined from several fields: `{sum: [/a, /b]}` is a + b,
// `{difference: [/a, /b]}` is a - b (exact). Any term absent: no reading.
enum class ValueCombination { single, sum, difference };

// `scale`: the value times `multiply`, divided by `divide` (exact decimal
// arithmetic). A quotient that is no finite decimal within the Decimal
// limits (watt-minutes / 60) is rounded half to even to `decimals` places
// and the reading says so (DecodedReading::rounded).
struct Scale {
  Decimal multiply = Decimal::from_int(1);
  std::uint64_t divide = 1;
  int decimals = 0;  // required with divide > 1

  friend bool operator==(const Scale&, const Scale&) = default;
};

struct ReadingMapping {
  TextSource metric_type;
  std::optional<JsonPointer> value;  // format json: where the value is; plain: none (the payload)
  TextSource unit;
  ArrayValues arrays = ArrayValues::error;
  // false: a value that is absent, null or a non-reading word ("nan") yields
  // no reading from this message (the others in it still count). true: that
  // is a decode error.
  bool required = false;
  std::optional<EachMember> each;
  ValueCombination combination = ValueCombination::single;
  std::vector<JsonPointer> terms;  // sum / difference: the fields (value is the first)
  std::optional<Scale> scale;
  // format json: this reading's own timestamp (the mapping's format and zone);
  // none: the mapping's timestamp.path, if any.
  std::optional<JsonPointer> timestamp_path;
  // This reading's own device id (one CT of a Tasmota beside its ENERGY);
  // none: the mapping's device_id.
  std::optional<TextSource> device_id;

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const ReadingMapping&, const ReadingMapping&) = default;
};

// `when: [{topic_level: N, match: PATTERN}]`: a mapping applies to a topic
// only if every listed level matches (so one filter may serve several
// mappings, e.g. a unit per topic).
struct TopicCondition {
  int topic_level = 0;  // from 0, negative from the end
  std::string pattern;  // at most one '*'

  friend bool operator==(const TopicCondition&, const TopicCondition&) = default;
};

struct MappingConfig {
  std::string topic;  // MQTT topic filter, '+' and '#' wildcards
  std::vector<TopicCondition> when;
  // `ignore: REASON`: every message this mapping takes is a non-reading
  // (status topics, link quality, text sensors): ignored with this reason.
  std::optional<std::string> ignore;
  PayloadFormat format = PayloadFormat::seed_json;
  TimestampConfig timestamp;
  std::string preset;  // the preset this mapping was made from; empty: none
  // format json and plain (seed_json carries its own in every reading):
  TextSource device_id;
  std::vector<ReadingMapping> readings;  // at least one

  // Names the mapping in /metrics: its filter, `when` conditions and preset,
  // e.g. "+/status/+ when -1=em1:* (shelly_gen2)".
  std::string label() const;

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const MappingConfig&, const MappingConfig&) = default;
};

// Whether the gateway clock may be trusted (clock_unsynced, agent/ops/clock_sync.hpp).
enum class ClockTrust {
  automatic,     // `auto`: ask the system (systemd-timesyncd's flag file, else the kernel)
  synchronized,  // the operator vouches for the clock (nothing to probe): never flagged
};

struct NormalizeConfig {
  ClockTrust clock = ClockTrust::automatic;
  std::int64_t future_tolerance_ms = 5 * 60 * 1000;  // readings further ahead get future_timestamp
  std::size_t batch_size =
      20000;  // raw messages per normalization transaction (docs/BENCHMARKS.md)

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const NormalizeConfig&, const NormalizeConfig&) = default;
};

// The MQTT connection (the daemon, agent/).
struct MqttTlsConfig {
  bool enabled = false;
  std::string ca_file;    // empty: the system's CA certificates
  std::string cert_file;  // client certificate (mTLS), with key_file
  std::string key_file;
  bool verify = true;  // false turns off server certificate verification: never in production

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const MqttTlsConfig&, const MqttTlsConfig&) = default;
};

// Ingest worker processes at most (mqtt.ingest_workers): each is a broker
// connection and a process of a few MiB.
inline constexpr int kMaxIngestWorkers = 32;

struct MqttConfig {
  std::string host = "localhost";
  int port = 0;              // 0: 1883, or 8883 with TLS
  std::string client_id;     // empty: "meter-agent-<gateway_id>"; fixed so the session persists
  int protocol_version = 4;  // 4 = MQTT 3.1.1, 5 = MQTT 5
  std::int64_t keepalive_ms = 30 * 1000;
  std::int64_t session_expiry_ms =
      7LL * 24 * 3600 * 1000;  // MQTT 5: how long the broker keeps the session
  std::string username;
  std::string password_file;  // the password is read from this file, or
  std::string password_env;   // from this environment variable; never logged
  MqttTlsConfig tls;
  std::int64_t reconnect_min_ms = 1000;
  std::int64_t reconnect_max_ms = 60 * 1000;
  std::string status_topic_prefix = "meter-agent";  // retained status: <prefix>/<gateway_id>/status
  // 0: the daemon's own connection subscribes and acknowledges (one sync per
  // message under power_loss). N: N ingest worker processes on a shared
  // subscription whose acknowledgements share syncs (group commit).
  int ingest_workers = 0;
  // mqtt.acknowledge: `batched` (true, the default): the agent's own
  // connection (agent/source/batched_source.hpp) reads many messages, commits
  // them with one sync, then sends their acknowledgements in order. `each`
  // (false; the default when ingest_workers is set): Paho's connection
  // acknowledges each message as its commit returns.
  bool batched_acknowledge = true;

  int effective_port() const { return port != 0 ? port : (tls.enabled ? 8883 : 1883); }

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const MqttConfig&, const MqttConfig&) = default;
};

// The local operations endpoint (/healthz, /metrics); off unless listen is set.
struct HttpConfig {
  std::string listen;  // "127.0.0.1:9108"; loopback addresses only; empty: off

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const HttpConfig&, const HttpConfig&) = default;
};

// The upload to the central service (agent/uplink/uplink.cpp, docs/PROTOCOL.md). Off
// unless `url` is set.
struct UplinkConfig {
  std::string url;         // base URL, e.g. https://central.example.com; /api/v1/ingest is appended
  std::string token_file;  // the gateway's bearer token is read from this file (mode 0600), or
  std::string token_env;   // from this environment variable; never logged
  std::string ca_file;     // empty: the system's CA certificates
  std::string cert_file;   // client certificate (mTLS), with key_file
  std::string key_file;
  bool verify = true;  // false turns off server certificate verification: never in production
  std::int64_t timeout_ms = 30 * 1000;  // a whole request, connect included
  std::int64_t connect_timeout_ms = 10 * 1000;
  std::size_t batch_max_records = 1000;           // per array (raw events, measurements)
  std::size_t batch_max_bytes = 4 * 1024 * 1024;  // uncompressed JSON per request
  std::size_t max_in_flight = 2;     // requests at once while a backlog drains (1: one at a time)
  int gzip_level = 1;                // 0: no compression; 1 (fastest) .. 9 (docs/BENCHMARKS.md)
  std::int64_t retry_min_ms = 1000;  // backoff after a failed request, doubling, with jitter
  std::int64_t retry_max_ms = 5 * 60 * 1000;
  std::int64_t auth_retry_ms = 10 * 60 * 1000;  // after 401/403 (a reload retries at once)
  std::int64_t interval_ms = 1000;              // how often to look for new records when idle
  std::int64_t retention_ms = 0;  // prune synced records older than this; 0: keep them
  std::int64_t prune_interval_ms = 60 * 60 * 1000;

  bool enabled() const { return !url.empty(); }
  std::string ingest_url() const;

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const UplinkConfig&, const UplinkConfig&) = default;
};

enum class LogLevel { error, warning, info, debug };

struct LogConfig {
  LogLevel level = LogLevel::info;
  std::map<std::string, LogLevel, std::less<>> components;  // e.g. mqtt: debug

  // Compared whole, so a reload sees every changed field (a new field included).
  friend bool operator==(const LogConfig&, const LogConfig&) = default;
};

struct Config {
  std::string source;      // file the config came from ("<string>" for text)
  std::string gateway_id;  // names this gateway to the central side
  BufferConfig buffer;
  std::map<std::string, MetricConfig, std::less<>> metrics;
  std::vector<MappingConfig> mappings;  // first match wins, presets already expanded
  // Where `- preset: NAME` mappings are looked up: `presets_dir` when given;
  // otherwise presets/ beside the config file, then kInstalledPresetsDir.
  std::string presets_dir;
  NormalizeConfig normalize;
  MqttConfig mqtt;
  HttpConfig http;
  UplinkConfig uplink;
  LogConfig log;

  const MetricConfig* metric(std::string_view name) const;
  // The first mapping whose filter matches `topic`, or nullptr.
  const MappingConfig* mapping_for(std::string_view topic) const;
};

// Topics of the agent's own raw records (operator events); a mapping may not
// subscribe to them. MQTT never delivers `$` topics to `#` or `+` filters.
inline constexpr std::string_view kReservedTopicPrefix = "$meter-agent";

// Where packages install the shipped presets (config/presets/ in the source tree).
inline constexpr std::string_view kInstalledPresetsDir = "/usr/share/meter-agent/presets";

// Reads and validates a YAML file. Error messages start with "FILE:LINE:COLUMN: ".
Result<Config> load_config(const std::string& path);
Result<Config> parse_config(std::string_view yaml_text, const std::string& source_name);

// MQTT topic filter matching ('+' one level, '#' the rest, per MQTT 3.1.1 4.7).
bool topic_matches(std::string_view filter, std::string_view topic);

// Whether `mapping` takes `topic`: its filter matches and so do its `when` conditions.
bool mapping_applies(const MappingConfig& mapping, std::string_view topic);

}  // namespace meter
