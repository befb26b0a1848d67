#include "agent/uplink/uplink_clock.hpp"

namespace meter::agent {
namespace {

class SystemUplinkClock final : public UplinkClock {
 public:
  std::int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  SteadyTime steady_now() const override { return std::chrono::steady_clock::now(); }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& wake,
                  SteadyTime deadline, const std::function<bool()>& done) override {
    wake.wait_until(lock, deadline, done);
  }
};

}  // namespace

std::unique_ptr<UplinkClock> system_uplink_clock() { return std::make_unique<SystemUplinkClock>(); }

}  // namespace meter::agent
