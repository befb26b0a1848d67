#include "agent/ops/log.hpp"

#include <cstdlib>

#include "common/normalize/timestamp.hpp"

namespace meter::agent {
namespace {

int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return 3;
    case LogLevel::warning:
      return 4;
    case LogLevel::info:
      return 6;
    case LogLevel::debug:
      return 7;
  }
  return 6;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return "ERROR";
    case LogLevel::warning:
      return "WARN ";
    case LogLevel::info:
      return "INFO ";
    case LogLevel::debug:
      return "DEBUG";
  }
  return "INFO ";
}

constexpr std::size_t kMaxRememberedMessages = 256;

}  // namespace

Logger::Logger(std::ostream& out, bool journal) : out_(out), journal_(journal) {}

bool Logger::stderr_is_journal() { return std::getenv("JOURNAL_STREAM") != nullptr; }

void Logger::configure(const LogConfig& config) {
  std::lock_guard lock(mutex_);
  config_ = config;
}

bool Logger::enabled(LogLevel level, std::string_view component) const {
  std::lock_guard lock(mutex_);
  auto found = config_.components.find(component);
  const LogLevel threshold = found != config_.components.end() ? found->second : config_.level;
  return static_cast<int>(level) <= static_cast<int>(threshold);
}

void Logger::log(LogLevel level, std::string_view component, std::string_view message) {
  if (!enabled(level, component)) return;
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  std::string key;
  key.reserve(component.size() + message.size() + 2);
  key += static_cast<char>('0' + static_cast<int>(level));
  key += component;
  key += '\x1f';
  key += message;
  auto found = repeats_.find(key);
  if (found != repeats_.end() && now - found->second.printed_at < kRepeatWindow) {
    ++found->second.suppressed;
    return;
  }
  std::string line(message);
  if (found != repeats_.end()) {
    if (found->second.suppressed > 0) {
      line += " (repeated " + std::to_string(found->second.suppressed) +
              " more times in the last " +
              std::to_string(
                  std::chrono::duration_cast<std::chrono::seconds>(now - found->second.printed_at)
                      .count()) +
              " s)";
    }
    found->second = Repeat{now, 0};
  } else {
    if (repeats_.size() >= kMaxRememberedMessages) repeats_.clear();
    repeats_.emplace(std::move(key), Repeat{now, 0});
  }
  write_line(level, component, line);
}

void Logger::write_line(LogLevel level, std::string_view component, std::string_view message) {
  std::string line;
  if (journal_) {
    line += '<';
    line += std::to_string(syslog_priority(level));
    line += '>';
  } else {
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    line += format_timestamp(static_cast<std::int64_t>(now_ms));
    line += ' ';
    line += level_name(level);
    line += ' ';
  }
  line += '[';
  line += component;
  line += "] ";
  line += message;
  line += '\n';
  out_ << line << std::flush;
}

}  // namespace meter::agent
