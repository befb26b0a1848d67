// `meter-agent meter replace` and `meter-agent meter list`: the operator
// events of a meter (common/normalize/operator_event.hpp), written into and
// read from the raw log. They work while the daemon runs
// (common/buffer/operator_events.cpp says why that is safe).
#include <chrono>
#include <iostream>
#include <memory>

#include "agent/cli/cli.hpp"
#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/normalize/operator_event.hpp"
#include "common/normalize/timestamp.hpp"

namespace meter::agent {
namespace {

constexpr const char* kReplaceUsage =
    "usage: meter-agent meter replace DEVICE --metric M --at TIME [--old-final V] "
    "[--new-initial V] [--zone ZONE] [--withdraw]\n";
constexpr const char* kListUsage = "usage: meter-agent meter list [DEVICE]\n";

// --at: RFC 3339 as a mapping reads it (with an offset, or local time in
// --zone), refused when the local time is ambiguous or does not exist: an
// operator event must name one instant.
Result<std::int64_t> parse_at(const CommandLine& command_line) {
  const date::time_zone* zone = nullptr;
  if (command_line.zone) {
    auto found = find_time_zone(*command_line.zone);
    if (!found) return Error{"--zone: " + found.error().message};
    zone = *found;
  }
  auto parsed = parse_timestamp(*command_line.at, TimestampFormat::rfc3339, zone);
  if (!parsed) return Error{"--at: " + parsed.error().message};
  if (has_flag(parsed->flags, Flag::dst_ambiguous) || has_flag(parsed->flags, Flag::dst_gap)) {
    return Error{"--at: '" + *command_line.at +
                 "' is not one instant in that zone (a DST change); give an offset"};
  }
  if (has_flag(parsed->flags, Flag::leap_second)) {
    return Error{"--at: '" + *command_line.at + "' is a leap second; give another time"};
  }
  return parsed->ms;
}

// A value in the metric's canonical unit; written in canonical decimal text.
Result<std::optional<Decimal>> parse_value(const std::optional<std::string>& text,
                                           const char* option) {
  if (!text) return std::optional<Decimal>();
  auto parsed = Decimal::parse(*text);
  if (!parsed) return Error{std::string(option) + ": " + parsed.error().message};
  return std::optional<Decimal>(std::move(*parsed));
}

std::string describe(const std::optional<Decimal>& value) {
  return value ? value->text() : std::string("-");
}

int run_replace(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  if (command_line.arguments.size() != 2 || !command_line.metric || !command_line.at) {
    err << "meter-agent: meter replace needs DEVICE, --metric and --at\n" << kReplaceUsage;
    return kExitUsage;
  }
  OperatorEvent event;
  event.device_id = command_line.arguments[1];
  if (auto problem = device_id_problem(event.device_id)) {
    err << "meter-agent: DEVICE " << *problem << "\n";
    return kExitUsage;
  }
  auto at = parse_at(command_line);
  if (!at) {
    err << "meter-agent: " << at.error().message << "\n";
    return kExitUsage;
  }
  event.at_ms = *at;
  auto old_final = parse_value(command_line.old_final, "--old-final");
  auto new_initial = parse_value(command_line.new_initial, "--new-initial");
  for (const auto* value : {&old_final, &new_initial}) {
    if (!*value) {
      err << "meter-agent: " << value->error().message << "\n";
      return kExitUsage;
    }
  }
  event.old_final = std::move(*old_final);
  event.new_initial = std::move(*new_initial);
  event.withdrawn = command_line.withdraw;

  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;
  const MetricConfig* metric = config->metric(*command_line.metric);
  if (metric == nullptr || metric->kind != MetricKind::counter) {
    std::string counters;
    for (const auto& [name, declared] : config->metrics) {
      if (declared.kind == MetricKind::counter) counters += (counters.empty() ? "" : ", ") + name;
    }
    err << "meter-agent: --metric '" << *command_line.metric
        << (metric == nullptr ? "' is not declared in " : "' is not a counter in ")
        << config->source << " (counters: " << (counters.empty() ? "none" : counters) << ")\n";
    return kExitUsage;
  }
  event.metric_type = metric->name;
  event.recorded_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();

  auto buffer = open_buffer(*config, err);
  if (!buffer) return kExitFailure;
  auto written = buffer->record_operator_event(event, event.recorded_ms);
  if (!written) {
    err << "meter-agent: " << written.error().message << "\n";
    return kExitFailure;
  }
  const std::string what = std::string(event.withdrawn ? "withdrawal of the " : "") +
                           "meter replacement of " + event.device_id + " " + event.metric_type +
                           " at " + format_timestamp(event.at_ms);
  if (!written->written) {
    out << what << ": already recorded (seq " << written->seq << ")\n";
    return kExitOk;
  }
  out << "recorded " << what << " (seq " << written->seq << ")\n";
  return kExitOk;
}

int run_list(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  if (command_line.arguments.size() > 2) {
    err << "meter-agent: meter list takes at most one DEVICE\n" << kListUsage;
    return kExitUsage;
  }
  auto config = load_for_command(command_line, err);
  if (!config) return kExitConfig;
  auto buffer = open_buffer(*config, err);
  if (!buffer) return kExitFailure;
  auto log = buffer->operator_event_log();
  if (!log) {
    err << "meter-agent: " << log.error().message << "\n";
    return kExitFailure;
  }
  const std::optional<std::string> device =
      command_line.arguments.size() == 2 ? std::optional(command_line.arguments[1]) : std::nullopt;
  int shown = 0;
  for (const OperatorEvent& event : latest_operator_events(log->records)) {
    if (device && event.device_id != *device) continue;
    out << event.device_id << " " << event.metric_type << " replaced at "
        << format_timestamp(event.at_ms) << " old_final " << describe(event.old_final)
        << " new_initial " << describe(event.new_initial) << (event.withdrawn ? " WITHDRAWN" : "")
        << " (seq " << event.seq << ", recorded " << format_timestamp(event.recorded_ms) << ")\n";
    ++shown;
  }
  if (shown == 0) out << "no meter replacements recorded\n";
  for (const std::string& problem : log->problems) {
    err << "meter-agent: an operator event in the raw log cannot be read (kept as is): " << problem
        << "\n";
  }
  return kExitOk;
}

}  // namespace

int run_meter(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  const std::string sub = command_line.arguments.empty() ? "" : command_line.arguments[0];
  if (sub == "replace") return run_replace(command_line, out, err);
  if (sub == "list") return run_list(command_line, out, err);
  err << "meter-agent: meter needs 'replace' or 'list'\n" << kReplaceUsage << kListUsage;
  return kExitUsage;
}

}  // namespace meter::agent
