// Finding the original of an MQTT redelivery. A message the broker resends
// with DUP set (after the agent died between committing it and acknowledging
// it) must take the receive time of the copy already stored, or a reading
// stamped with the receive time would become a second event. The normalizer
// keeps this index of the raw log's recent tail in memory, so a lookup costs
// no scan; the raw log itself has no index on content (that would cost a
// random-page write on every acknowledged message).
#pragma once

#include <cstdint>
#include <deque>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meter {

class RedeliveryIndex {
 public:
  struct Copy {
    std::int64_t seq = 0;
    std::int64_t received_ms = 0;  // as received, not as inherited
    bool dup = false;
  };

  // Redeliveries are looked for among the `window` raw messages before them.
  explicit RedeliveryIndex(std::int64_t window) : window_(window) {}

  std::int64_t window() const { return window_; }

  static std::uint64_t content_hash(std::string_view topic, std::string_view payload, int qos);

  // Adds the raw message `seq` (seqs increase) and forgets what fell out of
  // the window.
  void add(std::int64_t seq, std::uint64_t hash, std::int64_t received_ms, bool dup);

  // Copies with this content hash among the `window` messages before `seq`,
  // newest first. The caller confirms the content (hashes can collide).
  std::vector<Copy> candidates(std::uint64_t hash, std::int64_t seq) const;

  // The raw log is indexed up to here; -1 when nothing is loaded.
  std::int64_t through_seq() const { return through_seq_; }
  void clear();

 private:
  std::int64_t window_;
  std::int64_t through_seq_ = -1;
  std::unordered_multimap<std::uint64_t, Copy> by_hash_;
  std::deque<std::pair<std::int64_t, std::uint64_t>> order_;  // (seq, hash), oldest first
};

}  // namespace meter
