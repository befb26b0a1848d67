// The uplink's part of the command line: `requeue`, and the uplink section of
// `status` (read from the buffer, so it works whether or not the daemon runs).
#include "agent/cli/uplink_commands.hpp"

#include <iostream>

#include "agent/cli/cli.hpp"
#include "common/decode/json.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/uplink/wire_format.hpp"

namespace meter::agent {
namespace {

std::string when(const std::string& ms_text) {
  if (ms_text.empty() || ms_text == "0") return "-";
  try {
    return format_timestamp(std::stoll(ms_text));
  } catch (const std::exception&) {
    return "-";
  }
}

void append_json_timestamp(std::string& json, const std::string& ms_text) {
  const auto text = when(ms_text);
  if (text == "-") {
    json += "null";
  } else {
    json += '"' + text + '"';
  }
}

}  // namespace

bool append_uplink_status(Buffer& buffer, const Config& config, bool as_json, std::string& out,
                          std::ostream& err) {
  auto sync = buffer.sync_status();
  auto state = buffer.uplink_state();
  if (!sync || !state) {
    err << "meter-agent: " << (!sync ? sync.error().message : state.error().message) << "\n";
    return false;
  }
  auto value = [&](const char* key) {
    auto found = state->find(key);
    return found == state->end() ? std::string() : found->second;
  };
  const auto& s = *sync;
  // The protocol the running (or last) uplink used; while it is 1 the held
  // measurements are counted now, not as the daemon last saw them.
  const std::string protocol =
      value("protocol_version").empty() ? std::string(kProtocolVersion) : value("protocol_version");
  std::int64_t held = 0;
  if (protocol == kProtocolVersion1) {
    auto counted = buffer.count_waiting_with_flags(kVersion2Flags);
    if (!counted) {
      err << "meter-agent: " << counted.error().message << "\n";
      return false;
    }
    held = *counted;
  }
  if (as_json) {
    out += "{\"enabled\":";
    out += config.uplink.enabled() ? "true" : "false";
    out += ",\"url\":";
    append_json_string(out, config.uplink.enabled() ? config.uplink.ingest_url() : "");
    out += ",\"last_success_at\":";
    append_json_timestamp(out, value("last_success_ms"));
    out += ",\"last_error_at\":";
    append_json_timestamp(out, value("last_error_ms"));
    out += ",\"last_error\":";
    append_json_string(out, value("last_error"));
    out += ",\"auth_failed\":";
    out += value("auth_failed") == "1" ? "true" : "false";
    out += ",\"protocol_version\":";
    append_json_string(out, protocol);
    out += ",\"held_measurements\":" + std::to_string(held);
    out += ",\"backlog_records\":" + std::to_string(s.waiting()) +
           ",\"backlog_raw_events\":" + std::to_string(s.raw_waiting) +
           ",\"backlog_measurements\":" + std::to_string(s.measurements_waiting) +
           ",\"oldest_waiting_received_at\":";
    if (s.oldest_waiting_received_ms) {
      out += '"' + format_timestamp(*s.oldest_waiting_received_ms) + '"';
    } else {
      out += "null";
    }
    const auto rate = value("confirmed_last_minute");
    out += ",\"confirmed_last_minute\":" + (rate.empty() ? std::string("0") : rate);
    out += ",\"quarantined\":" + std::to_string(s.quarantined) +
           ",\"requeued\":" + std::to_string(s.requeued) + ",\"quarantined_by_reason\":{";
    bool first = true;
    for (const auto& [reason, count] : s.quarantined_by_reason) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, reason);
      out += ":" + std::to_string(count);
    }
    out += "}}";
    return true;
  }
  out += "uplink          ";
  out += config.uplink.enabled() ? config.uplink.ingest_url() : std::string("off (no uplink.url)");
  out += "\n";
  if (value("auth_failed") == "1") {
    out += "                UPLOADS STOPPED: the central refuses the token; fix it and reload\n";
  }
  out += "protocol        " + protocol;
  if (protocol == kProtocolVersion1) {
    out += " (central speaks protocol 1: " + std::to_string(held) +
           " measurements held until it is upgraded)";
  }
  out += "\n";
  out += "last success    " + when(value("last_success_ms")) + "\n";
  out += "last error      " + when(value("last_error_ms"));
  if (!value("last_error").empty()) out += " " + value("last_error");
  out += "\n";
  out += "backlog         " + std::to_string(s.waiting()) + " records (" +
         std::to_string(s.raw_waiting) + " raw events, " + std::to_string(s.measurements_waiting) +
         " measurement revisions), oldest received " +
         (s.oldest_waiting_received_ms ? format_timestamp(*s.oldest_waiting_received_ms)
                                       : std::string("-")) +
         "\n";
  const auto rate = value("confirmed_last_minute");
  out += "rate            " + (rate.empty() ? std::string("0") : rate) +
         " records confirmed in the last minute\n";
  out += "quarantined     " + std::to_string(s.quarantined);
  for (const auto& [reason, count] : s.quarantined_by_reason) {
    out += " " + reason + "=" + std::to_string(count);
  }
  if (s.requeued > 0) out += " (" + std::to_string(s.requeued) + " requeued, not yet confirmed)";
  out += "\n";
  if (s.quarantined > 0) {
    auto latest = buffer.latest_rejections(10);
    if (latest) {
      out += "\nlatest rejections by the central (resend with `meter-agent requeue`):\n";
      for (const auto& r : *latest) {
        if (r.requeued) continue;
        out += "  " + r.kind + " " + std::to_string(r.ref) +
               (r.kind == "measurement" ? " revision " + std::to_string(r.revision) : "") + ": " +
               r.reason + (r.detail.empty() ? "" : " (" + r.detail + ")") + "\n";
      }
    }
  }
  return true;
}

int run_requeue(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  auto config = load_config(command_line.config_path);
  if (!config) {
    err << "meter-agent: " << config.error().message << "\n";
    return kExitConfig;
  }
  if (command_line.buffer_path) config->buffer.path = *command_line.buffer_path;
  auto buffer = Buffer::open(config->buffer);
  if (!buffer) {
    err << "meter-agent: " << buffer.error().message << "\n";
    return kExitFailure;
  }
  auto released = (*buffer)->requeue(command_line.reason);
  if (!released) {
    err << "meter-agent: " << released.error().message << "\n";
    return kExitFailure;
  }
  out << "requeued " << *released << " quarantined record" << (*released == 1 ? "" : "s")
      << (command_line.reason ? " rejected for " + *command_line.reason : std::string())
      << "; the uplink sends them again\n";
  return kExitOk;
}

}  // namespace meter::agent
