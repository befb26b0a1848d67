// The YAML reader's private parts, shared by config_reader.cpp (the document,
// the buffer, metrics and normalize sections), mapping_reader.cpp (mappings,
// their readings and presets) and connections_reader.cpp (mqtt, http, uplink,
// log): one Parser walks
// a document once, in document order, and stops at the first problem with
// file:line:column. Not for use outside common/config/.
#pragma once

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/config/config.hpp"

namespace meter::config_parser {

namespace fs = std::filesystem;

// A config file is a few kilobytes; the cap only stops an accidental
// `--config /dev/zero` from eating memory.
inline constexpr std::size_t kMaxConfigBytes = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxNameBytes = 64;
inline constexpr std::size_t kMaxTopicFilterBytes = 65535;  // MQTT 3.1.1 1.5.3: 16-bit length
inline constexpr std::size_t kMinBatchSize = 1;
inline constexpr std::size_t kMaxBatchSize = 100000;

// --- Durations and integers ------------------------------------------------

struct DurationUnit {
  std::string_view suffix;
  std::int64_t ms;
};

// Longer suffixes first so "5ms" is not read as 5 minutes and an "s".
inline constexpr DurationUnit kDurationUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}, {"d", 24 * 60 * 60 * 1000}};

inline std::optional<std::uint64_t> parse_unsigned(std::string_view digits) {
  if (digits.empty()) return std::nullopt;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// --- The parser ------------------------------------------------------------

// A node together with where to point at it and how to name it in messages.
struct Value {
  YAML::Node node;
  // The node's own position, except for an empty value: yaml-cpp places that
  // at the next token (often the next line), so its key is blamed instead.
  YAML::Mark mark;
  std::string path;
};

struct Entry {
  std::string key;
  YAML::Mark key_mark;
  Value value;
};

using KeyList = std::initializer_list<std::string_view>;

// A metric_type constant of a mapping, checked against `metrics` at the end.
struct MetricReference {
  std::string metric;
  YAML::Mark mark;
  std::string path;
  std::string preset;
};

// --- Topic filters ---------------------------------------------------------

// Why `filter` is not a valid MQTT 3.1.1 topic filter, or nothing if it is.
std::optional<std::string> topic_filter_problem(std::string_view filter);

// --- Messages --------------------------------------------------------------

// User text goes into log lines: keep it on one line and short.
std::string quote(std::string_view text);

std::string describe(const YAML::Node& node);

std::string join(std::initializer_list<std::string_view> words);

std::string child_path(const std::string& parent, std::string_view key);

std::string display_path(const std::string& path);

bool is_name_char(char c, bool allow_upper_and_punct);

bool is_name(std::string_view text, bool allow_upper_and_punct);

const Entry* find_entry(const std::vector<Entry>& entries, std::string_view key);

Result<std::string> read_file(const std::string& path);

// Walks the document once, in document order, and stops at the first
// problem: one precise message is more useful than a cascade of follow-ups.
class Parser {
 public:
  Parser(std::string source, fs::path base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  Error error() const { return error_.value_or(Error{source_ + ": unknown error"}); }

  bool parse_document(const YAML::Node& root, Config& config);

  bool fail(const YAML::Mark& mark, const std::string& message);

 private:
  bool fail(const Value& value, const std::string& message);

  bool fail_expected(const Value& value, std::string_view expected);

  // Collects the entries of a map, rejecting non-string keys, duplicates
  // (yaml-cpp 0.7 would silently keep one) and, when `allowed` is given,
  // unknown keys.
  bool read_map(const Value& value, std::optional<KeyList> allowed, std::vector<Entry>& out);

  bool require(const Value& map, const std::vector<Entry>& entries, KeyList required);

  bool scalar(const Value& value, std::string_view expected, std::string& out);

  template <class E>
  bool one_of(const Value& value, std::initializer_list<std::pair<std::string_view, E>> choices,
              E& out) {
    std::string expected = "one of ";
    bool first = true;
    for (const auto& choice : choices) {
      if (!first) expected += ", ";
      expected += choice.first;
      first = false;
    }
    if (!value.node.IsScalar()) return fail_expected(value, expected);
    for (const auto& choice : choices) {
      if (value.node.Scalar() == choice.first) {
        out = choice.second;
        return true;
      }
    }
    return fail_expected(value, expected);
  }

  bool parse_gateway_id(const Value& value, std::string& out);

  bool parse_buffer(const Value& value, BufferConfig& out);

  bool parse_buffer_path(const Value& value, std::string& out);

  bool parse_metrics(const Value& value, std::map<std::string, MetricConfig, std::less<>>& out);

  bool parse_metric(const Value& value, MetricConfig& out);

  bool parse_unit(const Value& value, std::string& out);

  // A decimal read from its text (never through double: compared exactly),
  // greater than `above` or, when `or_equal`, at least `above`.
  bool parse_decimal_above(const Value& value, const Decimal& above, bool or_equal,
                           std::optional<Decimal>& out);

  // The combinations parse_metric checks after the walk (keys come in any order).
  bool validate_metric(const std::vector<Entry>& entries, const MetricConfig& metric);

  bool parse_mappings(const Value& value, std::vector<MappingConfig>& out);

  // `allow_preset` is false inside a preset file: presets do not nest.
  bool parse_mappings_list(const Value& value, std::vector<MappingConfig>& out, bool allow_preset);
  // One list item: one mapping, or as many as its preset has.
  bool parse_mapping(const Value& value, std::vector<MappingConfig>& out, YAML::Mark& topic_mark,
                     bool allow_preset = true);
  bool apply_mapping_keys(const std::vector<Entry>& entries, MappingConfig& out,
                          YAML::Mark& topic_mark);

  // The combinations the decoder relies on; checked after a preset and its
  // overrides are merged, so the error points at the mapping as a whole.
  bool validate_mapping(const Value& value, const MappingConfig& mapping);

  bool validate_per_metric_units(const Value& value, const MappingConfig& mapping,
                                 const std::string& where);

  bool parse_readings(const Value& value, std::vector<ReadingMapping>& out);

  bool parse_reading(const Value& value, ReadingMapping& out);

  bool parse_value_source(const Value& value, ReadingMapping& out);
  bool parse_each(const Value& value, ReadingMapping& out);
  bool parse_scale(const Value& value, ReadingMapping& out);
  bool parse_reading_timestamp(const Value& value, ReadingMapping& out);
  bool parse_topic_conditions(const Value& value, std::vector<TopicCondition>& out);
  bool parse_pattern(const Value& value, std::string& out);
  // Whether a text source reads the payload (path, key, key_match), or an `each` member.
  static bool uses_payload(const TextSource& source);
  static bool uses_key(const TextSource& source);

  bool parse_json_pointer(const Value& value, JsonPointer& out);

  enum class TextSourceUse { device_id, metric_type, unit };

  // A scalar is a constant; a map names one other source. Which sources a
  // field may use depends on the field (a metric_type from the payload would
  // let any device invent metrics; a unit from the topic is not a thing).
  bool parse_text_source(const Value& value, TextSourceUse use, TextSource& out);

  bool parse_constant(const Value& value, TextSourceUse use, std::string& out);
  bool parse_parts(const Value& value, TextSource& out);
  bool parse_level_map(const Value& value, TextSourceUse use,
                       std::map<std::string, std::string, std::less<>>& out);

  bool parse_topic_level(const Value& value, bool allow_negative, int& out);

  bool parse_per_metric_units(const Value& value,
                              std::map<std::string, std::string, std::less<>>& out);

  // --- Presets -------------------------------------------------------------

  std::vector<fs::path> preset_dirs() const;

  std::string available_presets() const;

  std::string searched_dirs() const;

  bool load_preset(const Value& value, std::vector<MappingConfig>& out);

 public:
  // A preset file: {description: TEXT, mapping: {topic, format, ...}} or
  // {description: TEXT, mappings: [{topic, ...}, ...]}.
  bool parse_preset_document(const std::string& text, std::vector<MappingConfig>& out);

 private:
  // Metric names a mapping produces must be declared; checked at the end
  // because `metrics` may come after `mappings` in the file.
  bool check_metric_references(const Config& config);

  bool parse_topic_filter(const Value& value, std::string& out);

  bool parse_timestamp_config(const Value& value, TimestampConfig& out);

  // An IANA zone name, resolved (a mapping's timestamp zone, a metric's period_zone).
  bool parse_zone(const Value& value, std::string& name_out, const date::time_zone*& zone_out);

  bool parse_normalize(const Value& value, NormalizeConfig& out);

  bool parse_duration(const Value& value, std::int64_t& out_ms);

  bool parse_batch_size(const Value& value, std::size_t& out);

  bool parse_mqtt(const Value& value, MqttConfig& out);

  bool parse_tls(const Value& value, MqttTlsConfig& out);

  bool parse_reconnect(const Value& value, MqttConfig& out);

  bool parse_http(const Value& value, HttpConfig& out);

  bool parse_uplink(const Value& value, UplinkConfig& out);

  // https:// anywhere; plain http:// only to this host (a TLS-terminating proxy
  // beside the agent, or tests): the token is a bearer secret.
  bool parse_uplink_url(const Value& value, std::string& out);

  bool parse_log(const Value& value, LogConfig& out);

  bool parse_log_level(const Value& value, LogLevel& out);

  bool parse_path(const Value& value, std::string& out);

  bool parse_topic_name(const Value& value, std::string& out);

  bool non_empty_text(const Value& value, std::string_view expected, std::string& out);

  bool boolean(const Value& value, bool& out);

  bool whole_number(const Value& value, std::uint64_t min, std::uint64_t max, int& out);

  std::string source_;
  fs::path base_dir_;
  std::optional<Error> error_;
  std::string presets_dir_;  // as configured; empty: the default search
  std::vector<MetricReference> metric_references_;
};

}  // namespace meter::config_parser
