// How long the uplink waits after a failed request (docs/PROTOCOL.md, "The
// agent's side"): capped exponential backoff with jitter, never shorter than
// Retry-After. Pure: the random draw is injected.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace meter {

// A uniform draw in [low, high] (the uplink's random engine; a test's script).
using UniformDraw = std::function<std::int64_t(std::int64_t low, std::int64_t high)>;

// A Retry-After is honoured up to this: a bogus one of a year must not stop uploads.
inline constexpr std::int64_t kMaxRetryAfterMs = 3600 * 1000;

struct BackoffPolicy {
  std::int64_t min_ms = 1000;        // uplink.retry.min
  std::int64_t max_ms = 300 * 1000;  // uplink.retry.max
};

// The wait after the `failures_in_a_row`-th failure in a row (1: the first):
// drawn uniformly from [d/2, d], d doubling from min to max (`longest`: max at
// once), and at least `retry_after_ms` (bounded by kMaxRetryAfterMs).
std::int64_t backoff_ms(const BackoffPolicy& policy, std::int64_t failures_in_a_row, bool longest,
                        std::optional<std::int64_t> retry_after_ms, const UniformDraw& draw);

}  // namespace meter
