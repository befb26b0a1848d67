// Poison isolation (common/uplink/isolation.hpp): which parts of a batch the
// central answered 500 are sent, and which single records are quarantined.
// Pure: no SQLite, no network, no threads.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/uplink/isolation.hpp"

using namespace meter;

namespace {

// Raw events with these seqs after the watermark `from`, then measurements
// with these row ids.
UplinkBatch batch_of(const std::vector<std::int64_t>& seqs,
                     const std::vector<std::int64_t>& rows = {}, std::int64_t from = 0) {
  UplinkBatch batch;
  batch.raw_run_from = from;
  batch.through.raw_seq = from;
  for (auto seq : seqs) {
    UplinkRawEvent raw;
    raw.seq = seq;
    batch.raw_events.push_back(raw);
    batch.through.raw_seq = seq;
  }
  for (auto row : rows) {
    UplinkMeasurement m;
    m.row_id = row;
    m.measurement.event_id = "ev-" + std::to_string(row);
    batch.measurements.push_back(m);
    batch.through.measurement_id = row;
  }
  return batch;
}

std::vector<std::int64_t> seqs_of(const UplinkBatch& batch) {
  std::vector<std::int64_t> seqs;
  for (const auto& raw : batch.raw_events) seqs.push_back(raw.seq);
  return seqs;
}

// The central of a test: a part holding `poison` (a raw seq) gets a 500, the
// others are accepted. Runs a round to its end; returns the seqs quarantined
// and counts the requests in `requests`.
std::vector<std::int64_t> run_round(BatchIsolation& isolation,
                                    const std::vector<std::int64_t>& poison, int& requests,
                                    bool& gave_up) {
  std::vector<std::int64_t> quarantined;
  gave_up = false;
  while (isolation.active()) {
    ++requests;
    const auto seqs = seqs_of(isolation.next_part());
    bool fails = false;
    for (auto seq : seqs) {
      fails = fails || std::find(poison.begin(), poison.end(), seq) != poison.end();
    }
    const auto step =
        fails ? isolation.part_server_error("HTTP 500 internal_error") : isolation.part_accepted();
    for (const auto& q : step.quarantine) {
      REQUIRE(q.record.records() == 1);
      CHECK(q.answer == "HTTP 500 internal_error");
      quarantined.push_back(q.record.raw_events.at(0).seq);
    }
    gave_up = gave_up || step.gave_up;
  }
  return quarantined;
}

}  // namespace

TEST_CASE("a batch is halved in request order, each half with its own run of raw events",
          "[uplink_isolation]") {
  const auto batch = batch_of({11, 12, 13}, {4, 5}, 10);
  auto [first, second] = split_in_halves(batch);
  CHECK(seqs_of(first) == std::vector<std::int64_t>{11, 12, 13});
  CHECK(first.measurements.empty());
  CHECK(first.raw_run_from == 10);
  CHECK(first.through.raw_seq == 13);
  CHECK(first.limited);
  CHECK(second.raw_events.empty());
  CHECK(second.measurements.size() == 2);
  CHECK(second.raw_run_from == 13);  // where the first half's run ends
  CHECK(second.through.raw_seq == batch.through.raw_seq);
  CHECK(second.through.measurement_id == 5);

  // A raw event and a measurement: one record each (halving per array could not).
  auto [raw, measurement] = split_in_halves(batch_of({11}, {4}, 10));
  CHECK(raw.records() == 1);
  CHECK(raw.raw_events.size() == 1);
  CHECK(measurement.records() == 1);
  CHECK(measurement.measurements.size() == 1);

  auto [alone, nothing] = split_in_halves(batch_of({11}));
  CHECK(alone.records() == 1);
  CHECK(nothing.empty());
}

TEST_CASE("only the third 500 in a row for a batch of several records begins a round",
          "[uplink_isolation]") {
  BatchIsolation isolation;
  const auto batch = batch_of({1, 2, 3, 4});
  CHECK_FALSE(isolation.whole_answered(batch, true));
  CHECK_FALSE(isolation.whole_answered(batch, true));
  CHECK_FALSE(isolation.whole_answered(batch, false));  // a 503 or a timeout between: again
  CHECK_FALSE(isolation.whole_answered(batch, true));
  CHECK_FALSE(isolation.whole_answered(batch, true));
  CHECK_FALSE(isolation.active());
  CHECK(isolation.whole_answered(batch, true));
  REQUIRE(isolation.active());
  CHECK(seqs_of(isolation.next_part()) == std::vector<std::int64_t>{1, 2});

  // A single record is never split: nothing else waits behind it.
  BatchIsolation alone;
  for (int i = 0; i < 5; ++i) CHECK_FALSE(alone.whole_answered(batch_of({1}), true));
  CHECK_FALSE(alone.active());
}

TEST_CASE("a record that gets a 500 alone is quarantined once another part is accepted",
          "[uplink_isolation]") {
  for (std::int64_t poison : {1, 5, 8}) {
    CAPTURE(poison);
    BatchIsolation isolation;
    isolation.split_now(batch_of({1, 2, 3, 4, 5, 6, 7, 8}));
    int requests = 0;
    bool gave_up = false;
    CHECK(run_round(isolation, {poison}, requests, gave_up) == std::vector<std::int64_t>{poison});
    CHECK_FALSE(gave_up);
    CHECK(requests <= 7);  // 2 log2(8) + 1: a bisection, not one record at a time
  }
}

TEST_CASE("two poisoned records side by side are both quarantined", "[uplink_isolation]") {
  BatchIsolation isolation;
  isolation.split_now(batch_of({1, 2, 3, 4}));
  int requests = 0;
  bool gave_up = false;
  CHECK(run_round(isolation, {1, 2}, requests, gave_up) == std::vector<std::int64_t>{1, 2});
  CHECK_FALSE(gave_up);
}

TEST_CASE("a central that answers 500 to everything gets nothing quarantined",
          "[uplink_isolation]") {
  std::vector<std::int64_t> all;
  for (std::int64_t seq = 1; seq <= 1000; ++seq) all.push_back(seq);
  BatchIsolation isolation;
  isolation.split_now(batch_of(all));
  int requests = 0;
  bool gave_up = false;
  CHECK(run_round(isolation, all, requests, gave_up).empty());
  CHECK(gave_up);
  // Bounded: down to single records a few times, not every record alone.
  CHECK(requests < 40);

  // Two records, both failing: no proof either.
  BatchIsolation pair;
  pair.split_now(batch_of({1, 2}));
  CHECK(run_round(pair, {1, 2}, requests, gave_up).empty());
  CHECK(gave_up);
}

TEST_CASE("a 413 on a part halves it, and a part done otherwise ends the round",
          "[uplink_isolation]") {
  BatchIsolation isolation;
  isolation.split_now(batch_of({1, 2, 3, 4}));
  isolation.part_too_large();
  CHECK(seqs_of(isolation.next_part()) == std::vector<std::int64_t>{1});
  isolation.part_done();  // quarantined as too large by the uplink
  CHECK(isolation.part_accepted().quarantine.empty());
  CHECK(isolation.part_accepted().quarantine.empty());
  CHECK_FALSE(isolation.active());
}
