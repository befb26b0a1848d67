#include "common/buffer/redelivery.hpp"

#include <algorithm>
#include <functional>

namespace meter {

std::uint64_t RedeliveryIndex::content_hash(std::string_view topic, std::string_view payload,
                                            int qos) {
  const std::uint64_t a = std::hash<std::string_view>{}(topic);
  const std::uint64_t b = std::hash<std::string_view>{}(payload);
  // boost-style combine; collisions are resolved by the caller comparing content.
  std::uint64_t h = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  return h ^ static_cast<std::uint64_t>(qos);
}

void RedeliveryIndex::add(std::int64_t seq, std::uint64_t hash, std::int64_t received_ms,
                          bool dup) {
  by_hash_.emplace(hash, Copy{seq, received_ms, dup});
  order_.emplace_back(seq, hash);
  through_seq_ = seq;
  while (!order_.empty() && order_.front().first <= seq - window_) {
    const auto [old_seq, old_hash] = order_.front();
    order_.pop_front();
    auto [first, last] = by_hash_.equal_range(old_hash);
    for (auto it = first; it != last; ++it) {
      if (it->second.seq == old_seq) {
        by_hash_.erase(it);
        break;
      }
    }
  }
}

std::vector<RedeliveryIndex::Copy> RedeliveryIndex::candidates(std::uint64_t hash,
                                                               std::int64_t seq) const {
  std::vector<Copy> found;
  auto [first, last] = by_hash_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    if (it->second.seq < seq && it->second.seq >= seq - window_) found.push_back(it->second);
  }
  std::sort(found.begin(), found.end(), [](const Copy& a, const Copy& b) { return a.seq > b.seq; });
  return found;
}

void RedeliveryIndex::clear() {
  by_hash_.clear();
  order_.clear();
  through_seq_ = -1;
}

}  // namespace meter
