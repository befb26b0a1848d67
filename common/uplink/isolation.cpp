#include "common/uplink/isolation.hpp"

namespace meter {

std::pair<UplinkBatch, UplinkBatch> split_in_halves(const UplinkBatch& batch) {
  UplinkBatch first;
  UplinkBatch second;
  const std::size_t total = batch.records();
  const std::size_t cut = (total + 1) / 2;
  std::size_t index = 0;
  for (const auto& raw : batch.raw_events) {
    (index++ < cut ? first : second).raw_events.push_back(raw);
  }
  for (const auto& measurement : batch.measurements) {
    (index++ < cut ? first : second).measurements.push_back(measurement);
  }
  // Raw events at or below the run's start are requeued ones (they come
  // first); the run after it is cut where the first half's raw events end.
  first.raw_run_from = batch.raw_run_from;
  first.through.raw_seq = batch.raw_run_from;
  for (const auto& raw : first.raw_events) {
    if (raw.seq > batch.raw_run_from) first.through.raw_seq = raw.seq;
  }
  first.through.measurement_id = first.measurements.empty() ? 0 : first.measurements.back().row_id;
  first.limited = true;  // the second half comes after it
  second.raw_run_from = first.through.raw_seq;
  second.through = batch.through;
  second.limited = batch.limited;
  first.backlog_records = second.backlog_records = batch.backlog_records;
  first.oldest_received_ms = second.oldest_received_ms = batch.oldest_received_ms;
  return {std::move(first), std::move(second)};
}

IngestResponse reject_all(const UplinkBatch& batch, const std::string& reason,
                          const std::string& detail) {
  const RecordResult rejected{RecordOutcome::rejected, reason, detail};
  IngestResponse response;
  response.raw_events.assign(batch.raw_events.size(), rejected);
  response.measurements.assign(batch.measurements.size(), rejected);
  return response;
}

bool BatchIsolation::whole_answered(const UplinkBatch& batch, bool server_error) {
  if (!server_error) {
    server_errors_ = 0;
    return false;
  }
  if (++server_errors_ < kServerErrorsBeforeSplit || batch.records() < 2) return false;
  split_now(batch);
  return true;
}

void BatchIsolation::split_now(const UplinkBatch& batch) {
  server_errors_ = 0;
  parts_.clear();
  suspects_.clear();
  singled_out_ = 0;
  proven_ = false;
  auto [first, second] = split_in_halves(batch);
  parts_.push_back(std::move(first));
  if (!second.empty()) parts_.push_back(std::move(second));
}

BatchIsolation::Step BatchIsolation::part_accepted() {
  Step step;
  if (parts_.empty()) return step;
  parts_.pop_front();
  proven_ = true;
  step.quarantine = std::move(suspects_);
  suspects_.clear();
  auto rest = finish_round_if_done();
  step.gave_up = rest.gave_up;
  return step;
}

BatchIsolation::Step BatchIsolation::part_server_error(const std::string& answer) {
  Step step;
  if (parts_.empty()) return step;
  UplinkBatch part = std::move(parts_.front());
  parts_.pop_front();
  if (part.records() > 1) {
    auto [first, second] = split_in_halves(part);
    parts_.push_front(std::move(second));
    parts_.push_front(std::move(first));
    return step;
  }
  ++singled_out_;
  Quarantine suspect{std::move(part), answer};
  if (proven_) {
    step.quarantine.push_back(std::move(suspect));
  } else {
    suspects_.push_back(std::move(suspect));
  }
  if (singled_out_ >= kMaxSuspects && !parts_.empty()) {
    // Too many records answered 500 alone: more likely the central than the
    // records. Those not proven yet are sent again in whole batches later.
    parts_.clear();
    suspects_.clear();
    step.gave_up = true;
    return step;
  }
  step.gave_up = finish_round_if_done().gave_up;
  return step;
}

void BatchIsolation::part_too_large() {
  if (parts_.empty() || parts_.front().records() < 2) return;
  UplinkBatch part = std::move(parts_.front());
  parts_.pop_front();
  auto [first, second] = split_in_halves(part);
  parts_.push_front(std::move(second));
  parts_.push_front(std::move(first));
}

void BatchIsolation::part_done() {
  if (parts_.empty()) return;
  parts_.pop_front();
  finish_round_if_done();
}

BatchIsolation::Step BatchIsolation::finish_round_if_done() {
  Step step;
  if (!parts_.empty()) return step;
  // Every part answered. Suspects no accepted part vouched for: an outage
  // that answers 500 cannot be told from poison, so nothing is quarantined.
  step.gave_up = !suspects_.empty();
  suspects_.clear();
  return step;
}

}  // namespace meter
