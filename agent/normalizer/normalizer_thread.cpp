#include "agent/normalizer/normalizer_thread.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

namespace meter::agent {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kBuffer = "buffer";
constexpr std::string_view kNormalize = "normalize";

constexpr auto kStatusRefresh = 2s;
// The normalizer gathers messages this long after a pass before the next one
// (the normalization lag this adds at low rates), and checkpoints at most this
// often when no automatic checkpoint did.
constexpr auto kNormalizeGather = 250ms;
constexpr auto kCheckpointInterval = 10s;
constexpr int kNormalizerNice = 5;
// The normalizing connection's page cache: large while working through a
// backlog (batches touch a page per series), small at a gateway's pace, so
// the agent stays small (docs/BENCHMARKS.md: RSS with 1M measurements).
constexpr std::int64_t kLargePass = 1000;
constexpr std::int64_t kLargeCacheKib = 16384;
constexpr std::int64_t kSmallCacheKib = 2048;

}  // namespace

NormalizerThread::NormalizerThread(std::unique_ptr<Buffer> buffer, Shared shared)
    : buffer_(std::move(buffer)), shared_(std::move(shared)) {}

NormalizerThread::~NormalizerThread() {
  stop_ = true;
  work_ready_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NormalizerThread::start() {
  check_disk_budget();
  refresh_status();
  thread_ = std::thread([this] { loop(); });
  wake();
}

void NormalizerThread::wake() {
  {
    std::lock_guard lock(work_mutex_);
    if (work_pending_) return;
    work_pending_ = true;
  }
  work_ready_.notify_one();
}

void NormalizerThread::stop_and_drain() {
  stop_ = true;
  work_ready_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Everything acknowledged into the raw log, so offline commands see it.
  for (;;) {
    auto absorbed = buffer_->absorb_inbox(50000, true);
    if (!absorbed) {
      shared_.logger.warning(kBuffer,
                             "the inbox stays for the next start: " + absorbed.error().message);
      break;
    }
    note_absorbed(*absorbed);
    if (absorbed->messages == 0) break;
  }
  if (auto checkpointed = buffer_->checkpoint(); !checkpointed) {
    shared_.logger.warning(kBuffer, checkpointed.error().message);
  }
}

void NormalizerThread::note_absorbed(const AbsorbStats& absorbed) {
  shared_.progress.publish(absorbed.position);
  auto& metrics = shared_.metrics;
  metrics.raw_logged += absorbed.messages;
  if (absorbed.last_seq != 0) metrics.last_appended_seq = absorbed.last_seq;
  for (const auto& damaged : absorbed.damaged) {
    // The reason says which: a record cut short by a crash or power loss
    // (never acknowledged), or damage (a bad record followed by valid ones,
    // which stay in the kept file).
    shared_.logger.error(kBuffer,
                         "an inbox segment ends in a record that does not read: " + damaged);
  }
  for (const auto& problem : absorbed.problems) shared_.logger.warning(kBuffer, problem);
}

void NormalizerThread::check_disk_budget() {
  auto& budget = shared_.budget;
  const std::int64_t limit = budget.limit();
  std::int64_t used = 0;
  DiskBudget::Change change = DiskBudget::Change::none;
  if (limit == 0) {
    change = budget.record(0, 0);
  } else {
    const auto acknowledged = budget.acknowledged_bytes();
    auto measured =
        measure_budget_use(*buffer_, shared_.progress.absorbed(), limit, shared_.logger);
    if (!measured) {
      shared_.logger.warning(kBuffer, measured.error().message);
      return;
    }
    used = *measured;
    change = budget.record(used, acknowledged);
  }
  shared_.metrics.buffer_used_bytes = used;
  if (change == DiskBudget::Change::reached) {
    shared_.logger.error(kBuffer, "the buffer reached its disk budget (" + std::to_string(used) +
                                      " of " + std::to_string(limit) +
                                      " bytes): NOT acknowledging MQTT messages; the broker "
                                      "keeps them. Nothing unconfirmed is deleted.");
  } else if (change == DiskBudget::Change::below_again) {
    shared_.logger.warning(kBuffer, "the buffer is below its disk budget again (" +
                                        std::to_string(used) + " of " + std::to_string(limit) +
                                        " bytes): acknowledging again");
  }
  shared_.metrics.over_budget = budget.over();
}

void NormalizerThread::refresh_status() {
  auto status = buffer_->status();
  if (status) {
    shared_.metrics.set_buffer_status(*status);
  } else {
    shared_.logger.warning(kBuffer, "cannot read the buffer status: " + status.error().message);
  }
}

void NormalizerThread::loop() {
  auto& logger = shared_.logger;
  auto& metrics = shared_.metrics;
  const Clock& clock = shared_.clock;
  // Behind the acknowledge path and the broker when the CPU is short: a
  // backlog here only delays normalization, a slow acknowledgement delays
  // every meter. (Lowering one's own priority needs no privilege.)
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNormalizerNice) != 0) {
    logger.debug(kNormalize, "cannot lower the normalizer's priority");
  }
  Buffer& buffer = *buffer_;
  std::int64_t applied_cap = 0;
  const Config* roles_applied_for = nullptr;  // the config set_local_only_metrics last saw
  auto last_refresh = std::chrono::steady_clock::time_point{};
  std::chrono::milliseconds failure_delay = 100ms;
  bool failing = false;
  bool status_stale = true;
  auto last_pass_end = std::chrono::steady_clock::time_point{};
  auto last_checkpoint = clock.steady_now();
  bool checkpoint_due = false;
  bool large_cache = true;  // normalize_pending tunes a fresh connection for batches
  // The systemd watchdog pings only while this loop beats within half its
  // interval (60 s in the unit; far shorter in tests): no wait may be longer
  // than a quarter of it.
  const auto watchdog =
      std::chrono::duration_cast<std::chrono::milliseconds>(shared_.watchdog_interval);
  const auto within_watchdog = [&](std::chrono::milliseconds wait) {
    return watchdog.count() > 0 ? std::min(wait, std::max(watchdog / 4, 10ms)) : wait;
  };
  while (!stop_) {
    {
      std::unique_lock lock(work_mutex_);
      const std::chrono::milliseconds timeout = failing        ? failure_delay
                                                : status_stale ? 1000ms
                                                               : 2000ms;
      work_ready_.wait_for(lock, within_watchdog(timeout),
                           [&] { return work_pending_ || stop_.load(); });
      // At a gateway's pace (a reading every few ms or slower) every message
      // would wake a pass of two transactions: gather them for a moment
      // instead. Under load the passes below run back to back anyway.
      if (work_pending_) {
        work_ready_.wait_until(lock, last_pass_end + within_watchdog(kNormalizeGather),
                               [&] { return stop_.load(); });
      }
      work_pending_ = false;
    }
    heartbeat_.beat();  // waiting is not being stuck
    bool did_work = false;
    while (!stop_) {
      heartbeat_.beat();
      const auto cap = shared_.max_page_count.load();
      if (cap != applied_cap) {
        (void)buffer.set_max_page_count(cap != 0 ? cap : 4294967294LL);
        applied_cap = cap;
      }
      const auto current = shared_.config();
      auto absorbed = buffer.absorb_inbox(current->normalize.batch_size, true);
      if (!absorbed) {
        ++metrics.normalize_failures;
        logger.error(kBuffer,
                     "cannot move acknowledged messages from the inbox into the raw "
                     "log, will retry: " +
                         absorbed.error().message);
        failing = true;
        failure_delay = std::min<std::chrono::milliseconds>(failure_delay * 2, 5000ms);
        break;
      }
      note_absorbed(*absorbed);
      if (absorbed->messages >= kLargePass && !large_cache) {
        (void)buffer.set_cache_kib(kLargeCacheKib);
        large_cache = true;
      }
      if (current.get() != roles_applied_for) {
        // Before normalizing under a config (the first, or a reload's): the
        // series of metrics with a role are kept local.
        if (auto roles = buffer.set_local_only_metrics(*current); !roles) {
          ++metrics.normalize_failures;
          logger.error(kNormalize, "cannot record the metrics with a role, will retry: " +
                                       roles.error().message);
          failing = true;
          failure_delay = std::min<std::chrono::milliseconds>(failure_delay * 2, 5000ms);
          break;
        }
        roles_applied_for = current.get();
      }
      auto stats = buffer.normalize_pending(*current, current->normalize.batch_size);
      if (!stats) {
        ++metrics.normalize_failures;
        logger.error(kNormalize, "normalization failed, will retry: " + stats.error().message);
        failing = true;
        failure_delay = std::min<std::chrono::milliseconds>(failure_delay * 2, 5000ms);
        break;
      }
      if (failing) logger.info(kNormalize, "normalization works again");
      failing = false;
      failure_delay = 100ms;
      metrics.add(*stats);
      // After every pass, not only once caught up: under a steady inflow (a
      // broker replaying its queue, a burst) this loop does not go idle, and
      // the buffer would grow past its budget unchecked.
      check_disk_budget();
      if (stats->messages == 0 && absorbed->messages == 0) break;
      did_work = true;
      logger.debug(kNormalize, "normalized " + std::to_string(stats->messages) +
                                   " messages: " + std::to_string(stats->new_measurements) +
                                   " new, " + std::to_string(stats->duplicates) + " duplicates");
    }
    if (large_cache && did_work) {
      // Caught up after a backlog: a gateway's steady pace needs a small
      // cache; give the memory back (glibc keeps freed small blocks).
      (void)buffer.set_cache_kib(kSmallCacheKib);
      ::malloc_trim(0);
      large_cache = false;
    }
    // The condition variable waits above run on the steady clock itself;
    // the intervals below follow the injected one.
    last_pass_end = std::chrono::steady_clock::now();
    const auto now = clock.steady_now();
    checkpoint_due = checkpoint_due || did_work;
    if (checkpoint_due && now - last_checkpoint >= kCheckpointInterval) {
      // Only this connection writes the database (the acknowledge path writes
      // the inbox), and its automatic checkpoints follow a busy stretch; this
      // one keeps the WAL short after a quiet one.
      if (auto checkpointed = buffer.checkpoint(); checkpointed) {
        ++metrics.checkpoints;
      } else {
        logger.warning(kBuffer, "checkpoint failed: " + checkpointed.error().message);
      }
      last_checkpoint = now;
      checkpoint_due = false;
    }
    check_disk_budget();
    // The status (for /metrics) costs a few cheap queries (counts kept by
    // triggers): at most every second while busy, and once more when done.
    status_stale = status_stale || did_work;
    if ((status_stale && now - last_refresh >= 1s) || now - last_refresh >= kStatusRefresh) {
      refresh_status();
      last_refresh = now;
      status_stale = false;
    }
  }
  refresh_status();
}

}  // namespace meter::agent
