// The command line: parses arguments and dispatches to one command.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/version.hpp"
#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"

namespace meter::agent {

inline constexpr const char* kDefaultConfigPath = "/etc/meter-agent/agent.yaml";

// Exit codes, as documented in README (Troubleshooting).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // the command ran and failed (I/O, database)
  kExitUsage = 2,    // bad command line
  kExitConfig = 3,   // bad configuration
};

struct CommandLine {
  std::string command;
  std::string config_path = kDefaultConfigPath;
  std::optional<std::string> buffer_path;  // overrides buffer.path
  std::vector<std::string> arguments;      // positional, after the command
  std::string format = "jsonl";            // export
  std::optional<std::string> output_path;  // export
  std::string import_topic = "import";     // import: topic for JSONL lines
  std::optional<std::string> received_at;  // import: receive time instead of now
  bool json = false;                       // status
  std::optional<std::string> reason;       // requeue: only records rejected for this reason
  // meter replace
  std::optional<std::string> metric;
  std::optional<std::string> at;
  std::optional<std::string> zone;  // for an `at` without an offset
  std::optional<std::string> old_final;
  std::optional<std::string> new_initial;
  bool withdraw = false;
  std::optional<std::string> try_topic;    // try: the message's topic (--topic)
  std::optional<std::string> try_payload;  // try: the payload as text (--payload)
  std::optional<std::string> try_file;     // try: the payload from a file (--file)
  std::optional<std::string> seconds;      // discover: how long to listen
  std::optional<std::string> filter;       // discover: the topic filter to listen to
};

int agent_main(int argc, char* argv[]);

// The commands, each returning an exit code. Output goes to `out`, progress
// and errors to `err`.
int run_import(const CommandLine& command_line, std::ostream& out, std::ostream& err);
int run_export(const CommandLine& command_line, std::ostream& out, std::ostream& err);
int run_renormalize(const CommandLine& command_line, std::ostream& out, std::ostream& err);
int run_status(const CommandLine& command_line, std::ostream& out, std::ostream& err);
int run_requeue(const CommandLine& command_line, std::ostream& out, std::ostream& err);
int run_check_config(const CommandLine& command_line, std::ostream& out, std::ostream& err);
// `meter replace DEVICE ...` and `meter list [DEVICE]` (agent/cli/meter_commands.cpp).
int run_meter(const CommandLine& command_line, std::ostream& out, std::ostream& err);

// For the offline commands (offline_commands.cpp): the configuration with
// --buffer applied, and the buffer; both print the error and return nothing.
std::optional<Config> load_for_command(const CommandLine& command_line, std::ostream& err);
std::unique_ptr<Buffer> open_buffer(const Config& config, std::ostream& err);
// try: what one message (--topic, --payload or --file) becomes; no buffer touched.
int run_try(const CommandLine& command_line, std::ostream& out, std::ostream& err);
// discover: listens on the broker, recognizes firmwares, prints a mappings block.
int run_discover(const CommandLine& command_line, std::ostream& out, std::ostream& err);

}  // namespace meter::agent
