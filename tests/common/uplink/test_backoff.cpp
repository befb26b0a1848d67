// The uplink's backoff (common/uplink/backoff.hpp), as docs/PROTOCOL.md ("The
// agent's side") describes it. Pure: the random draw is scripted.
#include <catch2/catch.hpp>

#include "common/uplink/backoff.hpp"

using namespace meter;

namespace {

// Records the range asked for and answers its top (or bottom).
struct Draw {
  std::int64_t low = -1;
  std::int64_t high = -1;
  bool top = true;
  UniformDraw fn() {
    return [this](std::int64_t l, std::int64_t h) {
      low = l;
      high = h;
      return top ? h : l;
    };
  }
};

}  // namespace

TEST_CASE("the backoff doubles from retry.min to retry.max, drawn from d/2 to d",
          "[uplink_backoff]") {
  const BackoffPolicy policy{1000, 60000};
  Draw draw;
  CHECK(backoff_ms(policy, 1, false, std::nullopt, draw.fn()) == 1000);
  CHECK(draw.low == 500);
  CHECK(backoff_ms(policy, 2, false, std::nullopt, draw.fn()) == 2000);
  CHECK(backoff_ms(policy, 3, false, std::nullopt, draw.fn()) == 4000);
  CHECK(backoff_ms(policy, 6, false, std::nullopt, draw.fn()) == 32000);
  CHECK(backoff_ms(policy, 7, false, std::nullopt, draw.fn()) == 60000);  // capped
  CHECK(backoff_ms(policy, 1000000, false, std::nullopt, draw.fn()) == 60000);
  CHECK(draw.low == 30000);
  draw.top = false;
  CHECK(backoff_ms(policy, 3, false, std::nullopt, draw.fn()) == 2000);
}

TEST_CASE("a refused batch waits the longest backoff at once", "[uplink_backoff]") {
  Draw draw;
  CHECK(backoff_ms(BackoffPolicy{1000, 300000}, 1, true, std::nullopt, draw.fn()) == 300000);
  CHECK(draw.low == 150000);
}

TEST_CASE("the backoff is never shorter than Retry-After, honoured up to an hour",
          "[uplink_backoff]") {
  const BackoffPolicy policy{1000, 300000};
  Draw draw;
  CHECK(backoff_ms(policy, 1, false, 120000, draw.fn()) == 120000);
  CHECK(backoff_ms(policy, 1, false, 10, draw.fn()) == 1000);  // the backoff is longer
  CHECK(backoff_ms(policy, 1, false, 365LL * 24 * 3600 * 1000, draw.fn()) == kMaxRetryAfterMs);
  CHECK(backoff_ms(policy, 1, true, 365LL * 24 * 3600 * 1000, draw.fn()) == kMaxRetryAfterMs);
}
