// Telling systemd how the daemon is doing (sd_notify(3), unit Type=notify):
// READY=1 once the buffer is open and the MQTT client started, RELOADING=1 then
// READY=1 around a SIGHUP reload, STOPPING=1 at shutdown, and WATCHDOG=1 only
// while the pipeline proves progress.
//
// Without NOTIFY_SOCKET in the environment (started from a shell, a test or
// another supervisor) every call does nothing: the agent runs the same with or
// without systemd.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace meter::agent {

// The last time a worker thread went round its loop, for a supervisor to read
// from another thread. A thread stuck inside one step stops beating.
class Heartbeat {
 public:
  Heartbeat() { beat(); }
  void beat() { last_ = std::chrono::steady_clock::now().time_since_epoch().count(); }
  std::chrono::steady_clock::duration age() const {
    return std::chrono::steady_clock::now().time_since_epoch() -
           std::chrono::steady_clock::duration(last_.load());
  }

 private:
  std::atomic<std::chrono::steady_clock::rep> last_{0};
};

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET and the watchdog settings (WATCHDOG_USEC, WATCHDOG_PID) once.
  ServiceNotifier();

  bool active() const { return active_; }
  // The interval of the unit's WatchdogSec=; zero when the watchdog is off.
  std::chrono::microseconds watchdog_interval() const { return watchdog_interval_; }

  void ready();
  void reloading();
  void stopping();

  // Called by the supervising loop on every pass (so the loop itself is alive):
  // pings the watchdog, at most every quarter interval, only while `worker`
  // beat within half the interval. A worker stuck for longer stops the pings
  // and systemd restarts the service; a timer thread would ping regardless.
  void watchdog(const Heartbeat& worker);

 private:
  void send(const char* state) const;

  bool active_ = false;
  std::chrono::microseconds watchdog_interval_{0};
  std::chrono::steady_clock::time_point last_ping_{};
};

}  // namespace meter::agent
