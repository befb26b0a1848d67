#include "agent/ops/service_notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <ctime>
#include <string>

namespace meter::agent {

ServiceNotifier::ServiceNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  active_ = socket != nullptr && *socket != '\0';
  std::uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is this process.
  if (active_ && sd_watchdog_enabled(0, &usec) > 0) {
    watchdog_interval_ = std::chrono::microseconds(usec);
  }
}

void ServiceNotifier::send(const char* state) const {
  if (!active_) return;
  // Failures are not worth reporting: a lost notification shows in systemctl
  // status, and the daemon must not stop over one.
  (void)sd_notify(0, state);
}

void ServiceNotifier::ready() { send("READY=1"); }

void ServiceNotifier::reloading() {
  if (!active_) return;
  // MONOTONIC_USEC is what Type=notify-reload (systemd 253+) expects; older
  // systemd ignores it.
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const auto usec = static_cast<std::uint64_t>(now.tv_sec) * 1000000U +
                    static_cast<std::uint64_t>(now.tv_nsec) / 1000U;
  send(("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec)).c_str());
}

void ServiceNotifier::stopping() { send("STOPPING=1"); }

void ServiceNotifier::watchdog(const Heartbeat& worker) {
  if (watchdog_interval_.count() == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ping_ < watchdog_interval_ / 4) return;
  if (worker.age() > watchdog_interval_ / 2) return;
  last_ping_ = now;
  send("WATCHDOG=1");
}

}  // namespace meter::agent
