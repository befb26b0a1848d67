// The uplink's time, behind one seam: the wall clock (timestamps sent and
// stored), a steady clock (intervals) and the waits between tries. The daemon
// uses the system's; the uplink's tests (tests/agent/uplink/) a fake whose
// time passes only when they advance it, so a Retry-After of minutes is tested
// without waiting. Every time read of the uplink goes through this one object:
// when the house Clock (common/util/clock.hpp) lands, this is where it plugs in.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace meter::agent {

class UplinkClock {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  virtual ~UplinkClock() = default;
  // Milliseconds since the Unix epoch.
  virtual std::int64_t wall_ms() = 0;
  virtual SteadyTime steady_now() = 0;
  // With `lock` held: waits on `wake` until `done()` or steady_now() reaches
  // `deadline`, whichever comes first.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& wake,
                          SteadyTime deadline, const std::function<bool()>& done) = 0;
};

// std::chrono's system_clock and steady_clock.
std::unique_ptr<UplinkClock> system_uplink_clock();

}  // namespace meter::agent
