#include "agent/cli/cli.hpp"

#include <iostream>
#include <string_view>

#include "agent/daemon.hpp"
#include "agent/source/ingest_worker.hpp"

namespace meter::agent {
namespace {

constexpr const char* kUsage = R"(usage: meter-agent COMMAND [OPTIONS]

Commands:
  run                 the daemon: subscribe to the mappings' topics, store every
                      message before acknowledging it, normalize in the background
                      (SIGHUP reloads the configuration, SIGTERM stops)
  import FILE|-       append readings to the buffer and normalize them. Lines are
                      "topic<TAB>payload" or JSON in the seed format; bad lines are
                      kept in the raw log with their reason and counted.
  export              write every measurement, ordered by device_id, metric_type,
                      timestamp (--format jsonl|csv, --output FILE)
  renormalize         rebuild measurements from the raw log under the current config
  status              counts by state and flag, oldest unsynced, the uplink (--json)
  requeue             send the records the central rejected (quarantined) again,
                      after a fix (--reason CODE: only those rejected for CODE)
  meter replace DEVICE --metric M --at TIME [--old-final V] [--new-initial V]
                      record that DEVICE's meter (its counter M) was replaced at
                      TIME: readings from TIME on belong to the new meter. Safe
                      while the daemon runs; repeating it changes nothing.
                      --withdraw records a retraction (nothing is deleted)
  meter list [DEVICE] the recorded replacements (the latest record of each)
  check-config        validate the configuration and exit
  try                 show what one message becomes: the mapping that takes it, each
                      reading (canonical value, unit, device id, timestamp, event_id)
                      or why it is ignored or fails; nothing is stored
                      (--topic TOPIC, --payload TEXT or --file FILE)
  discover            listen on the broker (own client id, clean session, QoS 0),
                      recognize the firmwares and print a ready mappings block and
                      the topics nothing fits (--seconds N, default 30; --filter F)
  version             print the version

Options:
  --config FILE       configuration (default /etc/meter-agent/agent.yaml)
  --buffer PATH       use this buffer database instead of buffer.path
  --format jsonl|csv  export format (default jsonl)
  --output FILE       export to FILE instead of standard output
  --topic TOPIC       import: topic given to JSON lines (default "import"); try: the topic
  --payload TEXT      try: the message's payload
  --file FILE         try: read the payload from FILE
  --received-at TS    import, try: receive time (RFC 3339) instead of the clock
  --seconds N         discover: how long to listen (default 30)
  --filter FILTER     discover: the topic filter to listen to (default #)
  --json              status: machine-readable output
  --reason CODE       requeue: only records rejected for CODE (e.g. wrong_unit)
  --metric M          meter replace: the counter metric (declared in the config)
  --at TIME           meter replace: RFC 3339 with an offset (2024-03-01T13:00:00+01:00),
                      or without one and --zone
  --zone ZONE         meter replace: IANA zone of an --at without an offset
  --old-final V       meter replace: the old register's last value (canonical unit)
  --new-initial V     meter replace: the new register's value at TIME
  --withdraw          meter replace: retract the replacement recorded for TIME
)";

bool takes_value(std::string_view option) {
  return option == "--config" || option == "--buffer" || option == "--format" ||
         option == "--output" || option == "--topic" || option == "--received-at" ||
         option == "--reason" || option == "--metric" || option == "--at" || option == "--zone" ||
         option == "--old-final" || option == "--new-initial" || option == "--payload" ||
         option == "--file" || option == "--seconds" || option == "--filter";
}

}  // namespace

int agent_main(int argc, char* argv[]) {
  // Internal, not in the usage: a process the daemon starts for
  // mqtt.ingest_workers, talking to it over fd 3.
  if (argc == 2 && std::string_view(argv[1]) == "ingest-worker") return run_ingest_worker();
  CommandLine command_line;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return kExitOk;
    }
    if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
      std::string option = arg;
      std::optional<std::string> value;
      if (auto equals = arg.find('='); equals != std::string::npos) {
        option = arg.substr(0, equals);
        value = arg.substr(equals + 1);
      }
      if (option == "--json") {
        command_line.json = true;
        continue;
      }
      if (option == "--withdraw") {
        command_line.withdraw = true;
        continue;
      }
      if (!takes_value(option)) {
        std::cerr << "meter-agent: unknown option '" << option << "'\n" << kUsage;
        return kExitUsage;
      }
      if (!value) {
        if (i + 1 >= args.size()) {
          std::cerr << "meter-agent: option '" << option << "' needs a value\n";
          return kExitUsage;
        }
        value = args[++i];
      }
      if (option == "--config") command_line.config_path = *value;
      if (option == "--buffer") command_line.buffer_path = *value;
      if (option == "--format") command_line.format = *value;
      if (option == "--output") command_line.output_path = *value;
      if (option == "--topic") {
        command_line.import_topic = *value;
        command_line.try_topic = *value;
      }
      if (option == "--payload") command_line.try_payload = *value;
      if (option == "--file") command_line.try_file = *value;
      if (option == "--seconds") command_line.seconds = *value;
      if (option == "--filter") command_line.filter = *value;
      if (option == "--received-at") command_line.received_at = *value;
      if (option == "--reason") command_line.reason = *value;
      if (option == "--metric") command_line.metric = *value;
      if (option == "--at") command_line.at = *value;
      if (option == "--zone") command_line.zone = *value;
      if (option == "--old-final") command_line.old_final = *value;
      if (option == "--new-initial") command_line.new_initial = *value;
      continue;
    }
    if (command_line.command.empty()) {
      command_line.command = arg;
    } else {
      command_line.arguments.push_back(arg);
    }
  }

  const auto& command = command_line.command;
  if (command.empty()) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  if (command == "version") {
    std::cout << "meter-agent " << kVersion << "\n";
    return kExitOk;
  }
  if (command == "run")
    return run_daemon_command(command_line.config_path, command_line.buffer_path);
  if (command == "import") return run_import(command_line, std::cout, std::cerr);
  if (command == "export") return run_export(command_line, std::cout, std::cerr);
  if (command == "renormalize") return run_renormalize(command_line, std::cout, std::cerr);
  if (command == "status") return run_status(command_line, std::cout, std::cerr);
  if (command == "requeue") return run_requeue(command_line, std::cout, std::cerr);
  if (command == "check-config") return run_check_config(command_line, std::cout, std::cerr);
  if (command == "meter") return run_meter(command_line, std::cout, std::cerr);
  if (command == "try") return run_try(command_line, std::cout, std::cerr);
  if (command == "discover") return run_discover(command_line, std::cout, std::cerr);
  std::cerr << "meter-agent: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}

}  // namespace meter::agent
