#include <catch2/catch.hpp>

#include "agent/ops/clock_sync.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter::agent;

TEST_CASE("systemd-timesyncd's flag file says the clock is synchronized", "[clock_sync]") {
  meter::test::TempDir dir;
  const auto flag = dir.file("synchronized");
  meter::test::write_text_file(flag, "");
  CHECK(probe_clock(flag) == ClockState::synchronized);
  // Without it, the kernel decides (whatever this machine's state is, it is one of these).
  const auto state = probe_clock(dir.file("absent"));
  CHECK((state == ClockState::synchronized || state == ClockState::unsynchronized ||
         state == ClockState::unknown));
  CHECK(std::string(describe(ClockState::unknown)).find("ProtectClock") != std::string::npos);
}
