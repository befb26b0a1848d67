// The disk budget's decisions (agent/normalizer/disk_budget.hpp) with made-up
// numbers, and its measurement of a real buffer.
#include <catch2/catch.hpp>
#include <sstream>

#include "agent/normalizer/disk_budget.hpp"
#include "support/buffer_fixture.hpp"

using namespace meter;
using namespace meter::agent;

TEST_CASE("disk budget: without a limit nothing exceeds it and it is never over", "[budget]") {
  DiskBudget budget;
  CHECK_FALSE(budget.estimate_exceeds(1LL << 40));
  CHECK(budget.record(1LL << 40, 0) == DiskBudget::Change::none);
  CHECK_FALSE(budget.over());
  CHECK(budget.measurements() == 0);  // nothing measured without a limit
}

TEST_CASE("disk budget: a measurement over the limit is reached once, then below again",
          "[budget]") {
  DiskBudget budget;
  const std::int64_t limit = 16 * 1024 * 1024;
  budget.set_limit(limit);
  CHECK(budget.record(limit / 2, 0) == DiskBudget::Change::none);
  CHECK_FALSE(budget.over());
  // Used up already within the slack, before the limit itself.
  CHECK(budget.record(limit - kBudgetSlack + 1, 0) == DiskBudget::Change::reached);
  CHECK(budget.over());
  CHECK(budget.record(limit, 0) == DiskBudget::Change::none);  // still over: no second report
  CHECK(budget.record(limit - kBudgetSlack, 0) == DiskBudget::Change::below_again);
  CHECK_FALSE(budget.over());
  CHECK(budget.measurements() == 4);
}

TEST_CASE("disk budget: what was acknowledged since the last measurement counts", "[budget]") {
  DiskBudget budget;
  budget.set_limit(1000000);
  CHECK(budget.record(900000, budget.acknowledged_bytes()) == DiskBudget::Change::none);
  CHECK_FALSE(budget.estimate_exceeds(100000));
  CHECK(budget.estimate_exceeds(100001));
  budget.note_acknowledged(6000);
  CHECK_FALSE(budget.estimate_exceeds(94000));
  CHECK(budget.estimate_exceeds(94001));
  // A measurement taken after those 6,000 bytes counts them itself.
  CHECK(budget.record(906000, budget.acknowledged_bytes()) == DiskBudget::Change::none);
  CHECK_FALSE(budget.estimate_exceeds(94000));
  CHECK(budget.estimate_exceeds(94001));
  // Taken before them (a message acknowledged while measuring): counted twice, never not at all.
  budget.note_acknowledged(1000);
  CHECK(budget.record(907000, budget.acknowledged_bytes() - 1000) == DiskBudget::Change::none);
  CHECK_FALSE(budget.estimate_exceeds(92000));
  CHECK(budget.estimate_exceeds(92001));
  CHECK_FALSE(budget.over());
}

TEST_CASE("disk budget: a wait for a measurement ends with one, or at its timeout", "[budget]") {
  DiskBudget budget;
  budget.set_limit(1000);
  const auto seen = budget.measurements();
  CHECK_FALSE(budget.wait_for_measurement(seen, std::chrono::milliseconds(1)));
  (void)budget.record(10, 0);
  CHECK(budget.wait_for_measurement(seen, std::chrono::milliseconds(0)));
}

TEST_CASE("disk budget: the measurement counts the database and the unabsorbed inbox", "[budget]") {
  test::BufferFixture fixture;
  std::ostringstream log;
  Logger logger(log, false);
  auto empty = measure_budget_use(fixture.buffer(), {}, 1LL << 40, logger);
  REQUIRE(empty);
  CHECK(*empty > 0);  // the schema's pages

  auto writer = InboxWriter::open(fixture.config().buffer.path, false, 0);
  REQUIRE(writer);
  RawMessage message;
  message.topic = "meters/m1";
  message.payload = std::string(10000, 'x');
  message.received_ms = 1;
  REQUIRE((*writer)->append(message));
  auto with_inbox = measure_budget_use(fixture.buffer(), {}, 1LL << 40, logger);
  REQUIRE(with_inbox);
  // The pending record counts at what it will take once stored.
  CHECK(*with_inbox - *empty >= kBudgetBytesPerByte * (10000 + 9));
  // Measured from where it was absorbed to, the same inbox counts nothing.
  auto absorbed = measure_budget_use(fixture.buffer(), (*writer)->position(), 1LL << 40, logger);
  REQUIRE(absorbed);
  CHECK(*absorbed == *empty);
  CHECK(log.str().empty());
}
