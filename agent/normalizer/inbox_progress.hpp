// How far the normalizer has moved the inbox into the raw log, published for
// the acknowledge path (which holds acknowledgements back while the inbox
// holds too much that is not absorbed) and the disk budget's measurement.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/buffer/inbox.hpp"

namespace meter::agent {

class InboxProgress {
 public:
  InboxPosition absorbed() const {
    std::lock_guard lock(mutex_);
    return absorbed_;
  }
  void publish(InboxPosition absorbed) {
    {
      std::lock_guard lock(mutex_);
      absorbed_ = absorbed;
    }
    changed_.notify_all();
  }
  // Waits at most `timeout` until `done(absorbed())`; its last answer.
  template <class Done>
  bool wait_until(Done&& done, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done(absorbed_); });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  InboxPosition absorbed_;
};

// Bytes written to the inbox (up to `written`) that are not absorbed.
inline std::int64_t inbox_backlog(InboxPosition written, InboxPosition absorbed) {
  return (written.segment - absorbed.segment) * kInboxSegmentBytes + written.offset -
         absorbed.offset;
}

}  // namespace meter::agent
