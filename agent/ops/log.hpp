// Logging to stderr in a journald-friendly form: "<N>" priority prefixes when
// stderr is the journal (JOURNAL_STREAM set), timestamps otherwise; a
// "[component]" tag on every line; a level per component (Config::log); an
// identical message repeated within a window is counted instead of printed and
// the count is reported with its next occurrence. Never pass secrets here.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/config/config.hpp"

namespace meter::agent {

class Logger {
 public:
  // `journal`: prefix lines with <N> instead of a timestamp.
  Logger(std::ostream& out, bool journal);
  // A logger for stderr that detects the journal from JOURNAL_STREAM.
  static bool stderr_is_journal();

  void configure(const LogConfig& config);
  bool enabled(LogLevel level, std::string_view component) const;
  void log(LogLevel level, std::string_view component, std::string_view message);

  void error(std::string_view component, std::string_view message) {
    log(LogLevel::error, component, message);
  }
  void warning(std::string_view component, std::string_view message) {
    log(LogLevel::warning, component, message);
  }
  void info(std::string_view component, std::string_view message) {
    log(LogLevel::info, component, message);
  }
  void debug(std::string_view component, std::string_view message) {
    log(LogLevel::debug, component, message);
  }

  // How long an identical message stays suppressed after it was printed.
  static constexpr std::chrono::seconds kRepeatWindow{30};

 private:
  struct Repeat {
    std::chrono::steady_clock::time_point printed_at;
    std::int64_t suppressed = 0;
  };
  void write_line(LogLevel level, std::string_view component, std::string_view message);

  std::ostream& out_;
  const bool journal_;
  mutable std::mutex mutex_;
  LogConfig config_;
  std::unordered_map<std::string, Repeat> repeats_;
};

}  // namespace meter::agent
