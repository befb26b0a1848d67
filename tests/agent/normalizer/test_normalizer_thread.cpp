// The normalizer thread (agent/normalizer/normalizer_thread.hpp) on a real
// buffer: what the acknowledge path left in the inbox becomes measurements,
// its progress is published, the disk budget measured, and stopping drains.
#include <catch2/catch.hpp>
#include <sstream>

#include "agent/normalizer/normalizer_thread.hpp"
#include "support/buffer_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/process.hpp"

using namespace meter;
using namespace meter::agent;
using namespace std::chrono_literals;

namespace {

struct Rig {
  Rig() : logger(log, false) {
    config = std::make_shared<const Config>(fixture.config());
    auto writer = InboxWriter::open(config->buffer.path, false, 0);
    REQUIRE(writer);
    inbox = std::move(*writer);
  }
  void start() {
    auto opened = Buffer::open(config->buffer);
    REQUIRE(opened);
    auto position = (*opened)->inbox_position();
    REQUIRE(position);
    progress.publish(*position);
    normalizer = std::make_unique<NormalizerThread>(
        std::move(*opened), NormalizerThread::Shared{[this] { return config; }, budget, progress,
                                                     metrics, logger, clock, max_page_count});
    normalizer->start();
  }
  void commit(long i) {
    RawMessage raw;
    raw.topic = "meters/m1";
    raw.payload = test::seed_payload("m1", "2026-01-01T00:00:0" + std::to_string(i) + "Z", "energy",
                                     std::to_string(i), "kWh");
    raw.received_ms = clock.now_ms();
    REQUIRE(inbox->append(raw));
  }

  test::BufferFixture fixture;
  std::shared_ptr<const Config> config;
  std::unique_ptr<InboxWriter> inbox;
  DiskBudget budget;
  InboxProgress progress;
  Metrics metrics;
  std::ostringstream log;
  Logger logger;
  test::ManualClock clock;
  std::atomic<std::int64_t> max_page_count{0};
  std::unique_ptr<NormalizerThread> normalizer;
};

}  // namespace

TEST_CASE("normalizer thread: a wake turns the inbox into measurements and publishes how far",
          "[daemon][normalizer]") {
  Rig rig;
  rig.start();
  for (long i = 0; i < 5; ++i) rig.commit(i);
  rig.normalizer->wake();
  REQUIRE(test::wait_until([&] { return rig.metrics.new_measurements.load() == 5; }, 20s));
  CHECK(rig.metrics.raw_logged == 5);
  CHECK(rig.progress.absorbed() == rig.inbox->position());
  rig.normalizer->stop_and_drain();
  CHECK(rig.log.str().find("error") == std::string::npos);
}

TEST_CASE("normalizer thread: stopping moves what is left in the inbox into the raw log",
          "[daemon][normalizer]") {
  Rig rig;
  rig.start();
  rig.normalizer->stop_and_drain();
  for (long i = 0; i < 3; ++i) rig.commit(i);  // after the thread ended: only the drain sees them
  rig.normalizer->stop_and_drain();
  CHECK(rig.metrics.raw_logged == 3);
  CHECK(rig.progress.absorbed() == rig.inbox->position());
}

TEST_CASE("normalizer thread: measures the disk budget at start and after passes",
          "[daemon][normalizer][budget]") {
  Rig rig;
  rig.budget.set_limit(1);  // any buffer uses it up
  rig.start();
  // start() measured before the thread ran.
  CHECK(rig.budget.over());
  CHECK(rig.metrics.over_budget);
  CHECK(rig.metrics.buffer_used_bytes > 0);
  CHECK(rig.log.str().find("reached its disk budget") != std::string::npos);
  rig.budget.set_limit(0);
  rig.normalizer->wake();
  REQUIRE(test::wait_until([&] { return !rig.metrics.over_budget.load(); }, 20s));
  CHECK(rig.metrics.buffer_used_bytes == 0);
  CHECK(rig.log.str().find("below its disk budget again") != std::string::npos);
  rig.normalizer->stop_and_drain();
}
