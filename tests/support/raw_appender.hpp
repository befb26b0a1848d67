// A raw log appender with a connection of its own that commits every message
// by itself (SQLite autocommit): how the acknowledge path committed before the
// inbox existed. The crash test and the buffer benchmark still drive the raw
// log this way, beside a Buffer that normalizes; the product appends through
// the inbox (Buffer::absorb_inbox) or in batches (Buffer::append_raw_batch).
// The database must exist: open a Buffer on it first.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/buffer/sql.hpp"
#include "common/buffer/sqlite.hpp"
#include "common/config/config.hpp"
#include "common/model/raw_message.hpp"
#include "common/util/result.hpp"

namespace meter::testing {

class RawAppender {
 public:
  // Automatic checkpoints are off on this connection (wal_autocheckpoint 0),
  // so the append path pays for none: the Buffer beside it checkpoints.
  explicit RawAppender(const BufferConfig& config) : db_(config.path) {
    db_.exec(config.durability == Durability::power_loss ? "PRAGMA synchronous = FULL"
                                                         : "PRAGMA synchronous = NORMAL");
    db_.exec("PRAGMA wal_autocheckpoint = 0");
    append_ = db_.prepare(sql::kAppendRaw);
  }

  // Appends one message; committed (per the synchronous setting) when this
  // returns. Its seq, or the error.
  Result<std::int64_t> append(const RawMessage& message) {
    try {
      append_.bind(1, message.received_ms)
          .bind(2, std::string_view(message.topic))
          .bind_blob(3, message.payload.data(), message.payload.size())
          .bind(4, message.qos)
          .bind(5, message.retained ? 1 : 0)
          .bind(6, message.dup ? 1 : 0);
      append_.run();
      return db_.last_insert_rowid();
    } catch (const std::exception& e) {
      return Error{e.what()};
    }
  }

 private:
  sqlite::Database db_;
  sqlite::Statement append_;
};

}  // namespace meter::testing
