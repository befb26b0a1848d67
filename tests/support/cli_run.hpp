// The meter-agent binary run as a user runs it, for the CLI tests: arguments
// through the shell, stdin from a file, stdout and stderr captured.
#pragma once

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "support/temp_dir.hpp"

namespace meter::test {

struct Run {
  int exit_code;
  std::string out;
  std::string err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream content;
  content << file.rdbuf();
  return content.str();
}

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream file(path, std::ios::binary);
  file << content;
}

// One shell word, whatever `text` holds.
inline std::string quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// `meter-agent ARGUMENTS` with `input` on stdin (empty: at end at once).
inline Run run(const TempDir& dir, const std::string& arguments, const std::string& input = "") {
  const auto in = dir.file("stdin");
  write_file(in, input);
  const auto command = quote(METER_AGENT_BINARY) + " " + arguments + " <" + quote(in) + " >" +
                       quote(dir.file("stdout")) + " 2>" + quote(dir.file("stderr"));
  const int status = std::system(command.c_str());
  REQUIRE(WIFEXITED(status));
  return Run{WEXITSTATUS(status), read_file(dir.file("stdout")), read_file(dir.file("stderr"))};
}

}  // namespace meter::test
