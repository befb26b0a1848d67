#include "agent/ops/clock_sync.hpp"

#include <sys/timex.h>
#include <unistd.h>

namespace meter::agent {

ClockState probe_clock(const std::string& synchronized_file) {
  if (!synchronized_file.empty() && ::access(synchronized_file.c_str(), F_OK) == 0) {
    return ClockState::synchronized;
  }
  timex query{};
  query.modes = 0;  // read only
  const int state = ::adjtimex(&query);
  if (state == -1) return ClockState::unknown;
  return state == TIME_ERROR ? ClockState::unsynchronized : ClockState::synchronized;
}

const char* describe(ClockState state) {
  switch (state) {
    case ClockState::synchronized:
      return "synchronized";
    case ClockState::unsynchronized:
      return "not synchronized";
    case ClockState::unknown:
      return "of unknown state (adjtimex refused, e.g. ProtectClock=, and no "
             "/run/systemd/timesync/synchronized)";
  }
  return "?";
}

}  // namespace meter::agent
