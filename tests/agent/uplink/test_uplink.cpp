// The uplink stage (agent/uplink/uplink.cpp) with a real buffer, a scripted
// fake transport injected through its transport factory, and a fake clock
// whose time passes only when a test advances it: what the buffer holds after
// each answer (confirmed, quarantined, still waiting), what the next request
// carries, and how long the uplink waits before it. Threaded (the uplink runs
// its own thread): tagged [daemon], like every test that starts one.
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/cli/uplink_commands.hpp"
#include "agent/ops/log.hpp"
#include "agent/uplink/uplink.hpp"
#include "common/buffer/sqlite.hpp"
#include "support/buffer_fixture.hpp"
#include "support/gunzip.hpp"

using namespace meter;
using namespace meter::agent;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

// How long a test waits for the uplink thread to get somewhere before it fails.
constexpr auto kPatience = 20s;

// Time passes only in advance(). A wait of the uplink blocks until its
// deadline is reached that way, or it is woken (stop, reload).
class FakeClock final : public UplinkClock {
 public:
  std::int64_t now_ms() const override {
    std::lock_guard lock(mutex_);
    return wall_ms_;
  }
  SteadyTime steady_now() const override {
    std::lock_guard lock(mutex_);
    return steady_;
  }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& wake,
                  SteadyTime deadline, const std::function<bool()>& done) override {
    {
      std::lock_guard guard(mutex_);
      waiter_mutex_ = lock.mutex();
      waiter_wake_ = &wake;
      waits_.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_));
      waiting_ = true;
    }
    changed_.notify_all();
    wake.wait(lock, [&] { return done() || steady_now() >= deadline; });
    {
      std::lock_guard guard(mutex_);
      waiting_ = false;
    }
    changed_.notify_all();
  }

  void advance(std::chrono::milliseconds by) {
    std::mutex* waiter_mutex = nullptr;
    std::condition_variable* waiter_wake = nullptr;
    {
      std::lock_guard lock(mutex_);
      steady_ += by;
      wall_ms_ += by.count();
      waiter_mutex = waiter_mutex_;
      waiter_wake = waiter_wake_;
    }
    if (waiter_mutex == nullptr) return;
    // Taking the waiter's mutex orders this after its last look at the time:
    // it is either blocked now (and woken below) or has not looked yet.
    { std::lock_guard order(*waiter_mutex); }
    waiter_wake->notify_all();
  }

  // Blocks until the uplink has begun its `count`-th wait (1: the first) and
  // is in it; returns how long that wait is for.
  std::chrono::milliseconds await_wait(std::size_t count) {
    std::unique_lock lock(mutex_);
    const bool reached =
        changed_.wait_for(lock, kPatience, [&] { return waits_.size() >= count && waiting_; });
    if (!reached) FAIL("the uplink did not begin wait " << count << " (" << waits_.size() << ")");
    return waits_[count - 1];
  }
  std::size_t waits() {
    std::lock_guard lock(mutex_);
    return waits_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::int64_t wall_ms_ = 1735689600000;  // 2025-01-01
  SteadyTime steady_ = SteadyTime{} + 1000h;
  std::mutex* waiter_mutex_ = nullptr;
  std::condition_variable* waiter_wake_ = nullptr;
  std::vector<std::chrono::milliseconds> waits_;
  bool waiting_ = false;
};

// What one request carried.
struct Sent {
  nlohmann::json body;
  std::string token;
  std::vector<std::int64_t> raw_seqs() const {
    std::vector<std::int64_t> seqs;
    for (const auto& raw : body["raw_events"]) seqs.push_back(raw["seq"].get<std::int64_t>());
    return seqs;
  }
  std::size_t measurements() const { return body["measurements"].size(); }
};

using Responder = std::function<HttpAnswer(const nlohmann::json& request)>;

// The central's side of the conversation, one answer per request in order. A
// request with no answer scripted yet waits for one (or for the shutdown).
class Script {
 public:
  void then(Responder responder) {
    {
      std::lock_guard lock(mutex_);
      answers_.push_back(std::move(responder));
    }
    changed_.notify_all();
  }

  HttpAnswer post(const HttpPost& request) {
    std::string body = request.body;
    if (request.gzip) body = *testing::gunzip(body, 64 << 20);
    std::unique_lock lock(mutex_);
    sent_.push_back(Sent{nlohmann::json::parse(body), request.bearer_token});
    changed_.notify_all();
    // The uplink's shutdown sets `abort` without telling us: looked at often.
    while (answers_.empty()) {
      if (request.abort != nullptr && request.abort->load()) {
        HttpAnswer aborted;
        aborted.transport_error = "aborted";
        return aborted;
      }
      changed_.wait_for(lock, 10ms);
    }
    auto responder = std::move(answers_.front());
    answers_.pop_front();
    return responder(sent_.back().body);
  }

  // Blocks until `count` requests were sent; returns the `count`-th.
  Sent await_request(std::size_t count) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, kPatience, [&] { return sent_.size() >= count; })) {
      FAIL("request " << count << " was not sent (" << sent_.size() << ")");
    }
    return sent_[count - 1];
  }
  std::size_t requests() {
    std::lock_guard lock(mutex_);
    return sent_.size();
  }
  std::vector<Sent> sent() {
    std::lock_guard lock(mutex_);
    return sent_;
  }
  std::size_t unanswered() {
    std::lock_guard lock(mutex_);
    return answers_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Responder> answers_;
  std::vector<Sent> sent_;
};

class ScriptedTransport final : public HttpTransport {
 public:
  explicit ScriptedTransport(Script& script) : script_(script) {}
  HttpAnswer post(const HttpPost& request) override { return script_.post(request); }

 private:
  Script& script_;
};

// ---- answers ------------------------------------------------------------------

HttpAnswer status(long code, std::optional<std::int64_t> retry_after_ms = std::nullopt,
                  std::string body = "") {
  HttpAnswer answer;
  answer.status = code;
  answer.retry_after_ms = retry_after_ms;
  answer.body = std::move(body);
  return answer;
}

// A 200 whose outcome for each measurement `decide` names ("stored",
// "rejected", or "" for none); every raw event stored.
Responder answer_200(std::function<std::string(std::size_t index)> decide) {
  return [decide](const nlohmann::json& request) {
    // A central answers in the version it was sent (docs/PROTOCOL.md).
    nlohmann::json response{{"protocol_version", request["protocol_version"]},
                            {"raw_events", nlohmann::json::array()},
                            {"measurements", nlohmann::json::array()}};
    for (std::size_t i = 0; i < request["raw_events"].size(); ++i) {
      response["raw_events"].push_back(
          {{"index", i}, {"seq", request["raw_events"][i]["seq"]}, {"outcome", "stored"}});
    }
    for (std::size_t i = 0; i < request["measurements"].size(); ++i) {
      const auto outcome = decide(i);
      if (outcome.empty()) continue;
      nlohmann::json entry{{"index", i},
                           {"event_id", request["measurements"][i]["event_id"]},
                           {"revision", request["measurements"][i]["revision"]},
                           {"outcome", outcome}};
      if (outcome == "rejected") {
        entry["reason"] = "value_out_of_range";
        entry["detail"] = "negative energy";
      }
      response["measurements"].push_back(entry);
    }
    return status(200, std::nullopt, response.dump());
  };
}

Responder confirm_all() {
  return answer_200([](std::size_t) { return std::string("stored"); });
}

Responder just(HttpAnswer answer) {
  return [answer](const nlohmann::json&) { return answer; };
}

// ---- the rig ------------------------------------------------------------------

const std::string kUplinkConfig = R"(
normalize:
  clock: synchronized
uplink:
  url: https://central.test
  token_file: replaced-by-the-rig
  max_in_flight: 1
  gzip_level: 0
  retry:
    min: 1s
    max: 5m
  auth_retry: 10m
  interval: 1s
)";

// A buffer with readings, and the uplink over it (started by start()).
class Rig {
 public:
  // `change`: settings beyond kUplinkConfig's.
  explicit Rig(const std::function<void(Config&)>& change = {})
      : fixture_(kSeedConfig + kUplinkConfig) {
    const auto token = fixture_.dir().file("token");
    std::ofstream(token) << "secret-token\n";
    ::chmod(token.c_str(), 0600);
    fixture_.config().uplink.token_file = token;
    if (change) change(fixture_.config());
    config_ = std::make_shared<const Config>(fixture_.config());
  }
  ~Rig() {
    if (uplink_) uplink_->stop();
  }

  // `count` m1 energy readings an hour apart, normalized.
  void add_readings(int count, int from = 0) {
    for (int i = from; i < from + count; ++i) {
      const std::string hour = (i < 10 ? "0" : "") + std::to_string(i);
      fixture_.append(seed_payload("m1", "2024-01-01T" + hour + ":00:00Z", "energy",
                                   std::to_string(i + 1), "kWh"));
    }
    fixture_.normalize();
  }

  void start() {
    auto clock = std::make_unique<FakeClock>();
    clock_ = clock.get();
    uplink_ = std::make_unique<Uplink>(
        [this] {
          std::lock_guard lock(config_mutex_);
          return config_;
        },
        logger_,
        [this](const UplinkConfig&) {
          ++transports_built_;
          return std::make_unique<ScriptedTransport>(script_);
        },
        std::move(clock));
    auto started = uplink_->start(fixture_.config().buffer);
    if (!started) FAIL("the uplink did not start: " << started.error().message);
  }

  // A reload: `change` applied to a copy of the config, then swapped in.
  void reload(const std::function<void(Config&)>& change = {}) {
    {
      std::lock_guard lock(config_mutex_);
      auto next = *config_;
      if (change) change(next);
      config_ = std::make_shared<const Config>(std::move(next));
    }
    uplink_->reloaded();
  }

  SyncStatus sync_status() {
    auto status = fixture_.buffer().sync_status();
    if (!status) FAIL("sync_status: " << status.error().message);
    return *status;
  }

  Script& script() { return script_; }
  FakeClock& clock() { return *clock_; }
  const UplinkMetrics& metrics() { return uplink_->metrics(); }
  BufferFixture& fixture() { return fixture_; }
  int transports_built() const { return transports_built_; }
  std::string log() const { return log_.str(); }

 private:
  BufferFixture fixture_;
  std::ostringstream log_;
  Logger logger_{log_, false};
  std::mutex config_mutex_;
  std::shared_ptr<const Config> config_;
  Script script_;
  std::atomic<int> transports_built_{0};
  FakeClock* clock_ = nullptr;  // owned by uplink_
  std::unique_ptr<Uplink> uplink_;
};

}  // namespace

TEST_CASE("a 200 confirms what it names, quarantines what it rejects, resends the rest",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(3);
  // Measurement 0 stored, 1 rejected, 2 not answered.
  rig.script().then(answer_200([](std::size_t i) {
    return std::string(i == 0 ? "stored" : i == 1 ? "rejected" : "");
  }));
  rig.start();
  const auto first = rig.script().await_request(1);
  CHECK(first.raw_seqs() == std::vector<std::int64_t>{1, 2, 3});
  CHECK(first.measurements() == 3);
  CHECK(first.token == "secret-token");
  // Something was left unanswered: the uplink waits its interval, then resends.
  CHECK(rig.clock().await_wait(1) == 1s);
  auto status = rig.sync_status();
  CHECK(status.raw_waiting == 0);
  CHECK(status.measurements_waiting == 1);
  CHECK(status.quarantined == 1);
  CHECK(status.quarantined_by_reason.at("value_out_of_range") == 1);
  CHECK(rig.metrics().rejected == 1);
  CHECK(rig.metrics().missing == 1);
  CHECK(rig.metrics().measurements_confirmed == 1);
  CHECK(rig.metrics().raw_confirmed == 3);

  rig.script().then(confirm_all());
  rig.clock().advance(1s);
  const auto second = rig.script().await_request(2);
  CHECK(second.raw_seqs().empty());
  REQUIRE(second.measurements() == 1);  // only the unanswered one
  CHECK(second.body["measurements"][0]["event_id"] == first.body["measurements"][2]["event_id"]);
  rig.clock().await_wait(2);
  status = rig.sync_status();
  CHECK(status.waiting() == 0);
  CHECK(status.quarantined == 1);
  CHECK(rig.metrics().consecutive_failures == 0);
  CHECK(rig.metrics().request_failures == 0);
}

TEST_CASE("a 413 halves the next batch, which grows back after a success", "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(4);
  rig.script().then(
      just(status(413, std::nullopt, R"({"protocol_version":"1","error":"payload_too_large"})")));
  for (int i = 0; i < 4; ++i) rig.script().then(confirm_all());
  rig.start();
  const auto whole = rig.script().await_request(1);
  CHECK(whole.raw_seqs().size() == 4);
  CHECK(whole.measurements() == 4);
  // At once (no backoff): half as many records per array.
  const auto half = rig.script().await_request(2);
  CHECK(half.raw_seqs() == std::vector<std::int64_t>{1, 2});
  CHECK(half.measurements() == 2);
  const auto rest = rig.script().await_request(3);
  CHECK(rest.raw_seqs() == std::vector<std::int64_t>{3, 4});
  CHECK(rest.measurements() == 2);
  CHECK(rig.clock().await_wait(1) == 1s);  // idle: everything confirmed
  CHECK(rig.clock().waits() == 1);         // no backoff on the way
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.metrics().splits == 1);
  CHECK(rig.metrics().rejected == 0);

  // Grown back to the configured size: 3 new readings go in one request.
  rig.add_readings(3, 4);
  rig.clock().advance(1s);
  const auto grown = rig.script().await_request(4);
  CHECK(grown.raw_seqs() == std::vector<std::int64_t>{5, 6, 7});
  CHECK(grown.measurements() == 3);
}

TEST_CASE("a 413 for a single record quarantines it and goes on", "[daemon][uplink]") {
  Rig rig;
  rig.fixture().append("this is not json");  // a raw event alone: no measurement
  rig.fixture().normalize();
  rig.script().then(just(status(413, std::nullopt,
                                R"({"protocol_version":"1","error":"payload_too_large",)"
                                R"("detail":"over the limit"})")));
  rig.start();
  CHECK(rig.script().await_request(1).raw_seqs() == std::vector<std::int64_t>{1});
  CHECK(rig.clock().await_wait(1) == 1s);
  const auto status = rig.sync_status();
  CHECK(status.waiting() == 0);
  CHECK(status.quarantined == 1);
  CHECK(status.quarantined_by_reason.at("payload_too_large") == 1);
  CHECK(rig.metrics().rejected == 1);
  CHECK(rig.script().requests() == 1);
}

TEST_CASE("401 stops uploads until uplink.auth_retry passes or a reload", "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(2);
  rig.script().then(
      just(status(401, std::nullopt, R"({"protocol_version":"1","error":"unauthorized"})")));
  rig.start();
  rig.script().await_request(1);
  CHECK(rig.clock().await_wait(1) == 10min);
  CHECK(rig.metrics().auth_failed);
  CHECK(rig.metrics().last_error() == "HTTP 401 unauthorized");
  CHECK(rig.sync_status().waiting() == 4);  // nothing lost

  // uplink.auth_retry later it tries again, and is refused again (403 too).
  rig.script().then(just(status(403)));
  rig.clock().advance(10min);
  rig.script().await_request(2);
  CHECK(rig.clock().await_wait(2) == 10min);
  CHECK(rig.metrics().auth_failed);

  // A reload (a new token) ends the wait at once: no time passes here.
  rig.script().then(confirm_all());
  rig.reload();
  rig.script().await_request(3);
  rig.clock().await_wait(3);
  CHECK_FALSE(rig.metrics().auth_failed);
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.script().requests() == 3);
}

TEST_CASE("a token that cannot be read stops uploads before any request", "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(1);
  std::filesystem::remove(rig.fixture().config().uplink.token_file);
  rig.start();
  CHECK(rig.clock().await_wait(1) == 10min);
  CHECK(rig.metrics().auth_failed);
  CHECK(rig.metrics().last_error().find("cannot read uplink.token_file") == 0);
  CHECK(rig.script().requests() == 0);
}

TEST_CASE("Retry-After delays the next try, and the backoff grows while failures go on",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(2);
  rig.script().then(just(status(503, 120000)));
  rig.start();
  rig.script().await_request(1);
  // Retry-After (120 s) is longer than the first backoff (0.5 to 1 s).
  CHECK(rig.clock().await_wait(1) == 120s);
  rig.clock().advance(119s);
  CHECK(rig.script().requests() == 1);

  // Connection refused, then a 200 the agent cannot read: the backoff doubles.
  HttpAnswer refused;
  refused.transport_error = "Couldn't connect to server";
  rig.script().then(just(refused));
  rig.clock().advance(1s);
  rig.script().await_request(2);
  const auto second = rig.clock().await_wait(2);
  CHECK(second >= 1s);  // the second failure in a row: from [1 s, 2 s]
  CHECK(second <= 2s);
  CHECK(rig.metrics().consecutive_failures == 2);
  CHECK(rig.metrics().last_error() ==
        "cannot reach https://central.test/api/v1/ingest: Couldn't connect to server");

  rig.script().then(just(status(200, std::nullopt, "<html>captive portal</html>")));
  rig.clock().advance(second);
  rig.script().await_request(3);
  const auto third = rig.clock().await_wait(3);
  CHECK(third >= 2s);
  CHECK(third <= 4s);
  CHECK(rig.sync_status().waiting() == 4);  // nothing confirmed by any of them

  rig.script().then(confirm_all());
  rig.clock().advance(third);
  rig.script().await_request(4);
  CHECK(rig.clock().await_wait(4) == 1s);
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.metrics().consecutive_failures == 0);
  CHECK(rig.metrics().request_failures == 3);
}

TEST_CASE("a refused batch (other 4xx) waits the longest backoff, nothing dropped",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(1);
  rig.script().then(
      just(status(422, std::nullopt, R"({"protocol_version":"1","error":"invalid_envelope"})")));
  rig.start();
  rig.script().await_request(1);
  const auto wait = rig.clock().await_wait(1);
  CHECK(wait >= 150s);  // [retry.max / 2, retry.max]
  CHECK(wait <= 5min);
  CHECK(rig.sync_status().waiting() == 2);
  CHECK(rig.sync_status().quarantined == 0);
  CHECK(rig.log().find("refused a whole batch as invalid") != std::string::npos);
}

TEST_CASE("new uplink settings build new transports, the same settings keep them",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(1);
  rig.script().then(confirm_all());
  rig.start();
  rig.script().await_request(1);
  rig.clock().await_wait(1);
  CHECK(rig.transports_built() == 1);

  rig.add_readings(1, 1);
  rig.script().then(confirm_all());
  rig.reload();  // nothing changed
  rig.script().await_request(2);
  rig.clock().await_wait(2);
  CHECK(rig.transports_built() == 1);

  rig.add_readings(1, 2);
  rig.script().then(confirm_all());
  rig.reload([](Config& c) { c.uplink.timeout_ms = 5000; });
  rig.script().await_request(3);
  rig.clock().await_wait(3);
  CHECK(rig.transports_built() == 2);
  CHECK(rig.sync_status().waiting() == 0);
}

TEST_CASE("with requests in flight, one behind a failed request still confirms its records",
          "[daemon][uplink]") {
  Rig rig([](Config& c) {
    c.uplink.max_in_flight = 2;
    c.uplink.batch_max_records = 2;
  });
  rig.add_readings(4);
  // Whichever arrives first: the batch starting at raw seq 1 fails, the other passes.
  const Responder first_fails = [](const nlohmann::json& request) {
    if (request["raw_events"][0]["seq"] == 1) return status(503);
    return confirm_all()(request);
  };
  rig.script().then(first_fails);
  rig.script().then(first_fails);
  rig.start();
  rig.script().await_request(2);
  const auto wait = rig.clock().await_wait(1);
  CHECK(wait >= 500ms);  // the first failure: from [retry.min / 2, retry.min]
  CHECK(wait <= 1s);
  CHECK(rig.sync_status().measurements_waiting == 2);  // the failed batch's two
  CHECK(rig.metrics().measurements_confirmed == 2);
  CHECK(rig.metrics().consecutive_failures == 1);
  CHECK(rig.metrics().request_failures == 1);

  // The retry starts from the watermark again and sends what is left.
  rig.script().then(confirm_all());
  rig.script().then(confirm_all());
  rig.clock().advance(wait);
  CHECK(rig.clock().await_wait(2) == 1s);  // idle again
  // Two in flight again: their arrival order is the threads'.
  const auto sent = rig.script().sent();
  REQUIRE(sent.size() >= 3);
  CHECK(std::any_of(sent.begin() + 2, sent.end(), [](const Sent& request) {
    return request.raw_seqs() == std::vector<std::int64_t>{1, 2} && request.measurements() == 2;
  }));
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.metrics().consecutive_failures == 0);
}

// ---- protocol version 2, and the fallback to 1 -----------------------------------

namespace {

// A central that speaks only version 1: what it answers a version 2 request.
HttpAnswer version1_only() {
  return status(400, std::nullopt,
                R"({"protocol_version":"1","error":"unsupported_protocol_version",)"
                R"("detail":"protocol_version must be \"1\""})");
}

// Gives the measurement at `timestamp` a version 2 flag, as the series engine
// would (a glitch: no delta).
void flag_glitch(Rig& rig, const std::string& timestamp) {
  sqlite::Database db(rig.fixture().config().buffer.path);
  auto update = db.prepare(
      "UPDATE measurements SET flags = flags | ?1, delta = NULL, delta_from_ms = NULL, "
      "revision = revision + 1 WHERE timestamp_ms = ?2");
  update.bind(1, static_cast<std::int64_t>(flag_bit(Flag::glitch)))
      .bind(2, parse_timestamp(timestamp, TimestampFormat::rfc3339)->ms)
      .run();
  REQUIRE(db.changes() == 1);
}

std::string uplink_status(Rig& rig, bool as_json) {
  std::string out;
  std::ostringstream err;
  REQUIRE(append_uplink_status(rig.fixture().buffer(), rig.fixture().config(), as_json, out, err));
  return out;
}

}  // namespace

TEST_CASE("requests are version 2 and carry delta_from", "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(2);
  {
    // What the series engine records for the second reading's delta.
    sqlite::Database db(rig.fixture().config().buffer.path);
    db.exec("UPDATE measurements SET delta_from_ms = 1704067200000 WHERE delta IS NOT NULL");
  }
  rig.script().then(confirm_all());
  rig.start();
  const auto sent = rig.script().await_request(1);
  CHECK(sent.body["protocol_version"] == "2");
  REQUIRE(sent.measurements() == 2);
  CHECK(sent.body["measurements"][0]["delta_from"].is_null());
  CHECK(sent.body["measurements"][1]["delta_from"] == "2024-01-01T00:00:00.000Z");
  rig.clock().await_wait(1);
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.metrics().protocol_version == 2);
  CHECK(uplink_status(rig, false).find("protocol        2\n") != std::string::npos);
}

TEST_CASE("a central that speaks only protocol 1 gets what 1 carries, the rest is held",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(3);
  flag_glitch(rig, "2024-01-01T01:00:00Z");
  rig.script().then(just(version1_only()));
  rig.script().then(confirm_all());
  rig.start();
  const auto refused = rig.script().await_request(1);
  CHECK(refused.body["protocol_version"] == "2");
  CHECK(refused.measurements() == 3);
  // At once, no backoff: version 1, without the glitch and without delta_from.
  const auto fallback = rig.script().await_request(2);
  CHECK(fallback.body["protocol_version"] == "1");
  CHECK(fallback.raw_seqs() == std::vector<std::int64_t>{1, 2, 3});
  REQUIRE(fallback.measurements() == 2);
  for (const auto& m : fallback.body["measurements"]) {
    CHECK(m["timestamp"] != "2024-01-01T01:00:00.000Z");
    CHECK_FALSE(m.contains("delta_from"));
  }
  CHECK(rig.clock().await_wait(1) == 1s);  // idle, not backing off
  auto status = rig.sync_status();
  CHECK(status.raw_waiting == 0);
  CHECK(status.measurements_waiting == 1);  // held: waiting, not quarantined
  CHECK(status.quarantined == 0);
  CHECK(rig.metrics().protocol_version == 1);
  CHECK(rig.metrics().held == 1);
  CHECK(rig.log().find("central speaks protocol 1: 1 measurements held until it is upgraded") !=
        std::string::npos);
  CHECK(uplink_status(rig, false)
            .find("protocol        1 (central speaks protocol 1: 1 "
                  "measurements held until it is upgraded)") != std::string::npos);
  const auto json = nlohmann::json::parse(uplink_status(rig, true));
  CHECK(json["protocol_version"] == "1");
  CHECK(json["held_measurements"] == 1);

  // Pruning keeps it, whatever its age.
  auto pruned = rig.fixture().buffer().prune_synced(std::numeric_limits<std::int64_t>::max(), 0);
  REQUIRE(pruned);
  CHECK(rig.sync_status().measurements_waiting == 1);
  CHECK(rig.fixture().measurements().size() == 2);  // the held one and the newest confirmed

  // Idle in version 1: nothing it can carry is waiting, so nothing is sent.
  rig.clock().advance(1s);
  rig.clock().await_wait(2);
  CHECK(rig.script().requests() == 2);

  // A reload asks with version 2 at once; the upgraded central takes the held one.
  rig.script().then(confirm_all());
  rig.reload();
  const auto probe = rig.script().await_request(3);
  CHECK(probe.body["protocol_version"] == "2");
  REQUIRE(probe.measurements() == 1);
  CHECK(probe.body["measurements"][0]["flags"] == nlohmann::json::array({"glitch"}));
  rig.clock().await_wait(3);
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.metrics().protocol_version == 2);
  CHECK(rig.metrics().held == 0);
  CHECK(rig.log().find("the central speaks protocol 2 now") != std::string::npos);
}

TEST_CASE("after a fallback, protocol 2 is asked again every 10 minutes", "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(2);
  flag_glitch(rig, "2024-01-01T01:00:00Z");
  rig.script().then(just(version1_only()));
  rig.script().then(confirm_all());
  rig.start();
  rig.script().await_request(2);
  CHECK(rig.clock().await_wait(1) == 1s);
  CHECK(rig.metrics().held == 1);

  // Not before 10 minutes: idle polls send nothing.
  rig.clock().advance(9min);
  rig.clock().await_wait(2);
  CHECK(rig.script().requests() == 2);
  // Then version 2 again; still refused: back to 1, quietly, and 10 more minutes.
  rig.script().then(just(version1_only()));
  rig.clock().advance(1min);
  const auto probe = rig.script().await_request(3);
  CHECK(probe.body["protocol_version"] == "2");
  CHECK(rig.clock().await_wait(3) == 1s);
  CHECK(rig.metrics().protocol_version == 1);
  CHECK(rig.metrics().held == 1);
  CHECK(rig.log().find("the central still speaks protocol 1: 1 measurements held") !=
        std::string::npos);
  CHECK(rig.sync_status().measurements_waiting == 1);
  CHECK(rig.sync_status().quarantined == 0);
  // The next one after another 10 minutes, and the central has been upgraded.
  rig.script().then(confirm_all());
  rig.clock().advance(10min);
  CHECK(rig.script().await_request(4).body["protocol_version"] == "2");
  rig.clock().await_wait(4);
  CHECK(rig.sync_status().waiting() == 0);
}

// ---- poison isolation ------------------------------------------------------------

namespace {

bool carries_raw(const nlohmann::json& request, std::int64_t seq) {
  for (const auto& raw : request["raw_events"]) {
    if (raw["seq"] == seq) return true;
  }
  return false;
}

// The central of the poison: a 500 for any request carrying raw event `seq`
// (what an uncaught exception on one record looks like), a 200 for the rest.
Responder fails_on_raw(std::int64_t seq) {
  return [seq](const nlohmann::json& request) {
    if (carries_raw(request, seq)) {
      return status(500, std::nullopt,
                    R"({"protocol_version":"1","error":"internal_error",)"
                    R"("detail":"RecursionError"})");
    }
    return confirm_all()(request);
  };
}

std::size_t records(const Sent& sent) { return sent.raw_seqs().size() + sent.measurements(); }

}  // namespace

TEST_CASE("a record the central answers 500 to is isolated and quarantined, the rest flows on",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(4);  // raw events 1-4 and their 4 measurements
  for (int i = 0; i < 30; ++i) rig.script().then(fails_on_raw(1));
  rig.start();
  // Twice a 500 for the whole batch: an outage, for all the agent knows.
  CHECK(records(rig.script().await_request(1)) == 8);
  rig.clock().advance(rig.clock().await_wait(1));
  CHECK(records(rig.script().await_request(2)) == 8);
  rig.clock().advance(rig.clock().await_wait(2));
  // The third 500 in a row: sent in parts, at once, until raw event 1 is alone.
  CHECK(records(rig.script().await_request(3)) == 8);
  CHECK(rig.clock().await_wait(3) == 1s);  // idle: everything confirmed or quarantined
  CHECK(rig.clock().waits() == 3);         // no backoff while isolating
  const auto sent = rig.script().sent();
  CHECK(records(sent.at(3)) == 4);  // the first half
  bool alone = false;
  for (const auto& request : sent)
    alone = alone ||
            (request.raw_seqs() == std::vector<std::int64_t>{1} && request.measurements() == 0);
  CHECK(alone);
  CHECK(sent.size() <= 12);

  const auto status = rig.sync_status();
  CHECK(status.waiting() == 0);
  CHECK(status.quarantined == 1);
  CHECK(status.quarantined_by_reason.at("server_error") == 1);
  CHECK(rig.metrics().rejected == 1);
  CHECK(rig.metrics().measurements_confirmed == 4);
  auto rejections = rig.fixture().buffer().latest_rejections(10);
  REQUIRE(rejections);
  REQUIRE(rejections->size() == 1);
  CHECK(rejections->at(0).kind == "raw");
  CHECK(rejections->at(0).ref == 1);
  CHECK(rejections->at(0).detail == "HTTP 500 internal_error: RecursionError");
  CHECK(rig.log().find("raw event seq 1 alone makes the central fail") != std::string::npos);

  // `meter-agent requeue` releases it like any rejection.
  auto released = rig.fixture().buffer().requeue(std::string("server_error"));
  REQUIRE(released);
  CHECK(*released == 1);
}

TEST_CASE("500s interrupted by an outage's answer do not split, and 502/503/504 never do",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(2);
  HttpAnswer timeout;
  timeout.transport_error = "Operation timed out";
  const std::vector<HttpAnswer> answers{status(500), status(500), status(503),
                                        status(500), status(502), status(504),
                                        timeout,     status(500), status(500)};
  for (const auto& answer : answers) rig.script().then(just(answer));
  rig.start();
  for (std::size_t i = 1; i <= answers.size(); ++i) {
    CHECK(records(rig.script().await_request(i)) == 4);  // always the whole batch
    rig.clock().advance(rig.clock().await_wait(i));
  }
  // The third 500 in a row (with the two before it): now it is split.
  rig.script().then(just(status(500)));
  CHECK(records(rig.script().await_request(answers.size() + 1)) == 4);
  CHECK(records(rig.script().await_request(answers.size() + 2)) == 2);
  CHECK(rig.metrics().rejected == 0);
}

TEST_CASE("a 413 for a raw event and a measurement sends them one at a time, not in a loop",
          "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(1);  // one raw event, one measurement
  const auto too_large_unless_alone = [](const nlohmann::json& request) {
    if (request["raw_events"].size() + request["measurements"].size() > 1) {
      return status(413, std::nullopt, R"({"protocol_version":"1","error":"payload_too_large"})");
    }
    return confirm_all()(request);
  };
  for (int i = 0; i < 10; ++i) rig.script().then(too_large_unless_alone);
  rig.start();
  CHECK(records(rig.script().await_request(1)) == 2);
  CHECK(rig.clock().await_wait(1) == 1s);  // idle: both confirmed
  const auto sent = rig.script().sent();
  REQUIRE(sent.size() == 3);
  CHECK(sent[1].raw_seqs() == std::vector<std::int64_t>{1});
  CHECK(sent[1].measurements() == 0);
  CHECK(sent[2].raw_seqs().empty());
  CHECK(sent[2].measurements() == 1);
  CHECK(rig.sync_status().waiting() == 0);
  CHECK(rig.metrics().rejected == 0);
}

TEST_CASE("a 413 with Retry-After waits before the halves", "[daemon][uplink]") {
  Rig rig;
  rig.add_readings(4);
  rig.script().then(
      just(status(413, 30000, R"({"protocol_version":"1","error":"payload_too_large"})")));
  for (int i = 0; i < 4; ++i) rig.script().then(confirm_all());
  rig.start();
  rig.script().await_request(1);
  CHECK(rig.clock().await_wait(1) == 30s);
  CHECK(rig.script().requests() == 1);
  rig.clock().advance(30s);
  CHECK(records(rig.script().await_request(2)) == 4);  // half per array
}
