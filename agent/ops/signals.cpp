#include "agent/ops/signals.hpp"

#include <csignal>

namespace meter::agent {
namespace {

// Globals because a signal handler can reach nothing else; written only by the
// handlers, read by the daemon's main loop.
// NOLINTBEGIN(cppcoreguidelines-avoid-non-const-global-variables)
volatile std::sig_atomic_t stop_signal = 0;
volatile std::sig_atomic_t reload_signal = 0;
// NOLINTEND(cppcoreguidelines-avoid-non-const-global-variables)

extern "C" void on_stop_signal(int) { stop_signal = 1; }
extern "C" void on_reload_signal(int) { reload_signal = 1; }

}  // namespace

void install_signal_handlers() {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_handler = on_stop_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  action.sa_handler = on_reload_signal;
  sigaction(SIGHUP, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool stop_signalled() { return stop_signal != 0; }

bool take_reload_signal() {
  if (reload_signal == 0) return false;
  reload_signal = 0;
  return true;
}

}  // namespace meter::agent
