// The offline commands: import, export, renormalize, status, check-config.
#include <fstream>
#include <iostream>
#include <memory>

#include "agent/cli/cli.hpp"
#include "agent/cli/uplink_commands.hpp"
#include "common/buffer/buffer.hpp"
#include "common/buffer/inbox.hpp"
#include "common/config/config.hpp"
#include "common/decode/json.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/util/clock.hpp"
#include "common/util/quote.hpp"

namespace meter::agent {

std::optional<Config> load_for_command(const CommandLine& command_line, std::ostream& err) {
  auto config = load_config(command_line.config_path);
  if (!config) {
    err << "meter-agent: " << config.error().message << "\n";
    return std::nullopt;
  }
  if (command_line.buffer_path) config->buffer.path = *command_line.buffer_path;
  return std::move(*config);
}

std::unique_ptr<Buffer> open_buffer(const Config& config, std::ostream& err) {
  auto buffer = Buffer::open(config.buffer);
  if (!buffer) {
    err << "meter-agent: " << buffer.error().message << "\n";
    return nullptr;
  }
  return std::move(*buffer);
}

namespace {

constexpr std::size_t kImportChunk = 10000;

// Moves what a stopped (or killed) daemon acknowledged but had not yet moved
// into the raw log. A running daemon holds the inbox lock and does it itself.
bool absorb_leftovers(Buffer& buffer, std::ostream& err) {
  auto lock = InboxLock::acquire(buffer.path());
  if (!lock) return true;
  for (;;) {
    auto absorbed = buffer.absorb_inbox(50000, false);
    if (!absorbed) {
      err << "meter-agent: " << absorbed.error().message << "\n";
      return false;
    }
    for (const auto& damaged : absorbed->damaged)
      err << "meter-agent: warning: " << damaged << "\n";
    if (absorbed->messages == 0) return true;
  }
}

std::unique_ptr<Buffer> open_buffer_absorbed(const Config& config, std::ostream& err) {
  auto buffer = open_buffer(config, err);
  if (buffer && !absorb_leftovers(*buffer, err)) return nullptr;
  if (buffer) {
    // Before anything normalizes: the series of role metrics stay local.
    if (auto roles = buffer->set_local_only_metrics(config); !roles) {
      err << "meter-agent: " << roles.error().message << "\n";
      return nullptr;
    }
  }
  return buffer;
}

void print_stats(const NormalizeStats& stats, std::ostream& err) {
  err << stats.new_measurements << " new measurements, " << stats.duplicates << " duplicates, "
      << stats.revised << " revised, " << stats.decode_errors << " decode errors, " << stats.ignored
      << " ignored\n";
}

// How many of the newest decode errors and ignored messages `status` groups
// by topic and reason, and how many groups it shows.
constexpr int kRecentOutcomes = 1000;
constexpr int kOutcomeGroups = 20;

Result<std::vector<RawOutcomeGroup>> outcome_groups(Buffer& buffer, const std::string& kind) {
  return buffer.recent_outcome_groups(kind, kRecentOutcomes, kOutcomeGroups);
}

void append_outcome_groups_json(std::string& json, const std::vector<RawOutcomeGroup>& groups) {
  json += '[';
  bool first = true;
  for (const RawOutcomeGroup& group : groups) {
    if (!first) json += ',';
    first = false;
    json += "{\"topic\":";
    append_json_string(json, group.topic);
    json += ",\"reason\":";
    append_json_string(json, group.reason);
    json += ",\"count\":" + std::to_string(group.count) +
            ",\"last_seq\":" + std::to_string(group.last_seq) + "}";
  }
  json += ']';
}

void print_outcome_groups(std::ostream& out, const std::string& title,
                          const std::vector<RawOutcomeGroup>& groups) {
  if (groups.empty()) return;
  out << "\n" << title << " (the newest " << kRecentOutcomes << ", by topic and reason):\n";
  for (const RawOutcomeGroup& group : groups) {
    out << "  " << group.count << " x topic " << quoted_short(group.topic, 120, NonAscii::escape)
        << " (last seq " << group.last_seq << "): " << group.reason << "\n";
  }
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

}  // namespace

int run_import(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  if (command_line.arguments.size() != 1) {
    err << "meter-agent: import needs exactly one FILE (or - for standard input)\n";
    return kExitUsage;
  }
  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;

  std::int64_t received_ms = SystemClock().now_ms();
  if (command_line.received_at) {
    auto parsed = parse_timestamp(*command_line.received_at, TimestampFormat::rfc3339);
    if (!parsed) {
      err << "meter-agent: --received-at: " << parsed.error().message << "\n";
      return kExitUsage;
    }
    received_ms = parsed->ms;
  }

  const std::string& file = command_line.arguments[0];
  std::ifstream file_stream;
  std::istream* input = &std::cin;
  if (file != "-") {
    file_stream.open(file, std::ios::binary);
    if (!file_stream) {
      err << "meter-agent: " << file << ": cannot read\n";
      return kExitFailure;
    }
    input = &file_stream;
  }

  auto buffer = open_buffer(*config, err);
  if (!buffer) return kExitFailure;

  std::int64_t lines = 0;
  std::int64_t blank = 0;
  std::vector<RawMessage> chunk;
  auto flush = [&]() -> bool {
    if (chunk.empty()) return true;
    auto appended = buffer->append_raw_batch(chunk);
    if (!appended) {
      err << "meter-agent: " << appended.error().message << "\n";
      return false;
    }
    chunk.clear();
    return true;
  };
  std::string line;
  while (std::getline(*input, line)) {
    ++lines;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lines == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 BOM
    if (line.find_first_not_of(" \t") == std::string::npos) {
      ++blank;
      continue;
    }
    RawMessage message;
    message.received_ms = received_ms;
    message.qos = 0;
    const auto first = line.find_first_not_of(' ');
    const auto tab = line.find('\t');
    if (line[first] != '{' && line[first] != '[' && tab != std::string::npos) {
      message.topic = line.substr(0, tab);
      message.payload = line.substr(tab + 1);
    } else {
      // JSON in the seed format, or a line that is neither: the decoder says
      // why, and the raw log keeps it either way.
      message.topic = command_line.import_topic;
      message.payload = line;
    }
    chunk.push_back(std::move(message));
    if (chunk.size() >= kImportChunk && !flush()) return kExitFailure;
  }
  if (input->bad()) {
    err << "meter-agent: " << file << ": read error\n";
    return kExitFailure;
  }
  if (!flush()) return kExitFailure;

  auto stats = buffer->normalize_all(*config);
  if (!stats) {
    err << "meter-agent: normalization failed: " << stats.error().message << "\n";
    return kExitFailure;
  }
  err << "imported " << (lines - blank) << " lines into " << buffer->path() << ": ";
  print_stats(*stats, err);
  if (stats->decode_errors > 0) {
    err << "lines that could not be decoded are kept in the raw log with their reason; "
           "'meter-agent status' lists them\n";
  }
  (void)out;
  return kExitOk;
}

int run_export(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  if (command_line.format != "jsonl" && command_line.format != "csv") {
    err << "meter-agent: --format must be jsonl or csv, got '" << command_line.format << "'\n";
    return kExitUsage;
  }
  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;
  auto buffer = open_buffer_absorbed(*config, err);
  if (!buffer) return kExitFailure;

  std::ofstream file_stream;
  std::ostream* output = &out;
  if (command_line.output_path) {
    file_stream.open(*command_line.output_path, std::ios::binary | std::ios::trunc);
    if (!file_stream) {
      err << "meter-agent: " << *command_line.output_path << ": cannot write\n";
      return kExitFailure;
    }
    output = &file_stream;
  }

  const bool csv = command_line.format == "csv";
  if (csv) *output << "event_id,device_id,metric_type,timestamp,value,unit,delta,flags,revision\n";
  std::string line;
  auto exported = buffer->for_each_measurement([&](const Measurement& m) {
    line.clear();
    if (csv) {
      line += m.event_id + "," + csv_field(m.device_id) + "," + csv_field(m.metric_type) + "," +
              format_timestamp(m.timestamp_ms) + "," + m.value + "," + csv_field(m.unit) + "," +
              m.delta.value_or("") + "," + join_flags(m.flags, ';') + "," +
              std::to_string(m.revision) + "\n";
    } else {
      line += "{\"event_id\":\"" + m.event_id + "\",\"device_id\":";
      append_json_string(line, m.device_id);
      line += ",\"metric_type\":";
      append_json_string(line, m.metric_type);
      line += ",\"timestamp\":\"" + format_timestamp(m.timestamp_ms) + "\",\"value\":" + m.value;
      line += ",\"unit\":";
      append_json_string(line, m.unit);
      line += ",\"delta\":" + m.delta.value_or("null") + ",\"flags\":[";
      bool first = true;
      for (auto name : flag_names(m.flags)) {
        if (!first) line += ',';
        first = false;
        line += '"';
        line += name;
        line += '"';
      }
      line += "],\"revision\":" + std::to_string(m.revision) + "}\n";
    }
    *output << line;
  });
  if (!exported) {
    err << "meter-agent: " << exported.error().message << "\n";
    return kExitFailure;
  }
  output->flush();
  if (!*output) {
    err << "meter-agent: export: write failed\n";
    return kExitFailure;
  }
  return kExitOk;
}

int run_renormalize(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;
  auto buffer = open_buffer_absorbed(*config, err);
  if (!buffer) return kExitFailure;
  auto stats = buffer->renormalize(*config);
  if (!stats) {
    err << "meter-agent: renormalize failed, nothing changed: " << stats.error().message << "\n";
    return kExitFailure;
  }
  out << "renormalized " << stats->messages << " raw messages: ";
  print_stats(*stats, out);
  return kExitOk;
}

int run_status(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;
  auto buffer = open_buffer(*config, err);
  if (!buffer) return kExitFailure;
  auto status = buffer->status();
  if (!status) {
    err << "meter-agent: " << status.error().message << "\n";
    return kExitFailure;
  }
  const auto& s = *status;
  const auto pending = s.last_seq - s.normalized_through_seq;
  // The disk budget, counted as the daemon counts it (Daemon::check_disk_budget):
  // past it the daemon does not acknowledge MQTT messages.
  const std::int64_t budget = config->buffer.max_size_bytes;
  std::int64_t budget_used = 0;
  if (budget != 0) {
    auto used = buffer->used_bytes();
    if (!used) {
      err << "meter-agent: " << used.error().message << "\n";
      return kExitFailure;
    }
    budget_used = *used + budget_bytes_of_inbox(s.inbox_bytes);
  }
  const bool over_budget = budget_used_up(budget_used, budget);
  if (command_line.json) {
    std::string json = "{\"buffer\":";
    append_json_string(json, s.path);
    json += ",\"buffer_id\":\"" + s.buffer_id +
            "\",\"schema_version\":" + std::to_string(s.schema_version) +
            ",\"raw_messages\":" + std::to_string(s.raw_messages) +
            ",\"last_seq\":" + std::to_string(s.last_seq) +
            ",\"pending_normalization\":" + std::to_string(pending) +
            ",\"decode_errors\":" + std::to_string(s.decode_errors) +
            ",\"ignored\":" + std::to_string(s.ignored) +
            ",\"duplicates\":" + std::to_string(s.duplicates) +
            ",\"series\":" + std::to_string(s.series) +
            ",\"measurements\":" + std::to_string(s.measurements) +
            ",\"unsynced\":" + std::to_string(s.unsynced) + ",\"oldest_unsynced_received_at\":";
    if (s.oldest_unsynced_received_ms) {
      json += '"';
      json += format_timestamp(*s.oldest_unsynced_received_ms);
      json += '"';
    } else {
      json += "null";
    }
    json += ",\"flags\":{";
    bool first = true;
    for (const auto& [name, count] : s.flag_counts) {
      if (!first) json += ',';
      first = false;
      json += "\"" + name + "\":" + std::to_string(count);
    }
    json += "},\"database_bytes\":" + std::to_string(s.database_bytes) +
            ",\"wal_bytes\":" + std::to_string(s.wal_bytes) +
            ",\"inbox_bytes\":" + std::to_string(s.inbox_bytes) +
            ",\"disk_budget_bytes\":" + std::to_string(budget) +
            ",\"budget_used_bytes\":" + std::to_string(budget_used) +
            ",\"over_budget\":" + (over_budget ? "true" : "false");
    for (const char* kind : {"decode_error", "ignored"}) {
      auto groups = outcome_groups(*buffer, kind);
      if (!groups) {
        err << "meter-agent: " << groups.error().message << "\n";
        return kExitFailure;
      }
      json += std::string(",\"recent_") +
              (kind == std::string("ignored") ? "ignored" : "decode_errors") + "\":";
      append_outcome_groups_json(json, *groups);
    }
    json += ",\"uplink\":";
    if (!append_uplink_status(*buffer, *config, true, json, err)) return kExitFailure;
    json += "}\n";
    out << json;
    return kExitOk;
  }
  out << "buffer          " << s.path << " (id " << s.buffer_id << ", schema " << s.schema_version
      << ")\n";
  out << "raw messages    " << s.raw_messages << " (last seq " << s.last_seq << ", " << pending
      << " pending normalization)\n";
  out << "decode errors   " << s.decode_errors << "\n";
  out << "ignored         " << s.ignored << "\n";
  out << "duplicates      " << s.duplicates << "\n";
  out << "series          " << s.series << "\n";
  out << "measurements    " << s.measurements << " (" << s.unsynced << " unsynced)\n";
  out << "oldest unsynced "
      << (s.oldest_unsynced_received_ms ? format_timestamp(*s.oldest_unsynced_received_ms)
                                        : std::string("-"))
      << "\n";
  out << "flags          ";
  if (s.flag_counts.empty()) out << " -";
  for (const auto& [name, count] : s.flag_counts) out << " " << name << "=" << count;
  out << "\n";
  out << "disk            " << s.database_bytes << " bytes database, " << s.wal_bytes
      << " bytes WAL\n";
  out << "inbox           " << s.inbox_bytes << " bytes acknowledged, not yet in the raw log\n";
  if (budget == 0) {
    out << "disk budget     none (buffer.max_size_mib)\n";
  } else {
    out << "disk budget     " << budget_used << " of " << budget
        << " bytes used (database pages in use + WAL + inbox)\n";
    if (over_budget) {
      out << "                OVER BUDGET: MQTT messages are NOT acknowledged (the broker keeps "
             "them) until the central confirms and pruning (uplink.retention) frees space\n";
    }
  }
  {
    std::string uplink;
    if (!append_uplink_status(*buffer, *config, false, uplink, err)) return kExitFailure;
    out << uplink;
  }
  if (s.decode_errors > 0) {
    out << "\nlatest decode errors:\n";
    auto latest = buffer->latest_raw_outcomes("decode_error", 10);
    if (!latest) {
      err << "meter-agent: " << latest.error().message << "\n";
      return kExitFailure;
    }
    for (const auto& outcome : *latest)
      out << "  seq " << outcome.seq << ": " << outcome.reason << "\n";
  }
  for (const char* kind : {"decode_error", "ignored"}) {
    auto groups = outcome_groups(*buffer, kind);
    if (!groups) {
      err << "meter-agent: " << groups.error().message << "\n";
      return kExitFailure;
    }
    print_outcome_groups(out, kind == std::string("ignored") ? "ignored messages" : "decode errors",
                         *groups);
  }
  return kExitOk;
}

int run_check_config(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;
  out << command_line.config_path << ": OK (gateway " << config->gateway_id << ", "
      << config->metrics.size() << " metrics, " << config->mappings.size() << " mappings)\n";
  // A rounding scale is part of the readings' identity: its values go into
  // the event_ids, so changing it later splits history.
  for (std::size_t i = 0; i < config->mappings.size(); ++i) {
    const MappingConfig& mapping = config->mappings[i];
    for (const ReadingMapping& reading : mapping.readings) {
      if (!reading.scale || reading.scale->divide <= 1) continue;
      err << "meter-agent: warning: mapping " << i + 1 << " (topic '" << mapping.topic << "'"
          << (mapping.preset.empty() ? "" : ", preset '" + mapping.preset + "'")
          << "): scale divides by " << reading.scale->divide << " and rounds to "
          << reading.scale->decimals
          << " decimals where the quotient is no finite decimal; changing that scale later "
             "re-identifies history (those readings get new values and event_ids)\n";
    }
  }
  return kExitOk;
}

}  // namespace meter::agent
