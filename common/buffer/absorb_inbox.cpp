// The buffer's side of the inbox (common/buffer/inbox.hpp): moving acknowledged
// messages into the raw log, exactly once and in order.
#include <string_view>

#include "common/buffer/buffer.hpp"
#include "common/buffer/buffer_state.hpp"
#include "common/buffer/inbox.hpp"
#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"

namespace meter {

Result<InboxPosition> Buffer::inbox_position() {
  return guarded([&]() -> Result<InboxPosition> {
    return InboxPosition{read_counter(*db_, "inbox_segment"), read_counter(*db_, "inbox_offset")};
  });
}

Result<AbsorbStats> Buffer::absorb_inbox(std::size_t max_messages, bool writer_active) {
  return guarded([&]() -> Result<AbsorbStats> {
    AbsorbStats stats;
    // Only this connection moves records (the inbox lock or the daemon's
    // normalizer thread), so the position read here cannot change under it.
    auto position = inbox_position();
    if (!position) return position.error();
    auto batch = read_inbox(path(), *position, max_messages, writer_active);
    if (!batch) return batch.error();
    stats.position = batch->next;
    const bool moved_position = !(batch->next == *position);
    if (!batch->messages.empty() || moved_position) {
      sqlite::Transaction transaction(*db_);
      for (const auto& message : batch->messages) stats.last_seq = insert_raw(message);
      auto put = db_->prepare(sql::kPutCounter);
      put.bind(1, std::string_view("inbox_segment")).bind(2, batch->next.segment).run();
      put.bind(1, std::string_view("inbox_offset")).bind(2, batch->next.offset).run();
      transaction.commit();
    }
    stats.messages = static_cast<std::int64_t>(batch->messages.size());
    stats.bytes = batch->bytes;
    for (const auto& [number, reason] : batch->damaged) {
      stats.damaged.push_back(inbox_segment_path(path(), number) + ": " + reason +
                              "; kept as .damaged");
    }
    stats.problems = retire_inbox_segments(path(), *batch);
    return stats;
  });
}

}  // namespace meter
