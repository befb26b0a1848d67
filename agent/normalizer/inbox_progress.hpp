// How far the normalizer has moved the inbox into the raw log, published for
// the acknowledge path (which holds acknowledgements back while the inbox
// holds too much that is not absorbed) and the disk budget's measurement.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/buffer/inbox.hpp"

namespace meter::agent {

class InboxProgress {
 public:
  // Read once per message by the acknowledge path: two atomics, no lock. The
  // two halves may come from two publications (a read racing one); the
  // backlog computed from them is then off for that one message, which only
  // moves when the acknowledge path waits.
  InboxPosition absorbed() const { return {segment_.load(), offset_.load()}; }
  void publish(InboxPosition absorbed) {
    {
      std::lock_guard lock(mutex_);
      segment_ = absorbed.segment;
      offset_ = absorbed.offset;
    }
    changed_.notify_all();
  }
  // Waits at most `timeout` until `done(absorbed())`; its last answer.
  template <class Done>
  bool wait_until(Done&& done, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done(absorbed()); });
  }

 private:
  std::mutex mutex_;  // with changed_: publish() wakes waiters
  std::condition_variable changed_;
  std::atomic<std::int64_t> segment_{0};
  std::atomic<std::int64_t> offset_{0};
};

// Bytes written to the inbox (up to `written`) that are not absorbed.
inline std::int64_t inbox_backlog(InboxPosition written, InboxPosition absorbed) {
  return (written.segment - absorbed.segment) * kInboxSegmentBytes + written.offset -
         absorbed.offset;
}

}  // namespace meter::agent
