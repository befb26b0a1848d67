// A reload (SIGHUP): parse a fresh copy of the config file and swap it in
// only if it is valid, reporting which sections changed. Sections are
// compared as values (each config struct has a defaulted operator==), so a
// field added later is seen without anyone listing it here.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/util/result.hpp"

namespace meter::agent {

// The top-level sections of the file (as named in YAML) whose values differ,
// in alphabetical order.
std::vector<std::string> changed_sections(const Config& before, const Config& after);

struct ReloadedConfig {
  Config config;
  std::vector<std::string> changed;  // changed_sections(current, config)
  // What the new file asked for but a reload cannot do (logged as warnings).
  std::vector<std::string> not_applied;
};

// Parses `current.source` again. `buffer_path`: the command line's override,
// applied again. A changed buffer.path is not applied (the buffer is open):
// the running one stays, with a note in `not_applied`.
Result<ReloadedConfig> reload_config(const Config& current,
                                     const std::optional<std::string>& buffer_path);

// The log line for a reload of `path` that changed `changed`.
std::string describe_reload(const std::string& path, const std::vector<std::string>& changed);

}  // namespace meter::agent
