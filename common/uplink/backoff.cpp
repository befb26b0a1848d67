#include "common/uplink/backoff.hpp"

#include <algorithm>

namespace meter {

std::int64_t backoff_ms(const BackoffPolicy& policy, std::int64_t failures_in_a_row, bool longest,
                        std::optional<std::int64_t> retry_after_ms, const UniformDraw& draw) {
  const auto failures = std::min<std::int64_t>(failures_in_a_row, 40);
  std::int64_t ceiling = policy.min_ms;
  for (std::int64_t i = 1; i < failures && ceiling < policy.max_ms; ++i) ceiling *= 2;
  if (longest) ceiling = policy.max_ms;
  ceiling = std::min(ceiling, policy.max_ms);
  std::int64_t wait = draw(ceiling / 2, ceiling);
  if (retry_after_ms) wait = std::max(wait, std::min(*retry_after_ms, kMaxRetryAfterMs));
  return wait;
}

}  // namespace meter
