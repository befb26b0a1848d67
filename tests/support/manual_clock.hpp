// A Clock a test moves by hand (common/util/clock.hpp): both times stand still
// until advance().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "common/util/clock.hpp"

namespace meter::test {

class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t now_ms = 1767225600000)  // 2026-01-01T00:00:00Z
      : wall_ms_(now_ms) {}
  std::int64_t now_ms() const override { return wall_ms_.load(); }
  std::chrono::steady_clock::time_point steady_now() const override {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(steady_ms_.load()));
  }
  void advance(std::chrono::milliseconds by) {
    wall_ms_ += by.count();
    steady_ms_ += by.count();
  }

 private:
  std::atomic<std::int64_t> wall_ms_;
  std::atomic<std::int64_t> steady_ms_{1000000};
};

}  // namespace meter::test
