// Power cuts (issue #16): the power-cut filesystem itself ([powercut_fs]),
// then the real agent on it ([powercut]): QoS 1 readings through a real
// mosquitto (outside the cut filesystem), the agent's buffer directory on
// it, K power cuts placed at the n-th operation of a kind (a created file —
// a new inbox segment —, a rename, an fsync, a WAL write, a checkpoint's
// write to the database) or at random, each followed by an unattended restart,
// and the upload to a real central service (PostgreSQL: run under
// central/tests/with_postgres.sh).
//
// ctest runs a reduced size; the full run, one command (from a build directory):
//   METER_POWERCUT_READINGS=20000 METER_POWERCUT_CUTS=40 ../central/tests/with_postgres.sh
//   tests/powercut/powercut_test "[powercut]"
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/buffer/inbox.hpp"
#include "common/normalize/timestamp.hpp"
#include "powercut/powercut_fs.hpp"
#include "support/agent_process.hpp"
#include "support/central.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

// ---- files through the mount ------------------------------------------------------

int open_file(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  if (fd < 0) FAIL("open " << path << ": " << std::strerror(errno));
  return fd;
}

void write_all(int fd, const std::string& data, off_t offset) {
  REQUIRE(::pwrite(fd, data.data(), data.size(), offset) == static_cast<ssize_t>(data.size()));
}

std::string read_all(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<absent>";
  std::string data;
  char chunk[65536];
  ssize_t n = 0;
  while ((n = ::read(fd, chunk, sizeof chunk)) > 0) data.append(chunk, static_cast<std::size_t>(n));
  ::close(fd);
  return data;
}

void sync_directory(const std::string& path) {
  const int fd = open_file(path, O_RDONLY | O_DIRECTORY);
  if (::fsync(fd) != 0) FAIL("fsync of the directory " << path << ": " << std::strerror(errno));
  ::close(fd);
}

bool exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

// A mounted power-cut filesystem in a temporary directory.
struct Mounted {
  TempDir dir;
  std::unique_ptr<PowerCutFs> fs;
  Mounted() : fs(std::make_unique<PowerCutFs>(dir.file("store"), dir.file("mnt"))) {}
  std::string file(const std::string& name) const { return dir.file("mnt") + "/" + name; }
  void cut_and_restart(CutMode mode = CutMode::drop_all, std::uint64_t seed = 1) {
    fs->cut_now(mode, seed);
    fs->power_on();
  }
};

}  // namespace

// ---- the filesystem ---------------------------------------------------------------

TEST_CASE("a write is lost in a power cut unless fsync or fdatasync made it durable",
          "[powercut_fs]") {
  Mounted m;
  const auto path = m.file("data");
  int fd = open_file(path, O_RDWR | O_CREAT);
  sync_directory(m.file(""));  // the entry is durable; the data is not yet
  write_all(fd, "synced", 0);
  REQUIRE(::fdatasync(fd) == 0);
  write_all(fd, " and not", 6);
  CHECK(read_all(path) == "synced and not");  // before the cut, everything is there
  ::close(fd);
  m.cut_and_restart();
  CHECK(read_all(path) == "synced");
  CHECK(m.fs->reverted_blocks() == 1);

  // fsync keeps a write, and a truncation, too.
  fd = open_file(path, O_RDWR);
  write_all(fd, "SYNCED", 0);
  REQUIRE(::fsync(fd) == 0);
  REQUIRE(::ftruncate(fd, 3) == 0);
  ::close(fd);
  m.cut_and_restart();
  CHECK(read_all(path) == "SYNCED");  // the truncation was not synced
}

TEST_CASE("creations, renames and removals are lost unless their directory was synced",
          "[powercut_fs]") {
  Mounted m;
  REQUIRE(::mkdir(m.file("dir").c_str(), 0700) == 0);
  int fd = open_file(m.file("dir/a"), O_RDWR | O_CREAT);
  write_all(fd, "a", 0);
  REQUIRE(::fsync(fd) == 0);
  ::close(fd);
  // The file's own fsync does not make its name durable, nor does the new
  // directory exist after a cut unless its parent was synced.
  m.cut_and_restart();
  CHECK_FALSE(exists(m.file("dir")));

  REQUIRE(::mkdir(m.file("dir").c_str(), 0700) == 0);
  sync_directory(m.file(""));
  fd = open_file(m.file("dir/a"), O_RDWR | O_CREAT);
  write_all(fd, "a", 0);
  REQUIRE(::fsync(fd) == 0);
  ::close(fd);
  sync_directory(m.file("dir"));
  // A rename and a removal without a directory fsync: both undone.
  REQUIRE(::rename(m.file("dir/a").c_str(), m.file("dir/b").c_str()) == 0);
  fd = open_file(m.file("dir/c"), O_RDWR | O_CREAT);
  ::close(fd);
  sync_directory(m.file("dir"));
  REQUIRE(::unlink(m.file("dir/c").c_str()) == 0);
  CHECK(exists(m.file("dir/b")));
  m.cut_and_restart();
  CHECK(read_all(m.file("dir/b")) == "a");  // the rename was synced with c's creation
  CHECK_FALSE(exists(m.file("dir/a")));
  CHECK(exists(m.file("dir/c")));  // the removal was not
  REQUIRE(::rename(m.file("dir/b").c_str(), m.file("dir/d").c_str()) == 0);
  m.cut_and_restart();
  CHECK(read_all(m.file("dir/b")) == "a");
  CHECK_FALSE(exists(m.file("dir/d")));
  CHECK(m.fs->reverted_entries() == 2);  // d gone, b back
}

TEST_CASE("a random cut keeps a seeded subset of unsynced blocks, the last one torn",
          "[powercut_fs]") {
  const auto run = [](std::uint64_t seed) {
    Mounted m;
    int fd = open_file(m.file("data"), O_RDWR | O_CREAT);
    sync_directory(m.file(""));
    for (int block = 0; block < 32; ++block) {
      write_all(fd, std::string(4096, static_cast<char>('a' + block % 26)), block * 4096);
    }
    ::close(fd);
    m.fs->cut_now(CutMode::random_blocks, seed);
    m.fs->power_on();
    return read_all(m.file("data"));
  };
  const auto data = run(42);
  CHECK(data == run(42));  // the same seed, the same cut
  CHECK(data != run(43));
  REQUIRE(data.size() % 4096 == 0);
  int kept = 0;
  int lost = 0;
  for (std::size_t block = 0; block < data.size() / 4096; ++block) {
    const auto content = data.substr(block * 4096, 4096);
    const char written = static_cast<char>('a' + block % 26);
    if (content == std::string(4096, written)) {
      ++kept;
    } else if (content == std::string(4096, '\0')) {
      ++lost;
    } else {
      // Torn: new sectors, then old ones, at a 512-byte boundary.
      CHECK(block == 31);
      const auto cut = content.find('\0');
      CHECK(cut % 512 == 0);
      CHECK(content.substr(0, cut) == std::string(cut, written));
      CHECK(content.substr(cut) == std::string(4096 - cut, '\0'));
    }
  }
  CHECK(kept > 0);
  CHECK(lost > 0);
}

TEST_CASE("a cut placed at the n-th fsync fails it and everything after, until power_on",
          "[powercut_fs]") {
  Mounted m;
  int fd = open_file(m.file("data"), O_RDWR | O_CREAT);
  sync_directory(m.file(""));  // fsync 1
  m.fs->arm(CutKind::fsync, 2, CutMode::drop_all, 1);
  write_all(fd, "one", 0);
  REQUIRE(::fdatasync(fd) == 0);  // fsync 1 after arming
  write_all(fd, "two", 3);
  CHECK(::fdatasync(fd) != 0);  // the power went here
  CHECK(errno == EIO);
  CHECK(::pwrite(fd, "x", 1, 6) < 0);
  CHECK(m.fs->wait_for_cut(1s));
  CHECK(m.fs->last_cut_kind() == CutKind::fsync);
  ::close(fd);
  m.fs->power_on();
  CHECK(read_all(m.file("data")) == "one");
  CHECK(m.fs->operations(CutKind::fsync) == 3);
}

// ---- the inbox on it ---------------------------------------------------------------

TEST_CASE("an inbox record acknowledged under power_loss survives a power cut",
          "[powercut_inbox]") {
  Mounted m;
  const auto buffer = m.file("buffer.db");
  for (const auto mode : {CutMode::drop_all, CutMode::random_blocks}) {
    auto writer = InboxWriter::open(buffer, true, 0);
    REQUIRE(writer);
    RawMessage message;
    message.topic = "meters/m1";
    message.payload = "{\"value\":1}";
    message.qos = 1;
    REQUIRE((*writer)->append(message));  // synced: this is when the agent acknowledges
    // The power goes before the raw log took it in.
    m.cut_and_restart(mode, 7);
    auto read = read_inbox(buffer, InboxPosition{}, 100, false);
    REQUIRE(read);
    CHECK(read->messages.size() == (mode == CutMode::drop_all ? 1U : 2U));
  }
}

TEST_CASE("inbox group commit: one sync makes every record before it durable, across segments",
          "[powercut_inbox]") {
  Mounted m;
  const auto buffer = m.file("buffer.db");
  auto writer = InboxWriter::open(buffer, true, 0);
  REQUIRE(writer);
  auto message = [](int i) {
    RawMessage made;
    made.topic = "meters/m" + std::to_string(i);
    // 1.5 MiB: three of them cross a 4 MiB segment's end.
    made.payload = std::string(1536 * 1024, static_cast<char>('a' + i));
    made.qos = 1;
    return made;
  };
  const auto first_segment = (*writer)->position().segment;
  for (int i = 0; i < 3; ++i) REQUIRE((*writer)->append_unsynced(message(i)));
  REQUIRE((*writer)->position().segment == first_segment + 1);
  REQUIRE((*writer)->sync());  // this is when the three are acknowledged
  // Two small ones, not yet synced (not acknowledged): the cut takes them.
  for (int i = 3; i < 5; ++i) {
    auto small = message(i);
    small.payload.resize(100);
    REQUIRE((*writer)->append_unsynced(small));
  }
  REQUIRE((*writer)->position().segment == first_segment + 1);
  writer->reset();
  m.cut_and_restart(CutMode::drop_all, 11);
  auto read = read_inbox(buffer, InboxPosition{}, 100, false);
  REQUIRE(read);
  REQUIRE(read->messages.size() == 3U);
  for (int i = 0; i < 3; ++i) CHECK(read->messages[i].payload == message(i).payload);
}

// ---- the agent on it --------------------------------------------------------------

namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoi(value) : fallback;
}

std::string payload_for(long i) {
  return "{\"device_id\":\"p" + std::to_string(i % 10) + "\",\"timestamp\":\"" +
         format_timestamp(1767225600000LL + i * 1000) +
         "\",\"metric_type\":\"energy\",\"value\":" + std::to_string(i) + ",\"unit\":\"kWh\"}";
}

// `PRAGMA integrity_check` of the database at `path`: "ok", or what it said.
std::string integrity(const std::string& path) {
  if (!exists(path)) return "ok (no database yet)";
  sqlite3* db = nullptr;
  std::string result = "cannot open";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_stmt* statement = nullptr;
    result.clear();
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &statement, nullptr) == SQLITE_OK) {
      while (sqlite3_step(statement) == SQLITE_ROW) {
        result += reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
      }
    } else {
      result = sqlite3_errmsg(db);
    }
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  return result;
}

struct Figures {
  long readings = 0;
  std::map<std::string, int> cuts;  // by the kind of operation it fell on
  long lost = 0;
  long doubled = 0;
  long allowed_loss = 0;  // normal: acknowledged since the last sync, summed over the cuts
  std::int64_t reverted_blocks = 0;
  std::int64_t reverted_entries = 0;
  std::int64_t central = 0;
};

// How the agent acknowledges: mqtt.ingest_workers (group commit across worker
// processes) or mqtt.acknowledge: batched (group commit on its own connection).
struct Ingest {
  int workers = 0;
  bool batched = false;
};

// The agent with its buffer on the power-cut filesystem.
class CutRig {
 public:
  CutRig(const std::string& durability, bool with_central, Ingest ingest = {})
      : mounted_(),
        agent_(broker_.port(), "  ingest_workers: " + std::to_string(ingest.workers) +
                                   "\n  acknowledge: " + (ingest.batched ? "batched" : "each") +
                                   "\n"),
        durability_(durability) {
    if (with_central) {
      central_ = std::make_unique<CentralService>();
      central_->start();
    }
    write_text_file(token_path(), (central_ ? central_->token() : std::string("none")) + "\n");
    ::chmod(token_path().c_str(), 0600);
    std::string config = agent_.config_text();
    const std::string buffer_path = "  path: " + agent_.buffer_path() + "\n";
    config.replace(config.find(buffer_path), buffer_path.size(), "  path: " + buffer() + "\n");
    const std::string normal = "  durability: normal\n";
    config.replace(config.find(normal), normal.size(), "  durability: " + durability + "\n");
    config += "mqtt_extra_unused: 0\n";
    config.erase(config.find("mqtt_extra_unused"));
    if (central_) {
      config += "uplink:\n  url: http://127.0.0.1:" + std::to_string(central_->port()) +
                "\n  token_file: " + token_path() +
                "\n  timeout: 5s\n  retry: {min: 50ms, max: 500ms}\n  interval: 100ms\n";
    }
    write_text_file(agent_.config_path(), config);
  }

  std::string buffer() const { return mounted_.file("buffer.db"); }
  std::string token_path() const { return agent_.dir().file("token"); }
  PowerCutFs& fs() { return *mounted_.fs; }
  AgentProcess& agent() { return agent_; }
  Mosquitto& broker() { return broker_; }
  CentralService* central() { return central_.get(); }

 private:
  Mosquitto broker_;
  Mounted mounted_;
  AgentProcess agent_;
  std::string durability_;
  std::unique_ptr<CentralService> central_;
};

// Runs the whole scenario; fills `figures`.
void run_power_cuts(const std::string& durability, long readings, int cuts, std::uint64_t seed,
                    bool with_central, Figures& figures, Ingest ingest = {}) {
  const int workers = ingest.workers;
  std::cout << "power cuts (" << durability << ", ingest workers " << workers
            << (ingest.batched ? ", batched" : "") << "): " << readings << " readings, " << cuts
            << " cuts, seed " << seed << std::endl;
  std::mt19937_64 random(seed);
  CutRig rig(durability, with_central, ingest);
  auto& agent = rig.agent();
  auto& fs = rig.fs();
  figures.readings = readings;

  // The first cut comes during the very first start, at a random operation
  // (the buffer, its WAL and the inbox directory being created).
  fs.arm(CutKind::any, 1 + static_cast<std::int64_t>(random() % 60), CutMode::drop_all, random());
  agent.start();
  if (!fs.wait_for_cut(10s)) fs.cut_now(CutMode::drop_all, 1);
  agent.kill();
  fs.power_on();
  ++figures.cuts[std::string("first start: ") + name_of(fs.last_cut_kind())];
  if (const auto check = integrity(rig.buffer()); check.rfind("ok", 0) != 0) {
    FAIL("integrity_check after the first start's cut: " << check);
  }
  // The first run that connects makes the persistent session; the broker
  // keeps messages for the agent from then on, while it is down too.
  agent.start();
  if (!agent.wait_connected(30s)) FAIL("the agent did not connect\n" << agent.log());
  if (workers > 0 &&
      !wait_until([&] { return agent.metric("meter_agent_ingest_workers_connected") == workers; },
                  30s, 20ms)) {
    FAIL("the ingest workers did not connect\n" << agent.log());
  }
  if (ingest.batched && !agent.wait_log("batched connection: subscribed", 30s)) {
    FAIL("the batched connection did not subscribe\n" << agent.log());
  }

  // Readings spread over about the time the cuts take.
  const auto publish_span = std::chrono::milliseconds(cuts * 2500L);
  std::atomic<long> published{0};
  std::atomic<bool> publisher_failed{false};
  std::atomic<bool> stop_publishing{false};
  std::thread publisher_thread([&] {
    try {
      TestPublisher publisher(rig.broker().port(), "powercut-publisher", 100);
      const auto start = std::chrono::steady_clock::now();
      for (long i = 0; i < readings && !stop_publishing; ++i) {
        publisher.publish("meters/p" + std::to_string(i % 10), payload_for(i));
        published = i + 1;
        if (i % 20 == 0) {
          std::this_thread::sleep_until(start + publish_span * i / readings);  // pacing only
        }
      }
      publisher.flush();
    } catch (const std::exception& e) {
      std::cerr << "publisher failed: " << e.what() << std::endl;
      publisher_failed = true;
    }
  });

  // normal: how many acknowledged messages a cut may lose — those appended
  // since the raw log's last WAL sync. Sampled from /metrics (the agent's
  // HTTP thread answers from memory, also while its disk is gone).
  // A failing check ends the test early: the publisher stops first.
  struct StopPublisher {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~StopPublisher() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } stop_publisher{stop_publishing, publisher_thread};

  // normal: the raw log's count as of the last WAL sync of this run, sampled.
  struct Sampler {
    Sampler(AgentProcess& a, PowerCutFs& f) : agent(a), fs(f) {}
    AgentProcess& agent;
    PowerCutFs& fs;
    std::mutex mutex;
    std::int64_t syncs_seen = -1;     // WAL syncs at the run's start
    std::int64_t logged_at_sync = 0;  // raw_logged sampled before the latest WAL sync
    std::int64_t last_logged = 0;
    std::int64_t last_syncs = 0;
    std::atomic<bool> stop{false};
    std::thread thread;
    void sample() {
      const auto syncs = fs.wal_syncs();
      const auto logged =
          std::max<std::int64_t>(0, agent.metric("meter_agent_messages_raw_logged_total"));
      std::lock_guard lock(mutex);
      if (syncs_seen < 0) syncs_seen = syncs;
      // A sync since the last sample: what was logged before that sample is durable.
      if (syncs != last_syncs && syncs > syncs_seen) logged_at_sync = last_logged;
      last_syncs = syncs;
      last_logged = logged;
    }
    std::int64_t logged_before_sync() {
      std::lock_guard lock(mutex);
      return logged_at_sync;
    }
    void restarted() {
      std::lock_guard lock(mutex);
      syncs_seen = -1;
      logged_at_sync = 0;
      last_logged = 0;
    }
  } sampler(agent, fs);
  if (durability == "normal") {
    sampler.thread = std::thread([&] {
      while (!sampler.stop) {
        sampler.sample();
        std::this_thread::sleep_for(20ms);  // a sampling period, not synchronization
      }
    });
  }
  struct StopSampler {
    Sampler& sampler;
    ~StopSampler() {
      sampler.stop = true;
      if (sampler.thread.joinable()) sampler.thread.join();
    }
  } stop_sampler{sampler};

  // normal syncs only at checkpoints (every 10 s): its cuts wait for one.
  const std::vector<CutKind> kinds =
      durability == "normal"
          ? std::vector<CutKind>{CutKind::checkpoint, CutKind::fsync, CutKind::any}
          : std::vector<CutKind>{CutKind::fsync,      CutKind::wal,    CutKind::create,
                                 CutKind::checkpoint, CutKind::rename, CutKind::any};
  for (int cut = 1; cut < cuts; ++cut) {
    const CutKind kind = kinds[static_cast<std::size_t>(cut - 1) % kinds.size()];
    const CutMode mode = cut % 2 == 0 ? CutMode::drop_all : CutMode::random_blocks;
    const auto cut_seed = random();
    std::int64_t nth = 1;
    switch (kind) {
      case CutKind::fsync:
        nth = 1 + static_cast<std::int64_t>(random() % 200);
        break;
      case CutKind::wal:
        nth = 1 + static_cast<std::int64_t>(random() % 100);
        break;
      case CutKind::checkpoint:
        nth = 1 + static_cast<std::int64_t>(random() % 5);
        break;
      case CutKind::any:
        nth = 1 + static_cast<std::int64_t>(random() % 400);
        break;
      default:
        nth = 1;
        break;
    }
    if (kind == CutKind::create) {
      // A new inbox segment: every start makes one.
      fs.arm(kind, nth, mode, cut_seed);
      if (cut > 1) agent.start();
    } else {
      if (cut > 1) agent.start();
      if (!agent.wait_connected(30s)) {
        FAIL("the agent did not restart by itself after cut " << cut << "\n" << agent.log());
      }
      fs.arm(kind, nth, mode, cut_seed);
    }
    std::string landed = name_of(kind);
    const auto patience = durability == "normal" || kind == CutKind::checkpoint ? 12s : 5s;
    if (!fs.wait_for_cut(patience)) {
      fs.cut_now(mode, cut_seed);  // none came: the power goes now
      landed = std::string("any (no ") + name_of(kind) + " came)";
    } else {
      landed = name_of(fs.last_cut_kind());
    }
    if (durability == "normal") {
      // What this run acknowledged and the raw log had not made durable by
      // its last WAL sync (a checkpoint's) may go.
      const auto appended = agent.metric("meter_agent_messages_appended_total");
      figures.allowed_loss += std::max<std::int64_t>(0, appended - sampler.logged_before_sync());
    }
    agent.kill();
    sampler.restarted();
    fs.power_on();
    ++figures.cuts[landed];
    figures.reverted_blocks += fs.reverted_blocks();
    figures.reverted_entries += fs.reverted_entries();
    const auto check = integrity(rig.buffer());
    if (check.rfind("ok", 0) != 0) FAIL("integrity_check after cut " << cut << ": " << check);
  }
  publisher_thread.join();
  REQUIRE_FALSE(publisher_failed);

  agent.start();
  if (!agent.wait_connected(30s)) FAIL("the agent did not restart after the last cut");
  // Everything the broker still holds arrives; then the backlog drains.
  const auto expected = readings;
  const bool all_in = wait_until(
      [&] {
        return agent.metric("meter_agent_buffer_measurements") >= expected - figures.allowed_loss &&
               agent.metric("meter_agent_buffer_pending_normalization") == 0 &&
               agent.metric("meter_agent_buffer_inbox_bytes") == 0;
      },
      std::chrono::seconds(60 + readings / 50), 100ms);
  // Quiet: nothing more comes from the broker.
  std::int64_t last = -1;
  wait_until(
      [&] {
        const auto now = agent.metric("meter_agent_messages_received_total");
        const bool same = now == last;
        last = now;
        return same;
      },
      10s, 500ms);
  if (rig.central() != nullptr) {
    wait_until([&] { return agent.metric("meter_agent_buffer_unsynced") == 0; },
               std::chrono::seconds(60 + readings / 50), 100ms);
  }
  const auto code = agent.stop();
  CHECK(code == std::optional<int>(0));
  CHECK(integrity(rig.buffer()) == "ok");

  std::map<std::string, int> seen;
  {
    BufferConfig config;
    config.path = rig.buffer();
    auto buffer = Buffer::open(config);
    REQUIRE(buffer);
    REQUIRE((*buffer)->for_each_measurement(
        [&](const Measurement& m) { ++seen[m.device_id + "|" + m.value]; }));
  }
  for (long i = 0; i < readings; ++i) {
    const auto found = seen.find("p" + std::to_string(i % 10) + "|" + std::to_string(i));
    if (found == seen.end()) {
      if (++figures.lost <= 5) std::cerr << "lost reading " << i << "\n";
    } else if (found->second != 1) {
      ++figures.doubled;
    }
  }
  if (rig.central() != nullptr) {
    figures.central = rig.central()->count("SELECT count(*) FROM normalized_measurements");
    const auto distinct = rig.central()->count(
        "SELECT count(DISTINCT (device_id, value)) FROM normalized_measurements");
    CHECK(distinct == figures.central);  // each reading once
  }
  std::cout << "cuts:";
  for (const auto& [kind, count] : figures.cuts) std::cout << " " << kind << " " << count;
  std::cout << "\nreverted " << figures.reverted_blocks << " unsynced blocks and "
            << figures.reverted_entries << " directory entries; lost " << figures.lost
            << ", doubled " << figures.doubled << ", central " << figures.central
            << (durability == "normal" ? ", allowed loss " + std::to_string(figures.allowed_loss)
                                       : std::string())
            << std::endl;
  (void)all_in;
}

}  // namespace

TEST_CASE("power_loss: every reading survives power cuts, once, and reaches the central once",
          "[powercut]") {
  Figures figures;
  const long readings = env_int("METER_POWERCUT_READINGS", 2000);
  const int cuts = env_int("METER_POWERCUT_CUTS", 10);
  const auto seed = static_cast<std::uint64_t>(env_int("METER_POWERCUT_SEED", 0)) != 0
                        ? static_cast<std::uint64_t>(env_int("METER_POWERCUT_SEED", 0))
                        : std::random_device{}();
  run_power_cuts("power_loss", readings, cuts, seed, true, figures);
  CHECK(figures.lost == 0);
  CHECK(figures.doubled == 0);
  CHECK(figures.central == readings);
  CHECK(figures.reverted_blocks + figures.reverted_entries > 0);  // the cuts took something
}

TEST_CASE("power_loss with ingest workers: group commit loses nothing in power cuts either",
          "[powercut]") {
  Figures figures;
  const long readings = env_int("METER_POWERCUT_READINGS", 2000) / 2;
  const int cuts = std::max(3, env_int("METER_POWERCUT_CUTS", 10) / 2);
  run_power_cuts("power_loss", readings, cuts, std::random_device{}(), false, figures,
                 Ingest{3, false});
  CHECK(figures.lost == 0);
  CHECK(figures.doubled == 0);
  CHECK(figures.reverted_blocks + figures.reverted_entries > 0);
}

TEST_CASE("power_loss with the batched connection: group commit loses nothing in power cuts",
          "[powercut]") {
  Figures figures;
  const long readings = env_int("METER_POWERCUT_READINGS", 2000) / 2;
  const int cuts = std::max(3, env_int("METER_POWERCUT_CUTS", 10) / 2);
  run_power_cuts("power_loss", readings, cuts, std::random_device{}(), false, figures,
                 Ingest{0, true});
  CHECK(figures.lost == 0);
  CHECK(figures.doubled == 0);
  CHECK(figures.reverted_blocks + figures.reverted_entries > 0);
}

TEST_CASE("normal: a power cut loses at most what was acknowledged since the last sync",
          "[powercut]") {
  Figures figures;
  const long readings = env_int("METER_POWERCUT_READINGS", 2000) / 4;
  const int cuts = std::max(3, env_int("METER_POWERCUT_CUTS", 10) / 3);
  run_power_cuts("normal", readings, cuts, std::random_device{}(), false, figures);
  CHECK(figures.doubled == 0);
  CHECK(figures.lost <= figures.allowed_loss);
  CHECK(figures.lost < readings);  // what a checkpoint synced held
}

// A measurement, not a check of correctness: the agent on a slow disk (each
// sync METER_POWERCUT_SYNC_MS, default 5 ms, as on an SD card), readings
// published live; prints acknowledged messages per second (from the first to
// the last receive time in the raw log, as tests/bench/bench_mqtt.cpp counts).
// Hidden from ctest ([.]); docs/BENCHMARKS.md has the numbers:
//   METER_POWERCUT_SYNC_MS=5 tests/powercut/powercut_test "[powercut_bench]"
// (METER_POWERCUT_INGEST_WORKERS=N: with mqtt.ingest_workers N;
// METER_POWERCUT_BATCHED=1: with mqtt.acknowledge: batched).
TEST_CASE("power_loss on a slow disk: acknowledged messages per second", "[.][powercut_bench]") {
  const int sync_ms = env_int("METER_POWERCUT_SYNC_MS", 5);
  const long messages = env_int("METER_POWERCUT_BENCH_MESSAGES", 2000);
  const std::string durability = std::getenv("METER_POWERCUT_DURABILITY") != nullptr
                                     ? std::getenv("METER_POWERCUT_DURABILITY")
                                     : "power_loss";
  const int workers = env_int("METER_POWERCUT_INGEST_WORKERS", 0);
  const bool batched = env_int("METER_POWERCUT_BATCHED", 0) != 0;
  CutRig rig(durability, false, Ingest{workers, batched});
  rig.fs().set_sync_delay(std::chrono::milliseconds(sync_ms));
  auto& agent = rig.agent();
  agent.start();
  REQUIRE(agent.wait_connected(30s));
  REQUIRE(wait_until(
      [&] { return agent.metric("meter_agent_ingest_workers_connected") == workers; }, 60s, 20ms));
  if (batched) REQUIRE(agent.wait_log("batched connection: subscribed", 60s));
  {
    TestPublisher publisher(rig.broker().port(), "powercut-bench-publisher", 100);
    for (long i = 0; i < messages; ++i) {
      publisher.publish("meters/p" + std::to_string(i % 10), payload_for(i));
    }
    publisher.flush();
  }
  const auto timeout = std::chrono::seconds(60 + messages * (sync_ms + 1) * 3 / 1000);
  REQUIRE(
      wait_until([&] { return agent.metric("meter_agent_messages_raw_logged_total") >= messages; },
                 timeout, 20ms));
  const auto group_commits = agent.metric("meter_agent_group_commits_total");
  agent.stop();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(rig.buffer().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  REQUIRE(sqlite3_prepare_v2(
              db, "SELECT count(*), min(received_ms), max(received_ms) FROM raw_messages", -1,
              &statement, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
  const auto count = sqlite3_column_int64(statement, 0);
  const auto span_ms = sqlite3_column_int64(statement, 2) - sqlite3_column_int64(statement, 1);
  sqlite3_finalize(statement);
  sqlite3_close(db);
  CHECK(count == messages);
  const double rate =
      span_ms > 0 ? static_cast<double>(count - 1) * 1000.0 / static_cast<double>(span_ms) : 0;
  std::cout << "slow disk (" << sync_ms << " ms per sync), " << durability << ", ingest workers "
            << workers << (batched ? ", batched" : "") << ": " << count
            << " messages acknowledged at " << static_cast<long>(rate) << " msgs/s; "
            << rig.fs().operations(CutKind::fsync) << " syncs, " << group_commits
            << " group commits" << std::endl;
}
