// The configuration's YAML reader: the document, the gateway id, the buffer
// and normalize sections, the helpers every part uses, and the public entry
// points of config.hpp. The metrics are read in metric_reader.cpp, the
// mappings in mapping_reader.cpp, the mqtt, http, uplink and log sections in
// connections_reader.cpp; the Parser class they share is declared in
// parser.hpp.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <utility>

#include "common/config/config.hpp"
#include "common/config/parser.hpp"
#include "common/util/quote.hpp"
#include "common/util/utf8.hpp"

namespace meter {
namespace config_parser {

std::optional<std::string> topic_filter_problem(std::string_view filter) {
  if (filter.empty()) return "must not be empty";
  if (filter.size() > kMaxTopicFilterBytes) return "longer than 65535 bytes";
  if (filter.find('\0') != std::string_view::npos) return "must not contain a NUL character";
  if (!is_valid_utf8(filter)) return "is not valid UTF-8";
  std::size_t start = 0;
  while (true) {
    const std::size_t end = filter.find('/', start);
    const bool last = end == std::string_view::npos;
    const std::string_view level =
        filter.substr(start, last ? std::string_view::npos : end - start);
    if (level.find('#') != std::string_view::npos && (level != "#" || !last)) {
      return "'#' must be alone in the last level";
    }
    if (level.find('+') != std::string_view::npos && level != "+") {
      return "'+' must be alone in its level";
    }
    if (last) return std::nullopt;
    start = end + 1;
  }
}

std::string quote(std::string_view text) { return quoted_short(text, 60, NonAscii::keep); }

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "an empty value";
}

std::string join(std::initializer_list<std::string_view> words) {
  std::string out;
  for (const std::string_view word : words) {
    if (!out.empty()) out += ", ";
    out += word;
  }
  return out;
}

std::string child_path(const std::string& parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  std::string path = parent;
  path += '.';
  path += key;
  return path;
}

std::string display_path(const std::string& path) { return path.empty() ? "top level" : path; }

bool is_name_char(char c, bool allow_upper_and_punct) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') return true;
  return allow_upper_and_punct && ((c >= 'A' && c <= 'Z') || c == '.' || c == '-');
}

bool is_name(std::string_view text, bool allow_upper_and_punct) {
  if (text.empty() || text.size() > kMaxNameBytes) return false;
  for (const char c : text) {
    if (!is_name_char(c, allow_upper_and_punct)) return false;
  }
  return true;
}

const Entry* find_entry(const std::vector<Entry>& entries, std::string_view key) {
  for (const Entry& entry : entries) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

Result<std::string> read_file(const std::string& path) {
  const auto cannot_read = [&path](int error_number) {
    return Error{path + ": cannot read: " + std::strerror(error_number)};
  };
  errno = 0;
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                             &std::fclose);
  if (!file) return cannot_read(errno);
  std::string text;
  char buffer[64 * 1024];
  while (true) {
    const std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get());
    text.append(buffer, n);
    if (text.size() > kMaxConfigBytes) {
      return Error{path + ": cannot read: larger than " + std::to_string(kMaxConfigBytes) +
                   " bytes"};
    }
    if (n < sizeof buffer) break;
  }
  // A directory opens fine on Linux and fails only here, with EISDIR.
  if (std::ferror(file.get())) return cannot_read(errno != 0 ? errno : EIO);
  return text;
}

bool Parser::parse_document(const YAML::Node& root, Config& config) {
  config.source = source_;
  const Value top{root, root.Mark(), ""};
  std::vector<Entry> entries;
  if (!read_map(top,
                KeyList{"gateway_id", "buffer", "metrics", "mappings", "presets_dir", "normalize",
                        "mqtt", "http", "uplink", "log"},
                entries)) {
    return false;
  }
  // Before the mappings, wherever it is written: they may name presets.
  if (const Entry* presets_dir = find_entry(entries, "presets_dir")) {
    if (!parse_path(presets_dir->value, config.presets_dir)) return false;
  }
  presets_dir_ = config.presets_dir;
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "presets_dir") continue;
    if (entry.key == "gateway_id") {
      ok = parse_gateway_id(entry.value, config.gateway_id);
    } else if (entry.key == "buffer") {
      ok = parse_buffer(entry.value, config.buffer);
    } else if (entry.key == "metrics") {
      ok = parse_metrics(entry.value, config.metrics);
    } else if (entry.key == "mappings") {
      ok = parse_mappings(entry.value, config.mappings);
    } else if (entry.key == "normalize") {
      ok = parse_normalize(entry.value, config.normalize);
    } else if (entry.key == "mqtt") {
      ok = parse_mqtt(entry.value, config.mqtt);
    } else if (entry.key == "http") {
      ok = parse_http(entry.value, config.http);
    } else if (entry.key == "uplink") {
      ok = parse_uplink(entry.value, config.uplink);
    } else if (entry.key == "log") {
      ok = parse_log(entry.value, config.log);
    }
    if (!ok) return false;
  }
  if (!require(top, entries, KeyList{"gateway_id", "metrics", "mappings"})) return false;
  if (!check_metric_references(config)) return false;
  if (config.mqtt.client_id.empty()) config.mqtt.client_id = "meter-agent-" + config.gateway_id;
  return true;
}

bool Parser::fail(const YAML::Mark& mark, const std::string& message) {
  std::string text = source_;
  if (mark.line >= 0 && mark.column >= 0) {
    text += ':' + std::to_string(mark.line + 1) + ':' + std::to_string(mark.column + 1);
  }
  text += ": ";
  text += message;
  error_ = Error{std::move(text)};
  return false;
}

bool Parser::fail(const Value& value, const std::string& message) {
  return fail(value.mark, display_path(value.path) + ": " + message);
}

bool Parser::fail_expected(const Value& value, std::string_view expected) {
  return fail(value, "expected " + std::string(expected) + ", got " + describe(value.node));
}

bool Parser::read_map(const Value& value, std::optional<KeyList> allowed, std::vector<Entry>& out) {
  // A section left empty (every key commented out) takes all its defaults.
  if (value.node.IsNull()) return true;
  if (!value.node.IsMap()) return fail_expected(value, "a map");
  for (const auto& pair : value.node) {
    // Copies, not references: yaml-cpp's pair is a temporary proxy.
    const YAML::Node key = pair.first;
    const YAML::Node child = pair.second;
    if (!key.IsScalar()) {
      return fail(key.Mark(), "expected a string key in " + display_path(value.path) + ", got " +
                                  describe(key));
    }
    const std::string& name = key.Scalar();
    if (allowed) {
      bool known = false;
      for (const std::string_view candidate : *allowed) known = known || candidate == name;
      if (!known) {
        return fail(key.Mark(), "unknown key " + quote(name) + " in " + display_path(value.path) +
                                    "; expected one of " + join(*allowed));
      }
    }
    if (const Entry* first = find_entry(out, name)) {
      return fail(key.Mark(), "duplicate key " + quote(name) + " in " + display_path(value.path) +
                                  "; first at line " + std::to_string(first->key_mark.line + 1) +
                                  ", column " + std::to_string(first->key_mark.column + 1));
    }
    out.push_back(Entry{
        name, key.Mark(),
        Value{child, child.IsNull() ? key.Mark() : child.Mark(), child_path(value.path, name)}});
  }
  return true;
}

bool Parser::require(const Value& map, const std::vector<Entry>& entries, KeyList required) {
  for (const std::string_view key : required) {
    if (find_entry(entries, key) == nullptr) {
      return fail(map, "missing required key '" + std::string(key) + "'");
    }
  }
  return true;
}

bool Parser::scalar(const Value& value, std::string_view expected, std::string& out) {
  if (!value.node.IsScalar()) return fail_expected(value, expected);
  out = value.node.Scalar();
  return true;
}

bool Parser::parse_gateway_id(const Value& value, std::string& out) {
  constexpr std::string_view kExpected = "1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'";
  if (!scalar(value, kExpected, out)) return false;
  if (!is_name(out, true)) return fail_expected(value, kExpected);
  return true;
}

bool Parser::parse_buffer(const Value& value, BufferConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"path", "durability", "max_size_mib"}, entries)) return false;
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "path") {
      ok = parse_buffer_path(entry.value, out.path);
    } else if (entry.key == "durability") {
      ok = one_of(entry.value,
                  {{"power_loss", Durability::power_loss}, {"normal", Durability::normal}},
                  out.durability);
    } else if (entry.key == "max_size_mib") {
      int mib = 0;
      ok = whole_number(entry.value, 0, 1024 * 1024, mib);
      if (ok && mib != 0 && mib < 16) {
        ok = fail(entry.value,
                  "must be 0 (no budget) or at least 16 MiB, got " + std::to_string(mib));
      }
      out.max_size_bytes = static_cast<std::int64_t>(mib) * 1024 * 1024;
    }
    if (!ok) return false;
  }
  return true;
}

bool Parser::parse_buffer_path(const Value& value, std::string& out) {
  std::string text;
  if (!scalar(value, "a file path", text)) return false;
  if (text.empty() || text.find('\0') != std::string::npos) {
    return fail_expected(value, "a file path");
  }
  fs::path path(text);
  if (!path.has_filename()) return fail(value, "must name a file, got " + quote(text));
  // Relative to the config file, not to whatever directory the daemon was
  // started from, so the same file works from systemd and from a shell.
  if (path.is_relative()) path = base_dir_ / path;
  out = path.lexically_normal().string();
  return true;
}

bool Parser::parse_normalize(const Value& value, NormalizeConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"future_tolerance", "batch_size", "clock"}, entries)) return false;
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "clock") {
      ok = one_of(entry.value,
                  {{"auto", ClockTrust::automatic}, {"synchronized", ClockTrust::synchronized}},
                  out.clock);
    } else if (entry.key == "future_tolerance") {
      ok = parse_duration(entry.value, out.future_tolerance_ms);
    } else if (entry.key == "batch_size") {
      ok = parse_batch_size(entry.value, out.batch_size);
    }
    if (!ok) return false;
  }
  return true;
}

bool Parser::parse_duration(const Value& value, std::int64_t& out_ms) {
  constexpr std::string_view kExpected =
      "a duration: a whole number and a unit ms, s, m, h or d, e.g. 300s or 5m";
  std::string text;
  if (!scalar(value, kExpected, text)) return false;
  if (!text.empty() && text.front() == '-')
    return fail(value, "must not be negative, got " + quote(text));
  for (const DurationUnit& unit : kDurationUnits) {
    if (text.size() <= unit.suffix.size() || !std::string_view(text).ends_with(unit.suffix)) {
      continue;
    }
    const auto count =
        parse_unsigned(std::string_view(text).substr(0, text.size() - unit.suffix.size()));
    if (!count) break;
    const auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / unit.ms);
    if (*count > max) return fail(value, "duration too large, got " + quote(text));
    out_ms = static_cast<std::int64_t>(*count) * unit.ms;
    return true;
  }
  return fail_expected(value, kExpected);
}

bool Parser::parse_batch_size(const Value& value, std::size_t& out) {
  const std::string expected = "a whole number from " + std::to_string(kMinBatchSize) + " to " +
                               std::to_string(kMaxBatchSize);
  std::string text;
  if (!scalar(value, expected, text)) return false;
  const auto number = parse_unsigned(text);
  if (!number || *number < kMinBatchSize || *number > kMaxBatchSize) {
    return fail_expected(value, expected);
  }
  out = static_cast<std::size_t>(*number);
  return true;
}

bool Parser::parse_path(const Value& value, std::string& out) {
  std::string text;
  if (!non_empty_text(value, "a file path", text)) return false;
  fs::path path(text);
  if (path.is_relative()) path = base_dir_ / path;
  out = path.lexically_normal().string();
  return true;
}

bool Parser::parse_topic_name(const Value& value, std::string& out) {
  if (!non_empty_text(value, "a topic prefix", out)) return false;
  if (out.find_first_of("+#") != std::string::npos || !is_valid_utf8(out)) {
    return fail(value, "a topic prefix must be UTF-8 without '+' or '#', got " + quote(out));
  }
  return true;
}

bool Parser::non_empty_text(const Value& value, std::string_view expected, std::string& out) {
  if (!scalar(value, expected, out)) return false;
  if (out.empty() || out.find('\0') != std::string::npos) return fail_expected(value, expected);
  return true;
}

bool Parser::boolean(const Value& value, bool& out) {
  return one_of(value, {{"true", true}, {"false", false}}, out);
}

bool Parser::whole_number(const Value& value, std::uint64_t min, std::uint64_t max, int& out) {
  const std::string expected =
      "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  std::string text;
  if (!scalar(value, expected, text)) return false;
  const auto number = parse_unsigned(text);
  if (!number || *number < min || *number > max) return fail_expected(value, expected);
  out = static_cast<int>(*number);
  return true;
}

}  // namespace config_parser

namespace {

using config_parser::Parser;
using config_parser::read_file;
using config_parser::topic_filter_problem;
namespace fs = std::filesystem;

Result<Config> parse_with_base(std::string_view yaml_text, const std::string& source_name,
                               const fs::path& base_dir) {
  Parser parser(source_name, base_dir);
  try {
    const std::vector<YAML::Node> documents = YAML::LoadAll(std::string(yaml_text));
    // A trailing "---" yields an empty extra document; anything more is
    // probably a second config pasted into the file and would be ignored.
    for (std::size_t i = 1; i < documents.size(); ++i) {
      if (!documents[i].IsNull()) {
        parser.fail(documents[i].Mark(),
                    "expected a single YAML document; another one starts here");
        return parser.error();
      }
    }
    if (documents.empty() || documents.front().IsNull()) {
      return Error{source_name +
                   ":1:1: empty configuration; expected a map with at least gateway_id, metrics "
                   "and mappings"};
    }
    Config config;
    if (!parser.parse_document(documents.front(), config)) return parser.error();
    return config;
  } catch (const YAML::Exception& e) {
    parser.fail(e.mark, "invalid YAML: " + e.msg);
    return parser.error();
  } catch (const std::exception& e) {
    return Error{source_name + ": cannot parse configuration: " + e.what()};
  } catch (...) {
    return Error{source_name + ": cannot parse configuration: unknown exception"};
  }
}

// Splits off one level of a topic or filter; `done` is set on the last one.
std::string_view next_level(std::string_view text, std::size_t& pos, bool& done) {
  const std::size_t end = text.find('/', pos);
  if (end == std::string_view::npos) {
    done = true;
    return text.substr(pos);
  }
  const std::string_view level = text.substr(pos, end - pos);
  pos = end + 1;
  return level;
}

}  // namespace

std::string UplinkConfig::ingest_url() const { return url + "/api/v1/ingest"; }

const MetricConfig* Config::metric(std::string_view name) const {
  const auto it = metrics.find(name);
  return it == metrics.end() ? nullptr : &it->second;
}

const MappingConfig* Config::mapping_for(std::string_view topic) const {
  for (const MappingConfig& mapping : mappings) {
    if (mapping_applies(mapping, topic)) return &mapping;
  }
  return nullptr;
}

Result<Config> load_config(const std::string& path) {
  Result<std::string> text = read_file(path);
  if (!text) return text.error();
  std::error_code ec;
  fs::path absolute = fs::absolute(fs::path(path), ec);
  if (ec) return Error{path + ": cannot read: " + ec.message()};
  return parse_with_base(*text, path, absolute.parent_path());
}

// Relative buffer paths resolve against the directory part of `source_name`;
// a name without one (such as "<string>") leaves them as written.
Result<Config> parse_config(std::string_view yaml_text, const std::string& source_name) {
  return parse_with_base(yaml_text, source_name, fs::path(source_name).parent_path());
}

// An invalid filter matches nothing rather than something surprising.
bool topic_matches(std::string_view filter, std::string_view topic) {
  if (topic.empty() || topic_filter_problem(filter)) return false;
  // MQTT 3.1.1 4.7.2: "$SYS/..." and friends are not caught by "#" or "+/...".
  if (topic.front() == '$' && (filter.front() == '#' || filter.front() == '+')) return false;
  std::size_t filter_pos = 0;
  std::size_t topic_pos = 0;
  bool filter_done = false;
  bool topic_done = false;
  while (!filter_done) {
    const std::string_view wanted = next_level(filter, filter_pos, filter_done);
    // '#' also matches the parent level itself: "sport/#" matches "sport".
    if (wanted == "#") return true;
    if (topic_done) return false;
    const std::string_view level = next_level(topic, topic_pos, topic_done);
    if (wanted != "+" && wanted != level) return false;
  }
  return topic_done;
}

}  // namespace meter
