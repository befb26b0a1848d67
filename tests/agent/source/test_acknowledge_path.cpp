// The acknowledge path (agent/source/acknowledge_path.hpp) on a real inbox in
// a temp dir: what it commits, and when its flow control refuses.
#include <catch2/catch.hpp>
#include <sstream>
#include <thread>

#include "agent/source/acknowledge_path.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::agent;

namespace {

RawMessage message(const std::string& payload) {
  RawMessage raw;
  raw.topic = "meters/d1";
  raw.payload = payload;
  raw.received_ms = 1767225600000;
  return raw;
}

// An acknowledge path on an inbox in a temp dir, with counters for its hooks.
struct Rig {
  explicit Rig(std::int64_t inbox_max_bytes = kInboxMaxBytes) : logger(log, false) {
    auto writer = InboxWriter::open(buffer_path(), false, 0);
    REQUIRE(writer);
    progress.publish((*writer)->position());  // nothing written yet: nothing to absorb
    path = std::make_unique<AcknowledgePath>(
        std::move(*writer),
        AcknowledgePath::Shared{budget, progress, metrics, logger, [this] { ++wakes; },
                                max_page_count},
        inbox_max_bytes);
  }
  std::string buffer_path() const { return dir.file("buffer.db"); }
  // What the inbox holds, as the normalizer would read it.
  std::vector<RawMessage> inbox() const {
    auto batch = read_inbox(buffer_path(), {}, 1000, true);
    REQUIRE(batch);
    return batch->messages;
  }

  test::TempDir dir;
  DiskBudget budget;
  InboxProgress progress;
  Metrics metrics;
  std::ostringstream log;
  Logger logger;
  std::atomic<std::int64_t> max_page_count{0};
  std::atomic<int> wakes{0};
  std::unique_ptr<AcknowledgePath> path;
};

}  // namespace

TEST_CASE("acknowledge path: a commit is in the inbox when it returns, and wakes the normalizer",
          "[acknowledge]") {
  Rig rig;
  rig.path->commit(message("one"));
  rig.path->commit(message("two"));
  const auto stored = rig.inbox();
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].payload == "one");
  CHECK(stored[1].payload == "two");
  CHECK(stored[0].received_ms == 1767225600000);
  CHECK(rig.metrics.appended == 2);
  CHECK(rig.metrics.append_failures == 0);
  CHECK(rig.wakes == 2);
}

TEST_CASE("acknowledge path: over the disk budget nothing is committed", "[acknowledge][budget]") {
  Rig rig;
  rig.budget.set_limit(1024 * 1024);
  (void)rig.budget.record(1024 * 1024, 0);  // the normalizer measured: used up
  REQUIRE(rig.budget.over());
  auto refused = rig.path->try_commit(message("x"));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("disk budget") != std::string::npos);
  CHECK(rig.inbox().empty());

  (void)rig.budget.record(0, rig.budget.acknowledged_bytes());  // room again
  CHECK(rig.path->try_commit(message("x")));
  CHECK(rig.inbox().size() == 1);
}

TEST_CASE("acknowledge path: an estimate over the budget waits for a measurement first",
          "[acknowledge][budget]") {
  Rig rig;
  const std::string payload(12000, 'p');
  const std::int64_t message_bytes = budget_bytes_of_message(9 + 12000);
  rig.budget.set_limit(1024 * 1024);
  // Measured just below the budget's slack, which leaves room for exactly two
  // more messages of this size by the estimate.
  (void)rig.budget.record(1024 * 1024 - kBudgetSlack, 0);
  REQUIRE_FALSE(rig.budget.over());
  REQUIRE(2 * message_bytes <= kBudgetSlack);
  REQUIRE(3 * message_bytes > kBudgetSlack);
  CHECK(rig.path->try_commit(message(payload)));
  CHECK(rig.path->try_commit(message(payload)));
  // The third only by the estimate: the normalizer is asked to measure, and
  // without a measurement (no normalizer here) the attempt fails after the wait.
  const int wakes_before = rig.wakes;
  auto refused = rig.path->try_commit(message(payload));
  REQUIRE_FALSE(refused);
  CHECK(rig.wakes == wakes_before + 1);
  CHECK(rig.inbox().size() == 2);
  CHECK(rig.budget.estimate_exceeds(message_bytes));
  CHECK_FALSE(rig.budget.over());
}

TEST_CASE("acknowledge path: a full inbox refuses until the normalizer absorbs it",
          "[acknowledge]") {
  Rig rig(1000);  // bytes not absorbed the inbox may hold
  const std::string payload(600, 'p');
  REQUIRE(rig.path->try_commit(message(payload)));
  REQUIRE(rig.path->try_commit(message(payload)));  // 1,200 bytes now: the next one waits
  auto refused = rig.path->try_commit(message(payload));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("the inbox holds") != std::string::npos);
  CHECK(rig.metrics.inbox_full_waits == 1);
  CHECK(rig.inbox().size() == 2);

  // The normalizer took in everything written so far.
  auto batch = read_inbox(rig.buffer_path(), {}, 1000, true);
  REQUIRE(batch);
  rig.progress.publish(batch->next);
  CHECK(rig.path->try_commit(message(payload)));
  CHECK(rig.inbox().size() == 3);
}

TEST_CASE("acknowledge path: a full disk (the test seam) refuses the append", "[acknowledge]") {
  Rig rig;
  rig.max_page_count = 1;
  REQUIRE_FALSE(rig.path->try_commit(message("x")));
  rig.max_page_count = 0;
  CHECK(rig.path->try_commit(message("x")));
  CHECK(rig.inbox().size() == 1);
}

TEST_CASE(
    "acknowledge path: commit retries a failed append until it succeeds, never returning "
    "before",
    "[daemon][acknowledge]") {
  Rig rig;
  rig.max_page_count = 1;
  std::atomic<bool> returned{false};
  std::thread callback([&] {
    rig.path->commit(message("kept"));
    returned = true;
  });
  REQUIRE(test::wait_until([&] { return rig.metrics.append_failures.load() >= 2; },
                           std::chrono::seconds(10)));
  CHECK_FALSE(returned);
  CHECK(rig.metrics.append_blocked);
  CHECK(rig.inbox().empty());
  rig.max_page_count = 0;  // room again
  callback.join();
  CHECK(returned);
  CHECK_FALSE(rig.metrics.append_blocked);
  CHECK(rig.metrics.appended == 1);
  REQUIRE(rig.inbox().size() == 1);
  CHECK(rig.log.str().find("accepts writes again") != std::string::npos);
}
