// Poison isolation (docs/PROTOCOL.md, "The agent's side"): one record that
// makes the central answer HTTP 500 must not hold back every record behind it.
// A batch answered 500 kServerErrorsBeforeSplit times in a row is sent again
// in parts, halved while a part still gets a 500; a single record that gets a
// 500 alone is quarantined once another part of the same round was accepted
// (that proves the 500s came from the record, not from an outage of the
// central). 502/503/504, timeouts and connection errors are outages: they never
// split anything. Pure: the uplink (agent/uplink/uplink.cpp) sends the parts
// and applies the quarantines.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "common/model/sync.hpp"

namespace meter {

// The records of `batch` in request order (raw events, then measurements) cut
// in two, the first half the larger; each half keeps the cursors the buffer
// needs to apply its answer (its run of raw events after the watermark).
// A batch of one record (or none) cannot be split: the second half is empty.
std::pair<UplinkBatch, UplinkBatch> split_in_halves(const UplinkBatch& batch);

// The answer that quarantines every record of `batch` with `reason`/`detail`.
IngestResponse reject_all(const UplinkBatch& batch, const std::string& reason,
                          const std::string& detail);

class BatchIsolation {
 public:
  // 500s in a row for the same whole batch before it is split.
  static constexpr int kServerErrorsBeforeSplit = 3;
  // Single records left waiting for proof (or quarantined) in one round
  // before the round gives up: a central answering 500 to everything must
  // not make the agent try every record alone, nor quarantine them.
  static constexpr std::size_t kMaxSuspects = 8;

  // The answer to a whole (normally selected) batch: `server_error` is an
  // HTTP 500. True when this was its kServerErrorsBeforeSplit-th 500 in a row
  // and it has more than one record: a round has begun (active()).
  bool whole_answered(const UplinkBatch& batch, bool server_error);
  // Begins a round with `batch` in halves at once (a 413 whose halving of the
  // selection limits would select the same batch again).
  void split_now(const UplinkBatch& batch);

  bool active() const { return !parts_.empty(); }
  // The part to send next (active() only).
  const UplinkBatch& next_part() const { return parts_.front(); }

  // What the uplink does after a part's answer.
  struct Quarantine {
    UplinkBatch record;  // a batch of one record
    std::string answer;  // the central's 500 answer to it: the rejection's detail
  };
  struct Step {
    // Single records to quarantine now (reason kReason).
    std::vector<Quarantine> quarantine;
    // The round ended without proof: nothing quarantined, the uplink backs
    // off as after any failure and sends whole batches again.
    bool gave_up = false;
  };
  // The part was answered 200 (whatever its records' outcomes).
  Step part_accepted();
  // The part was answered 500; `answer` is the central's answer, kept as the
  // quarantine's detail.
  Step part_server_error(const std::string& answer);
  // The part was answered 413: it is halved (the uplink quarantines a single
  // record as too large itself: call part_done then).
  void part_too_large();
  // The part is finished with otherwise (a single record quarantined as too large).
  void part_done();

  // What the quarantined records carry: reason and detail.
  static constexpr const char* kReason = "server_error";

 private:
  Step finish_round_if_done();

  int server_errors_ = 0;  // 500s in a row for the whole batch at the head
  std::deque<UplinkBatch> parts_;
  std::vector<Quarantine> suspects_;  // 500 alone, not yet proven
  std::size_t singled_out_ = 0;       // suspects and quarantines this round
  bool proven_ = false;               // a part of this round was accepted
};

}  // namespace meter
