// The one clock seam: code that reads the time takes a Clock, so a test can
// drive it. Owned by whoever wires the units (the daemon), injected by
// reference; SystemClock is the real one.
#pragma once

#include <chrono>
#include <cstdint>

namespace meter {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, UTC, in milliseconds since the Unix epoch: receive times
  // and what /metrics reports.
  virtual std::int64_t now_ms() const = 0;
  // Monotonic time for intervals (checkpoints, status refresh, backoff).
  virtual std::chrono::steady_clock::time_point steady_now() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::chrono::steady_clock::time_point steady_now() const override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace meter
