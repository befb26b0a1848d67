// The uplink's time: the house Clock (common/util/clock.hpp: the wall clock
// for timestamps sent and stored, a steady clock for intervals) plus the one
// thing the uplink also needs of time, waiting between tries. The daemon uses
// the system's; the uplink's tests (tests/agent/uplink/) a fake whose time
// passes only when they advance it, so a Retry-After of minutes is tested
// without waiting. Every time read and wait of the uplink goes through it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "common/util/clock.hpp"

namespace meter::agent {

class UplinkClock : public Clock {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  // With `lock` held: waits on `wake` until `done()` or steady_now() reaches
  // `deadline`, whichever comes first.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& wake,
                          SteadyTime deadline, const std::function<bool()>& done) = 0;
};

// std::chrono's system_clock and steady_clock.
std::unique_ptr<UplinkClock> system_uplink_clock();

}  // namespace meter::agent
