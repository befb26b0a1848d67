// meter_bench: throughput and bytes written of the SQLite buffer under a
// realistic meter workload (docs/BENCHMARKS.md says how to run it and what
// every number means).
//
// Phase 1 appends every message with Buffer::append_raw (one transaction per
// message, as the acknowledge path does); phase 2 normalizes them with
// Buffer::normalize_pending in batches of the config's batch_size. Both run
// for each durability setting, on an empty buffer and (durability normal) on
// one that already holds --preload measurements. A plain SQLite table with the
// same pragmas, written through the raw C API, is the baseline.
//
// Not a test: it prints Markdown and exits 0 whether the targets are met or
// not. It exits 1 only when the buffer fails or processes the workload wrongly
// (a message lost, doubled or not decoded), so the ctest smoke run means
// something.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"
#include "common/decode/mapping.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/normalize/timestamp.hpp"
#include "support/raw_appender.hpp"

namespace {

using meter::Buffer;
using meter::Durability;
using meter::NormalizeStats;
using meter::RawMessage;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Targets (docs/BENCHMARKS.md), checked with durability normal.
constexpr double kTargetAppendsPerSecond = 25000;
constexpr double kTargetEventsPerSecond = 50000;
constexpr double kTargetBytesPerEvent = 4096;
constexpr double kTargetStoredRatio = 0.8;

constexpr std::int64_t kIntervalMs = 10'000;               // one reading per device per 10 s
constexpr std::int64_t kPhaseStartMs = 1'735'689'600'000;  // 2025-01-01T00:00:00Z
constexpr std::int64_t kReceiveLagMs = 1'500;              // meter clock -> gateway clock

// The seed's config; the path, durability and batch size are set from flags.
constexpr const char* kConfigYaml = R"(
gateway_id: bench-gw
buffer:
  durability: normal
metrics:
  energy:
    kind: counter
    unit: kWh
    jump_threshold: 10000
mappings:
  - topic: "meters/#"
    format: seed_json
    timestamp:
      format: rfc3339
      zone: Europe/Berlin
)";

// The temporary directory this process created, removed on exit either way.
std::string created_dir;

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "meter_bench: %s\n", message.c_str());
  if (!created_dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(created_dir, ignored);
  }
  std::exit(1);
}

// ---------------------------------------------------------------------------
// Command line.

struct Options {
  std::int64_t messages = 1'000'000;
  std::int64_t power_loss_messages = 100'000;
  std::int64_t devices = 1000;
  std::int64_t preload = 10'000'000;
  std::int64_t preload_batch = 100'000;
  double out_of_order_pct = 10;
  double repeats_pct = 5;
  bool run_normal = true;
  bool run_power_loss = true;
  bool baseline = true;
  bool keep = false;
  std::string dir;
  std::uint64_t seed = 20250101;
  std::size_t batch_size = 0;  // 0: the config's default
  std::string command_line;
};

constexpr const char* kUsage = R"(usage: meter_bench [options]
  --messages N             messages per run with durability normal (default 1000000)
  --power-loss-messages N  messages per run with durability power_loss (default 100000;
                           0 = same as --messages; never more than --messages)
  --devices N              meters sending, one reading per interval each (default 1000)
  --preload N              measurements stored before the "stored" run (default 10000000;
                           0 skips that run)
  --preload-batch N        messages per append/normalize batch of the preload (default 100000)
  --out-of-order PCT       messages delivered late, behind newer readings (default 10)
  --repeats PCT            messages that are exact copies of an earlier one (default 5)
  --durability MODE        normal | power_loss | both (default both)
  --batch-size N           normalization batch (default: the config's, 5000)
  --no-baseline            skip the plain-SQLite baseline
  --dir PATH               where the database files go (default: a fresh temporary
                           directory, removed at the end); files are removed unless --keep
  --keep                   keep the database files
  --seed N                 random seed of the workload (default 20250101)
)";

std::int64_t parse_count(const std::string& flag, const std::string& text) {
  try {
    std::size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used != text.size() || value < 0) throw std::invalid_argument(text);
    return value;
  } catch (const std::exception&) {
    die(flag + ": expected a non-negative integer, got '" + text + "'");
  }
}

double parse_percent(const std::string& flag, const std::string& text) {
  try {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    if (used != text.size() || !(value >= 0 && value <= 50)) throw std::invalid_argument(text);
    return value;
  } catch (const std::exception&) {
    die(flag + ": expected a percentage from 0 to 50, got '" + text + "'");
  }
}

Options parse_options(int argc, char** argv) {
  Options options;
  options.command_line = "meter_bench";
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& arg : args) options.command_line += " " + arg;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) die(flag + " needs a value");
      return args[++i];
    };
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (flag == "--messages") {
      options.messages = parse_count(flag, value());
    } else if (flag == "--power-loss-messages") {
      options.power_loss_messages = parse_count(flag, value());
    } else if (flag == "--devices") {
      options.devices = parse_count(flag, value());
    } else if (flag == "--preload") {
      options.preload = parse_count(flag, value());
    } else if (flag == "--preload-batch") {
      options.preload_batch = parse_count(flag, value());
    } else if (flag == "--out-of-order") {
      options.out_of_order_pct = parse_percent(flag, value());
    } else if (flag == "--repeats") {
      options.repeats_pct = parse_percent(flag, value());
    } else if (flag == "--durability") {
      const std::string mode = value();
      if (mode != "normal" && mode != "power_loss" && mode != "both") {
        die("--durability: expected normal, power_loss or both, got '" + mode + "'");
      }
      options.run_normal = mode != "power_loss";
      options.run_power_loss = mode != "normal";
    } else if (flag == "--batch-size") {
      options.batch_size = static_cast<std::size_t>(parse_count(flag, value()));
    } else if (flag == "--no-baseline") {
      options.baseline = false;
    } else if (flag == "--dir") {
      options.dir = value();
    } else if (flag == "--keep") {
      options.keep = true;
    } else if (flag == "--seed") {
      options.seed = static_cast<std::uint64_t>(parse_count(flag, value()));
    } else {
      die("unknown option '" + flag + "'\n" + kUsage);
    }
  }
  if (options.messages == 0) die("--messages must be at least 1");
  if (options.devices == 0 || options.devices > 10'000'000) die("--devices must be 1 to 10000000");
  if (options.preload_batch == 0) die("--preload-batch must be at least 1");
  if (options.power_loss_messages == 0 || options.power_loss_messages > options.messages) {
    options.power_loss_messages = options.messages;
  }
  return options;
}

// ---------------------------------------------------------------------------
// Small helpers: number formatting, files, the machine.

// 1234567 -> "1,234,567".
std::string grouped(std::int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string grouped(double value) {
  return grouped(static_cast<std::int64_t>(std::llround(value)));
}

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string mebibytes(std::int64_t bytes) {
  return fixed(static_cast<double>(bytes) / (1024.0 * 1024.0), 1) + " MiB";
}

std::int64_t file_size(const std::string& path) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  return error ? 0 : static_cast<std::int64_t>(size);
}

// Writes dirty pages of the file out, so that the next phase's write_bytes
// counts every page it dirties (a page already dirty is not counted again).
void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void sync_database(const std::string& path) {
  sync_file(path);
  sync_file(path + "-wal");
}

void remove_database(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ignored;
    std::filesystem::remove(path + suffix, ignored);
  }
}

std::string first_line_with(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      if (colon == std::string::npos) return line;
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "unknown";
}

std::string read_first_line(const std::string& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

struct Filesystem {
  std::string name;
  bool memory_backed = false;
};

Filesystem filesystem_of(const std::string& path) {
  struct statfs info {};
  if (::statfs(path.c_str(), &info) != 0) return {"unknown", false};
  const auto magic = static_cast<unsigned long>(info.f_type);
  switch (magic) {
    case 0xEF53UL:
      return {"ext2/ext3/ext4", false};
    case 0x01021994UL:
      return {"tmpfs", true};
    case 0x858458F6UL:
      return {"ramfs", true};
    case 0x58465342UL:
      return {"xfs", false};
    case 0x9123683EUL:
      return {"btrfs", false};
    case 0x794C7630UL:
      return {"overlayfs", false};
    case 0x2FC12FC1UL:
      return {"zfs", false};
    case 0x6969UL:
      return {"nfs", false};
    case 0x65735546UL:
      return {"fuse", false};
    default: {
      char text[32];
      std::snprintf(text, sizeof text, "0x%lx", magic);
      return {text, false};
    }
  }
}

std::string utc_now() {
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto text = meter::format_timestamp(now_ms);
  return text.substr(0, 19) + "Z";
}

std::string load_average() {
  std::istringstream in(read_first_line("/proc/loadavg"));
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// /proc/self/io: write_bytes counts bytes this process caused to be sent to
// the block layer (a page counts when it becomes dirty); wchar counts bytes
// passed to write(2) and friends, page cache or not.
struct IoCounters {
  std::int64_t write_bytes = 0;
  std::int64_t cancelled_write_bytes = 0;
  std::int64_t wchar = 0;
};

IoCounters read_io() {
  IoCounters io;
  std::ifstream in("/proc/self/io");
  std::string key;
  std::int64_t value = 0;
  while (in >> key >> value) {
    if (key == "write_bytes:") io.write_bytes = value;
    if (key == "cancelled_write_bytes:") io.cancelled_write_bytes = value;
    if (key == "wchar:") io.wchar = value;
  }
  return io;
}

double cpu_seconds() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What one timed phase cost.
struct Measured {
  std::int64_t count = 0;
  double seconds = 0;
  double cpu = 0;
  std::int64_t disk_bytes = 0;     // write_bytes - cancelled_write_bytes
  std::int64_t logical_bytes = 0;  // wchar

  Measured& operator+=(const Measured& other) {
    count += other.count;
    seconds += other.seconds;
    cpu += other.cpu;
    disk_bytes += other.disk_bytes;
    logical_bytes += other.logical_bytes;
    return *this;
  }
  double rate() const { return seconds > 0 ? static_cast<double>(count) / seconds : 0; }
  double disk_per_item() const {
    return count > 0 ? static_cast<double>(disk_bytes) / static_cast<double>(count) : 0;
  }
};

class Meter {
 public:
  Meter() : io_(read_io()), cpu_(cpu_seconds()), start_(Clock::now()) {}
  Measured stop(std::int64_t count) const {
    Measured m;
    m.seconds = seconds_since(start_);
    m.cpu = cpu_seconds() - cpu_;
    const IoCounters io = read_io();
    m.count = count;
    m.disk_bytes =
        (io.write_bytes - io_.write_bytes) - (io.cancelled_write_bytes - io_.cancelled_write_bytes);
    m.logical_bytes = io.wchar - io_.wchar;
    return m;
  }

 private:
  IoCounters io_;
  double cpu_;
  Clock::time_point start_;
};

// ---------------------------------------------------------------------------
// The workload: seed-format JSON as meters send it.

// Deterministic on every standard library (unlike <random>'s distributions).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : engine_() % n; }
  std::int64_t below(std::int64_t n) {
    return static_cast<std::int64_t>(below(static_cast<std::uint64_t>(n)));
  }
  template <class T>
  void shuffle(std::vector<T>& items) {
    for (std::size_t i = items.size(); i > 1; --i) {
      std::swap(items[i - 1], items[static_cast<std::size_t>(below(std::uint64_t{i}))]);
    }
  }

 private:
  std::mt19937_64 engine_;
};

enum class Unit { wh, kwh, mwh };

struct Device {
  std::string id;
  std::string topic;
  Unit unit = Unit::kwh;
  std::int64_t start_wh = 0;   // register at the first benchmark reading
  std::int64_t step_wh = 0;    // average increase per interval
  std::int64_t offset_ms = 0;  // when in the interval this meter reads
};

std::vector<Device> make_devices(std::int64_t count, std::uint64_t seed) {
  Rng rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<Device> devices(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    auto& d = devices[static_cast<std::size_t>(i)];
    char id[32];
    std::snprintf(id, sizeof id, "meter-%06lld", static_cast<long long>(i));
    d.id = id;
    d.topic = "meters/" + d.id;
    const auto pick = rng.below(std::int64_t{100});
    d.unit = pick < 80 ? Unit::kwh : pick < 95 ? Unit::wh : Unit::mwh;
    d.start_wh = 10'000'000 + rng.below(std::int64_t{400'000'000});  // 10 MWh .. 410 MWh
    d.step_wh = 1 + rng.below(std::int64_t{30});                     // 0.4 .. 11 kW average load
    d.offset_ms = rng.below(kIntervalMs / 1000) * 1000;
  }
  return devices;
}

const char* unit_name(Unit unit) {
  switch (unit) {
    case Unit::wh:
      return "Wh";
    case Unit::kwh:
      return "kWh";
    case Unit::mwh:
      return "MWh";
  }
  return "kWh";
}

// The register (in Wh) as the meter writes it in its own unit: exact decimals.
void append_value(std::string& out, std::int64_t wh, Unit unit) {
  if (wh < 0) {
    out += '-';
    wh = -wh;
  }
  char text[48];
  switch (unit) {
    case Unit::wh:
      std::snprintf(text, sizeof text, "%lld", static_cast<long long>(wh));
      break;
    case Unit::kwh:
      std::snprintf(text, sizeof text, "%lld.%03lld", static_cast<long long>(wh / 1000),
                    static_cast<long long>(wh % 1000));
      break;
    case Unit::mwh:
      std::snprintf(text, sizeof text, "%lld.%06lld", static_cast<long long>(wh / 1'000'000),
                    static_cast<long long>(wh % 1'000'000));
      break;
  }
  out += text;
}

// {"device_id":"meter-000042","timestamp":"2025-01-01T00:00:07Z","metric_type":"energy",
//  "value":1234.567,"unit":"kWh"}
void append_payload(std::string& out, const Device& device, std::int64_t timestamp_ms,
                    std::int64_t wh) {
  std::string timestamp = meter::format_timestamp(timestamp_ms);
  timestamp.erase(19, 4);  // whole seconds, as the seed's meters write them: drop ".000"
  out += R"({"device_id":")";
  out += device.id;
  out += R"(","timestamp":")";
  out += timestamp;
  out += R"(","metric_type":"energy","value":)";
  append_value(out, wh, device.unit);
  out += R"(,"unit":")";
  out += unit_name(device.unit);
  out += R"("})";
}

struct Delivery {
  std::uint32_t device = 0;
  std::uint32_t size = 0;
  std::size_t offset = 0;  // into Workload::arena
  std::int64_t received_ms = 0;
};

struct Workload {
  std::string arena;  // every payload, back to back
  std::vector<Delivery> deliveries;
  std::int64_t readings = 0;  // distinct readings (events)
  std::int64_t repeats = 0;   // exact copies of an earlier message
  std::int64_t delayed = 0;   // readings chosen to be delivered late
  std::int64_t late = 0;      // readings actually delivered after a newer one of their device
  std::int64_t rounds = 0;    // intervals covered

  std::int64_t messages() const { return static_cast<std::int64_t>(deliveries.size()); }
};

// `messages` messages of `devices` meters: one reading per meter per interval,
// meters interleaved (in a different order each interval), counters rising by
// a per-meter load. `out_of_order_pct` of the messages are readings delivered
// 3 to 6 intervals late (so newer readings of their meter came first);
// `repeats_pct` are exact copies of a message delivered shortly before.
Workload make_workload(const std::vector<Device>& devices, std::int64_t messages,
                       double out_of_order_pct, double repeats_pct, std::uint64_t seed) {
  Rng rng(seed);
  const auto device_count = static_cast<std::int64_t>(devices.size());
  Workload w;
  w.repeats = std::llround(static_cast<double>(messages) * repeats_pct / 100.0);
  w.readings = messages - w.repeats;
  w.rounds = (w.readings + device_count - 1) / device_count;

  struct Pending {
    std::uint32_t device;
    std::int64_t timestamp_ms;
    std::int64_t wh;
  };
  std::vector<Pending> readings;
  readings.reserve(static_cast<std::size_t>(w.readings));
  std::vector<std::int64_t> wh(devices.size());
  for (std::size_t d = 0; d < devices.size(); ++d) wh[d] = devices[d].start_wh;
  std::vector<std::uint32_t> order(devices.size());
  for (std::size_t d = 0; d < order.size(); ++d) order[d] = static_cast<std::uint32_t>(d);
  for (std::int64_t round = 0; round < w.rounds; ++round) {
    rng.shuffle(order);
    for (auto d : order) {
      if (static_cast<std::int64_t>(readings.size()) == w.readings) break;
      const Device& device = devices[d];
      readings.push_back({d, kPhaseStartMs + round * kIntervalMs + device.offset_ms, wh[d]});
      wh[d] += rng.below(2 * device.step_wh + 1);
    }
  }

  // Delivery keys: position * 4, +1 for a late reading, +2 for a repeat.
  std::vector<std::int64_t> key(readings.size());
  for (std::size_t k = 0; k < readings.size(); ++k) key[k] = 4 * static_cast<std::int64_t>(k);
  // Only readings with a newer one of their meter after them can be late.
  const std::int64_t candidates =
      std::min<std::int64_t>(w.readings, std::max<std::int64_t>(0, (w.rounds - 1) * device_count));
  std::vector<std::int64_t> pool(static_cast<std::size_t>(candidates));
  for (std::int64_t k = 0; k < candidates; ++k) pool[static_cast<std::size_t>(k)] = k;
  w.delayed = std::min<std::int64_t>(
      candidates, std::llround(static_cast<double>(messages) * out_of_order_pct / 100.0));
  for (std::int64_t i = 0; i < w.delayed; ++i) {  // partial Fisher-Yates: a random subset
    const auto j = i + rng.below(candidates - i);
    std::swap(pool[static_cast<std::size_t>(i)], pool[static_cast<std::size_t>(j)]);
    const auto k = pool[static_cast<std::size_t>(i)];
    key[static_cast<std::size_t>(k)] = 4 * (k + 3 * device_count + rng.below(3 * device_count)) + 1;
  }
  std::vector<std::uint32_t> by_delivery(readings.size());
  for (std::size_t k = 0; k < by_delivery.size(); ++k)
    by_delivery[k] = static_cast<std::uint32_t>(k);
  std::stable_sort(by_delivery.begin(), by_delivery.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return key[a] < key[b]; });

  // Repeats: a copy of the message at delivery position p, 1 to 2*devices
  // messages after it (a meter or bridge sending the same message again).
  struct Slot {
    std::int64_t key;
    std::uint32_t reading;
  };
  std::vector<Slot> slots;
  slots.reserve(static_cast<std::size_t>(messages));
  for (std::size_t p = 0; p < by_delivery.size(); ++p) {
    slots.push_back({4 * static_cast<std::int64_t>(p), by_delivery[p]});
  }
  for (std::int64_t i = 0; i < w.repeats && w.readings > 0; ++i) {
    const auto p = rng.below(w.readings);
    slots.push_back(
        {4 * (p + 1 + rng.below(2 * device_count)) + 2, by_delivery[static_cast<std::size_t>(p)]});
  }
  std::stable_sort(slots.begin(), slots.end(),
                   [](const Slot& a, const Slot& b) { return a.key < b.key; });

  // Payloads are formatted once per reading; a repeat points at the same bytes.
  std::vector<std::size_t> offset(readings.size(), SIZE_MAX);
  std::vector<std::uint32_t> size(readings.size(), 0);
  std::vector<std::int64_t> newest(devices.size(), INT64_MIN);
  std::vector<char> seen(readings.size(), 0);
  w.arena.reserve(static_cast<std::size_t>(w.readings) * 120);
  w.deliveries.reserve(slots.size());
  std::int64_t clock_ms = INT64_MIN;
  std::int64_t newest_anywhere = INT64_MIN;
  for (const auto& slot : slots) {
    const auto& reading = readings[slot.reading];
    if (offset[slot.reading] == SIZE_MAX) {
      offset[slot.reading] = w.arena.size();
      append_payload(w.arena, devices[reading.device], reading.timestamp_ms, reading.wh);
      size[slot.reading] = static_cast<std::uint32_t>(w.arena.size() - offset[slot.reading]);
    }
    if (!seen[slot.reading]) {
      seen[slot.reading] = 1;
      if (reading.timestamp_ms < newest[reading.device]) ++w.late;
      newest[reading.device] = std::max(newest[reading.device], reading.timestamp_ms);
    }
    newest_anywhere = std::max(newest_anywhere, reading.timestamp_ms);
    clock_ms = std::max(clock_ms, newest_anywhere + kReceiveLagMs);
    w.deliveries.push_back({reading.device, size[slot.reading], offset[slot.reading], clock_ms});
  }
  return w;
}

// The preloaded history: `count` in-order readings that end one interval
// before the benchmark's first one, with the same meters and registers.
std::vector<RawMessage> preload_messages(const std::vector<Device>& devices, std::int64_t count,
                                         std::int64_t first, std::int64_t last) {
  const auto device_count = static_cast<std::int64_t>(devices.size());
  const std::int64_t rounds = (count + device_count - 1) / device_count;
  std::vector<RawMessage> batch;
  batch.reserve(static_cast<std::size_t>(last - first));
  for (std::int64_t i = first; i < last; ++i) {
    const std::int64_t round = i / device_count;
    const Device& device = devices[static_cast<std::size_t>(i % device_count)];
    const std::int64_t back = rounds - round;  // intervals before the benchmark's first
    RawMessage message;
    message.topic = device.topic;
    const std::int64_t timestamp_ms = kPhaseStartMs - back * kIntervalMs + device.offset_ms;
    append_payload(message.payload, device, timestamp_ms, device.start_wh - back * device.step_wh);
    message.received_ms = timestamp_ms + kReceiveLagMs;
    batch.push_back(std::move(message));
  }
  return batch;
}

// ---------------------------------------------------------------------------
// The runs.

struct Latency {
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

Latency summarize(std::vector<std::int64_t>& ns) {
  Latency l;
  if (ns.empty()) return l;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    auto index = static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1));
    return static_cast<double>(ns[index]) / 1000.0;
  };
  l.p50_us = at(0.5);
  l.p99_us = at(0.99);
  l.p999_us = at(0.999);
  l.max_us = static_cast<double>(ns.back()) / 1000.0;
  return l;
}

struct RunResult {
  std::string name;
  Durability durability = Durability::normal;
  std::int64_t stored_before = 0;
  const Workload* workload = nullptr;
  std::optional<Measured> baseline;
  Measured append;              // includes append_checkpoints
  Measured append_checkpoints;  // run between appends, off the acknowledge path
  Measured baseline_checkpoints;
  Measured normalize_checkpoints;  // included in normalize
  Latency append_latency;
  Measured normalize;
  Measured first_tenth;  // normalization batches that began in the first 10% of messages
  Measured last_tenth;   // ... that ended in the last 10%
  NormalizeStats stats;
  std::int64_t flagged_out_of_order = 0;
  std::int64_t database_bytes = 0;
  std::int64_t wal_bytes = 0;

  // Acknowledge path: the appends without the checkpoints between them.
  double append_rate() const { return ack_rate(append, append_checkpoints); }
  double baseline_rate() const { return ack_rate(*baseline, baseline_checkpoints); }
  static double ack_rate(const Measured& all, const Measured& checkpoints) {
    const double seconds = all.seconds - checkpoints.seconds;
    return seconds > 0 ? static_cast<double>(all.count) / seconds : 0;
  }

  double disk_per_event() const {
    const auto n = static_cast<double>(workload->messages());
    return static_cast<double>(append.disk_bytes + normalize.disk_bytes) / n;
  }
  double logical_per_event() const {
    const auto n = static_cast<double>(workload->messages());
    return static_cast<double>(append.logical_bytes + normalize.logical_bytes) / n;
  }
};

std::unique_ptr<Buffer> open_buffer(const meter::Config& config) {
  auto opened = Buffer::open(config.buffer);
  if (!opened) die("cannot open the buffer: " + opened.error().message);
  return std::move(*opened);
}

void fill_message(RawMessage& message, const Workload& w, const std::vector<Device>& devices,
                  const Delivery& d) {
  message.topic.assign(devices[d.device].topic);
  message.payload.assign(w.arena, d.offset, d.size);
  message.received_ms = d.received_ms;
}

// The baseline: the same messages into a plain table (no index besides the
// rowid), one autocommit INSERT each, same pragmas as the buffer, through the
// raw C API.
class PlainTable {
 public:
  PlainTable(std::string path, Durability durability) : path_(std::move(path)) {
    remove_database(path_);
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      die("baseline: cannot open " + path_);
    }
    exec("PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;");
    exec(durability == Durability::power_loss ? "PRAGMA synchronous = FULL"
                                              : "PRAGMA synchronous = NORMAL");
    exec("PRAGMA wal_autocheckpoint = 0");  // as the buffer's acknowledge connection
    exec(
        "CREATE TABLE raw (seq INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, topic TEXT NOT "
        "NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retained INTEGER NOT NULL, dup "
        "INTEGER NOT NULL)");
    const char* sql =
        "INSERT INTO raw (received_ms, topic, payload, qos, retained, dup) VALUES (?1, ?2, ?3, "
        "?4, ?5, ?6)";
    if (sqlite3_prepare_v2(db_, sql, -1, &insert_, nullptr) != SQLITE_OK) die("baseline: prepare");
  }
  ~PlainTable() {
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
    remove_database(path_);
  }
  PlainTable(const PlainTable&) = delete;
  PlainTable& operator=(const PlainTable&) = delete;

  const std::string& path() const { return path_; }

  void checkpoint() { exec("PRAGMA wal_checkpoint(PASSIVE)"); }

  void append(const std::string& topic, const char* payload, std::size_t size,
              std::int64_t received_ms) {
    sqlite3_bind_int64(insert_, 1, received_ms);
    sqlite3_bind_text(insert_, 2, topic.data(), static_cast<int>(topic.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert_, 3, payload, static_cast<int>(size), SQLITE_STATIC);
    sqlite3_bind_int(insert_, 4, 1);
    sqlite3_bind_int(insert_, 5, 0);
    sqlite3_bind_int(insert_, 6, 0);
    if (sqlite3_step(insert_) != SQLITE_DONE) die(std::string("baseline: ") + sqlite3_errmsg(db_));
    sqlite3_reset(insert_);
  }

 private:
  void exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string message = error ? error : "unknown error";
      sqlite3_free(error);
      die("baseline: " + sql + ": " + message);
    }
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

// Phase 1 alternates slices of the baseline and of the buffer, so that both
// see the same machine load (it drifts on a shared machine, and fsync times
// with it).
constexpr int kSlices = 20;

// The appending connection never checkpoints (wal_autocheckpoint=0,
// tests/support/raw_appender.hpp): the normalizer's connection does, after
// each run of work. Phase 1 has no normalizer running, so a checkpoint runs
// every batch_size appends; its time is not the acknowledge path's (it is
// reported apart) but the bytes it writes count.
void checkpoint_into(Buffer& buffer, Measured& total) {
  Meter meter;
  if (auto done = buffer.checkpoint(); !done) die("checkpoint: " + done.error().message);
  total += meter.stop(0);
}

// Phase 1 then phase 2 on the buffer at config.buffer.path (which may hold a
// preload). Two connections, as in the daemon: one appends, one normalizes.
RunResult run_phases(const std::string& name, const meter::Config& config, const Workload& w,
                     const std::vector<Device>& devices, std::int64_t stored_before,
                     std::size_t batch_size, PlainTable* baseline) {
  RunResult r;
  r.name = name;
  r.durability = config.buffer.durability;
  r.stored_before = stored_before;
  r.workload = &w;
  auto normalizer = open_buffer(config);
  meter::testing::RawAppender appender(config.buffer);

  std::fprintf(stderr, "  %s: phase 1, %s appends (and as many into the plain table)...\n",
               name.c_str(), grouped(w.messages()).c_str());
  std::vector<std::int64_t> latency(w.deliveries.size());
  RawMessage message;
  Measured plain;
  const std::size_t total = w.deliveries.size();
  for (int slice = 0; slice < kSlices; ++slice) {
    const std::size_t first = total * static_cast<std::size_t>(slice) / kSlices;
    const std::size_t last = total * static_cast<std::size_t>(slice + 1) / kSlices;
    if (baseline) {
      sync_database(baseline->path());
      Meter meter;
      for (std::size_t i = first; i < last; ++i) {
        const Delivery& d = w.deliveries[i];
        baseline->append(devices[d.device].topic, w.arena.data() + d.offset, d.size, d.received_ms);
        if ((i + 1) % batch_size == 0) {
          Meter checkpoint_meter;
          baseline->checkpoint();
          r.baseline_checkpoints += checkpoint_meter.stop(0);
        }
      }
      plain += meter.stop(static_cast<std::int64_t>(last - first));
    }
    sync_database(config.buffer.path);
    Meter meter;
    for (std::size_t i = first; i < last; ++i) {
      fill_message(message, w, devices, w.deliveries[i]);
      const auto start = Clock::now();
      auto seq = appender.append(message);
      latency[i] =
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
      if (!seq) die("append_raw: " + seq.error().message);
      if ((i + 1) % batch_size == 0) checkpoint_into(*normalizer, r.append_checkpoints);
    }
    r.append += meter.stop(static_cast<std::int64_t>(last - first));
  }
  if (baseline) r.baseline = plain;
  r.append_latency = summarize(latency);

  std::fprintf(stderr, "  %s: phase 2, normalizing in batches of %zu...\n", name.c_str(),
               batch_size);
  sync_database(config.buffer.path);
  {
    Meter meter;
    const std::int64_t tenth = std::max<std::int64_t>(1, w.messages() / 10);
    for (;;) {
      const std::int64_t done = r.stats.messages;
      const auto batch_start = Clock::now();
      auto batch = normalizer->normalize_pending(config, batch_size);
      if (!batch) die("normalize_pending: " + batch.error().message);
      if (batch->messages == 0) break;
      r.stats += *batch;
      const double seconds = seconds_since(batch_start);
      if (done < tenth) {
        r.first_tenth.count += batch->messages;
        r.first_tenth.seconds += seconds;
      }
      if (done + batch->messages > w.messages() - tenth) {
        r.last_tenth.count += batch->messages;
        r.last_tenth.seconds += seconds;
      }
    }
    // As the daemon's normalizer does after a run of work.
    checkpoint_into(*normalizer, r.normalize_checkpoints);
    r.normalize = meter.stop(r.stats.messages);
  }

  auto status = normalizer->status();
  if (!status) die("status: " + status.error().message);
  if (auto found = status->flag_counts.find("out_of_order"); found != status->flag_counts.end()) {
    r.flagged_out_of_order = found->second;
  }
  r.database_bytes = file_size(config.buffer.path);
  r.wal_bytes = file_size(config.buffer.path + "-wal");

  // The workload is known, so the outcome is too: anything else is a bug.
  std::vector<std::string> wrong;
  auto expect = [&](const char* what, std::int64_t got, std::int64_t want) {
    if (got != want) {
      wrong.push_back(std::string(what) + " " + std::to_string(got) + ", expected " +
                      std::to_string(want));
    }
  };
  expect("messages normalized", r.stats.messages, w.messages());
  expect("new measurements", r.stats.new_measurements, w.readings);
  expect("duplicates", r.stats.duplicates, w.repeats);
  expect("decode errors", r.stats.decode_errors, 0);
  expect("ignored", r.stats.ignored, 0);
  expect("measurements flagged out_of_order", r.flagged_out_of_order, w.late);
  expect("measurements stored", status->measurements, stored_before + w.readings);
  if (!wrong.empty()) {
    std::string report = name + ": the buffer processed the workload wrongly:";
    for (const auto& line : wrong) report += "\n  " + line;
    die(report);
  }
  return r;
}

struct Preload {
  std::int64_t measurements = 0;
  double append_seconds = 0;
  double normalize_seconds = 0;
  double total_seconds = 0;
};

Preload preload(const meter::Config& config, const std::vector<Device>& devices, std::int64_t count,
                std::int64_t batch) {
  Preload p;
  auto buffer = open_buffer(config);
  const auto start = Clock::now();
  for (std::int64_t first = 0; first < count; first += batch) {
    const std::int64_t last = std::min(count, first + batch);
    auto messages = preload_messages(devices, count, first, last);
    auto t0 = Clock::now();
    auto appended = buffer->append_raw_batch(messages);
    if (!appended) die("preload append_raw_batch: " + appended.error().message);
    auto t1 = Clock::now();
    auto stats = buffer->normalize_pending(config, static_cast<std::size_t>(last - first));
    if (!stats) die("preload normalize_pending: " + stats.error().message);
    if (stats->new_measurements != last - first || stats->messages != last - first) {
      die("preload: " + std::to_string(stats->new_measurements) + " measurements from " +
          std::to_string(last - first) + " messages");
    }
    p.append_seconds += std::chrono::duration<double>(t1 - t0).count();
    p.normalize_seconds += seconds_since(t1);
    p.measurements = last;
    if ((last / batch) % 10 == 0 || last == count) {
      std::fprintf(stderr, "  preload: %s of %s stored (%.0f s)\n", grouped(last).c_str(),
                   grouped(count).c_str(), seconds_since(start));
    }
  }
  // Start the measured phases from a checkpointed, synced database.
  if (auto done = buffer->checkpoint(); !done) die("checkpoint: " + done.error().message);
  buffer.reset();
  sync_database(config.buffer.path);
  p.total_seconds = seconds_since(start);
  return p;
}

// ---------------------------------------------------------------------------
// The report.

std::string rate_or_dash(const Measured& m) { return m.count > 0 ? grouped(m.rate()) : "—"; }

std::string pass_or_miss(bool pass) { return pass ? "**PASS**" : "**MISS**"; }

void print_report(const Options& options, const std::vector<RunResult>& runs,
                  const std::optional<Preload>& preloaded, const Filesystem& fs,
                  const std::string& dir, const std::string& load_at_start, std::size_t batch_size,
                  double total_seconds) {
  struct utsname host {};
  ::uname(&host);
  std::string memory = first_line_with("/proc/meminfo", "MemTotal");
  try {
    memory = fixed(std::stod(memory) / (1024.0 * 1024.0), 1) + " GiB";  // the value is in kB
  } catch (const std::exception&) {
  }

  std::printf("## Results\n\n");
  std::printf("- date: %s\n", utc_now().c_str());
  std::printf("- machine: nproc %ld, CPU %s, RAM %s, Linux %s\n", ::sysconf(_SC_NPROCESSORS_ONLN),
              first_line_with("/proc/cpuinfo", "model name").c_str(), memory.c_str(), host.release);
  std::printf("- filesystem of the database files: %s (%s)%s\n", fs.name.c_str(), dir.c_str(),
              fs.memory_backed ? " — WARNING: memory-backed, write_bytes reads 0 and the rates "
                                 "are not a disk's"
                               : "");
  std::printf(
      "- SQLite %s; buffer pragmas page_size 1024, journal_mode WAL; normalization "
      "batch_size %zu\n",
      sqlite3_libversion(), batch_size);
  std::printf(
      "- load average at start / end: %s / %s (2 cores shared: rates are noisy, ratios "
      "matter)\n",
      load_at_start.c_str(), load_average().c_str());
  std::printf("- command: `%s` (seed %llu); whole run %.0f s\n", options.command_line.c_str(),
              static_cast<unsigned long long>(options.seed), total_seconds);
  std::vector<const Workload*> workloads;
  for (const auto& run : runs) {
    if (std::find(workloads.begin(), workloads.end(), run.workload) == workloads.end()) {
      workloads.push_back(run.workload);
    }
  }
  for (const Workload* workload : workloads) {
    const Workload& w = *workload;
    const auto n = static_cast<double>(w.messages());
    std::printf(
        "- workload (%s messages): %s meters, %s readings over %s intervals of 10 s + %s exact "
        "repeats (%s%%); %s readings delivered late, behind a newer reading of their meter "
        "(%s%%); units per meter: 80%% kWh, 15%% Wh, 5%% MWh\n",
        grouped(w.messages()).c_str(), grouped(options.devices).c_str(),
        grouped(w.readings).c_str(), grouped(w.rounds).c_str(), grouped(w.repeats).c_str(),
        fixed(100.0 * static_cast<double>(w.repeats) / n, 1).c_str(), grouped(w.late).c_str(),
        fixed(100.0 * static_cast<double>(w.late) / n, 1).c_str());
  }
  if (preloaded) {
    std::printf(
        "- preload: %s measurements (in-order history of the same meters, durability normal) via "
        "append_raw_batch + normalize_pending in batches of %s: %.0f s (append %.0f s, normalize "
        "%.0f s, %s measurements/s)\n",
        grouped(preloaded->measurements).c_str(), grouped(options.preload_batch).c_str(),
        preloaded->total_seconds, preloaded->append_seconds, preloaded->normalize_seconds,
        grouped(static_cast<double>(preloaded->measurements) / preloaded->total_seconds).c_str());
  }

  std::printf("\n");
  std::printf(
      "| Run | Messages | Appends/s (commit per message, checkpoints apart) | Plain SQLite "
      "appends/s | Ours / plain "
      "| Normalized events/s | Disk B/event: append + normalize = total | DB / WAL at end |\n");
  std::printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
  for (const auto& run : runs) {
    std::string baseline = "—", ratio = "—";
    if (run.baseline) {
      baseline = grouped(run.baseline_rate());
      ratio = fixed(run.append_rate() / run.baseline_rate(), 2) + "×";
    }
    std::printf("| %s | %s | %s | %s | %s | %s | %s + %s = %s | %s / %s |\n", run.name.c_str(),
                grouped(run.workload->messages()).c_str(), grouped(run.append_rate()).c_str(),
                baseline.c_str(), ratio.c_str(), grouped(run.normalize.rate()).c_str(),
                grouped(run.append.disk_per_item()).c_str(),
                grouped(run.normalize.disk_per_item()).c_str(),
                grouped(run.disk_per_event()).c_str(), mebibytes(run.database_bytes).c_str(),
                mebibytes(run.wal_bytes).c_str());
  }

  std::printf("\n");
  std::printf(
      "| Run | Append latency p50 / p99 / p99.9 / max (µs) | CPU µs/msg: append / its "
      "checkpoints / normalize | "
      "Normalized events/s in first / last 10%% | Plain SQLite disk B/msg | Written via write(2) "
      "B/event | Normalized: new / duplicates / revised / out_of_order |\n");
  std::printf("|---|--:|--:|--:|--:|--:|--:|\n");
  for (const auto& run : runs) {
    const auto n = static_cast<double>(run.workload->messages());
    const auto& l = run.append_latency;
    std::printf(
        "| %s | %s / %s / %s / %s | %s / %s / %s | %s / %s | %s | %s | %s / %s / %s / %s |\n",
        run.name.c_str(), fixed(l.p50_us, 0).c_str(), fixed(l.p99_us, 0).c_str(),
        fixed(l.p999_us, 0).c_str(), fixed(l.max_us, 0).c_str(),
        fixed(1e6 * (run.append.cpu - run.append_checkpoints.cpu) / n, 1).c_str(),
        fixed(1e6 * run.append_checkpoints.cpu / n, 1).c_str(),
        fixed(1e6 * run.normalize.cpu / n, 1).c_str(), rate_or_dash(run.first_tenth).c_str(),
        rate_or_dash(run.last_tenth).c_str(),
        run.baseline ? grouped(run.baseline->disk_per_item()).c_str() : "—",
        grouped(run.logical_per_event()).c_str(), grouped(run.stats.new_measurements).c_str(),
        grouped(run.stats.duplicates).c_str(), grouped(run.stats.revised).c_str(),
        grouped(run.flagged_out_of_order).c_str());
  }

  const RunResult* empty = nullptr;
  const RunResult* stored = nullptr;
  for (const auto& run : runs) {
    if (run.durability != Durability::normal) continue;
    (run.stored_before == 0 ? empty : stored) = &run;
  }
  std::printf("\n| Target (durability normal) | Measured | Result |\n|---|--:|---|\n");
  if (empty) {
    std::printf("| appends/s, empty buffer ≥ %s | %s | %s |\n",
                grouped(kTargetAppendsPerSecond).c_str(), grouped(empty->append_rate()).c_str(),
                pass_or_miss(empty->append_rate() >= kTargetAppendsPerSecond).c_str());
    std::printf("| normalized events/s, empty buffer ≥ %s | %s | %s |\n",
                grouped(kTargetEventsPerSecond).c_str(), grouped(empty->normalize.rate()).c_str(),
                pass_or_miss(empty->normalize.rate() >= kTargetEventsPerSecond).c_str());
  }
  for (const auto* run : {empty, stored}) {
    if (!run) continue;
    std::printf("| disk bytes written per event (append + normalize), %s ≤ %s | %s | %s |\n",
                run == empty ? "empty buffer" : "stored", grouped(kTargetBytesPerEvent).c_str(),
                grouped(run->disk_per_event()).c_str(),
                pass_or_miss(run->disk_per_event() <= kTargetBytesPerEvent).c_str());
  }
  if (empty && stored) {
    const double append_ratio = stored->append_rate() / empty->append_rate();
    const double normalize_ratio = stored->normalize.rate() / empty->normalize.rate();
    std::printf("| appends/s with %s stored ≥ %s × empty | %s× | %s |\n",
                grouped(stored->stored_before).c_str(), fixed(kTargetStoredRatio, 1).c_str(),
                fixed(append_ratio, 2).c_str(),
                pass_or_miss(append_ratio >= kTargetStoredRatio).c_str());
    std::printf("| normalized events/s with %s stored ≥ %s × empty | %s× | %s |\n",
                grouped(stored->stored_before).c_str(), fixed(kTargetStoredRatio, 1).c_str(),
                fixed(normalize_ratio, 2).c_str(),
                pass_or_miss(normalize_ratio >= kTargetStoredRatio).c_str());
  }
  if (!empty) std::printf("| (no durability normal run on an empty buffer) | — | — |\n");
  std::fflush(stdout);
}

// Decoding alone, per payload shape (no buffer): decode_message through the
// mapping, then canonicalize each reading, as the normalizer does.
constexpr const char* kDecodeConfigYaml = R"(
gateway_id: bench-gw
presets_dir: )" METER_SOURCE_DIR R"(/config/presets
metrics:
  energy: {kind: counter, unit: kWh}
  power: {kind: gauge, unit: W}
  uptime: {kind: gauge, unit: s}
mappings:
  - preset: tasmota
  - preset: shelly_rpc
  - preset: seed
)";

struct DecodeCase {
  const char* name;
  const char* topic;
  const char* payload;
};

constexpr DecodeCase kDecodeCases[] = {
    {"seed JSON", "meters/m1",
     R"({"device_id":"meter-000001","timestamp":"2025-01-01T01:00:00+01:00","metric_type":)"
     R"("energy","value":1234.567,"unit":"kWh"})"},
    {"Tasmota SENSOR (ENERGY)", "tele/plug1/SENSOR",
     R"({"Time":"2024-07-01T12:00:00","ENERGY":{"TotalStartTime":"2023-01-15T10:20:30",)"
     R"("Total":123.456,"Yesterday":1.234,"Today":0.567,"Period":12,"Power":45,)"
     R"("ApparentPower":60,"ReactivePower":40,"Factor":0.75,"Voltage":230,"Current":0.261}})"},
    {"Shelly RPC NotifyStatus (2 switches)", "plus2pm/events/rpc",
     R"({"src":"shellyplus2pm-a8032ab12345","dst":"shellyplus2pm-a8032ab12345/events",)"
     R"("method":"NotifyStatus","params":{"ts":1719835200.25,"switch:0":{"id":0,"apower":12.5,)"
     R"("aenergy":{"by_minute":[0.000,0.000,0.000],"minute_ts":1719835200,"total":1234.567}},)"
     R"("switch:1":{"id":1,"apower":15.2,"aenergy":{"total":7.5}}}})"},
};

void print_decode_rates(std::int64_t iterations) {
  auto parsed = meter::parse_config(kDecodeConfigYaml, "<meter_bench decode>");
  if (!parsed) die("decode config: " + parsed.error().message);
  const meter::Config& config = *parsed;
  std::printf("\n| Decode + canonicalize (no buffer), one core | Messages/s | Readings/s |\n");
  std::printf("|---|--:|--:|\n");
  for (const DecodeCase& c : kDecodeCases) {
    const meter::MappingConfig* mapping = config.mapping_for(c.topic);
    if (mapping == nullptr) die(std::string("decode: no mapping for ") + c.topic);
    std::int64_t readings = 0;
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < iterations; ++i) {
      auto decoded = meter::decode_message(*mapping, c.topic, c.payload);
      if (!decoded || decoded->readings.empty()) die(std::string("decode failed: ") + c.name);
      for (const auto& reading : decoded->readings) {
        auto canonical = meter::canonicalize(reading, config, mapping->timestamp, kPhaseStartMs);
        if (!canonical) die(std::string("canonicalize failed: ") + c.name);
        ++readings;
      }
    }
    const double seconds = seconds_since(start);
    std::printf("| %s | %s | %s |\n", c.name,
                grouped(static_cast<double>(iterations) / seconds).c_str(),
                grouped(static_cast<double>(readings) / seconds).c_str());
  }
  std::fflush(stdout);
}

std::string make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "meter-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp " + pattern + ": " + std::strerror(errno));
  return pattern;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  const auto start = Clock::now();
  const std::string load_at_start = load_average();

  const bool own_dir = options.dir.empty();
  const std::string dir = own_dir ? make_temp_dir() : options.dir;
  if (own_dir && !options.keep) created_dir = dir;
  if (!own_dir) {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) die("--dir " + dir + ": " + error.message());
  }
  const Filesystem fs = filesystem_of(dir);
  if (fs.memory_backed) {
    std::fprintf(stderr,
                 "meter_bench: WARNING: %s is on %s: write_bytes reads 0 there and the rates are "
                 "not those of a disk; use --dir on a real disk\n",
                 dir.c_str(), fs.name.c_str());
  }

  auto parsed = meter::parse_config(kConfigYaml, "<meter_bench>");
  if (!parsed) die("config: " + parsed.error().message);
  meter::Config config = *parsed;
  const std::size_t batch_size =
      options.batch_size > 0 ? options.batch_size : config.normalize.batch_size;
  config.normalize.batch_size = batch_size;

  const auto devices = make_devices(options.devices, options.seed);
  std::fprintf(stderr, "meter_bench: generating the workload...\n");
  const Workload normal_workload = make_workload(
      devices, options.messages, options.out_of_order_pct, options.repeats_pct, options.seed);
  std::optional<Workload> power_loss_workload;
  if (options.run_power_loss && options.power_loss_messages != options.messages) {
    power_loss_workload =
        make_workload(devices, options.power_loss_messages, options.out_of_order_pct,
                      options.repeats_pct, options.seed);
  }

  const std::string baseline_path = (std::filesystem::path(dir) / "baseline.db").string();
  const std::string stored_path = (std::filesystem::path(dir) / "stored.db").string();
  std::vector<RunResult> runs;
  std::optional<Preload> preloaded;
  auto file_config = [&](const std::string& path, Durability durability) {
    meter::Config c = config;
    c.buffer.path = path;
    c.buffer.durability = durability;
    remove_database(path);
    return c;
  };

  // The preload comes first, so that the empty and the stored runs are
  // measured back to back (the machine is shared: its load drifts).
  if (options.run_normal && options.preload > 0) {
    std::fprintf(stderr, "meter_bench: preloading %s measurements...\n",
                 grouped(options.preload).c_str());
    preloaded = preload(file_config(stored_path, Durability::normal), devices, options.preload,
                        options.preload_batch);
  }

  auto run = [&](const std::string& name, Durability durability, const Workload& w) {
    std::fprintf(stderr, "meter_bench: %s\n", name.c_str());
    const std::string path = (std::filesystem::path(dir) / "buffer.db").string();
    std::optional<PlainTable> baseline;
    if (options.baseline) baseline.emplace(baseline_path, durability);
    RunResult result = run_phases(name, file_config(path, durability), w, devices, 0, batch_size,
                                  baseline ? &*baseline : nullptr);
    if (!options.keep) remove_database(path);
    runs.push_back(std::move(result));
  };

  if (options.run_normal) {
    run("normal, empty", Durability::normal, normal_workload);
    if (preloaded) {
      const std::string name = "normal, " + grouped(preloaded->measurements) + " stored";
      std::fprintf(stderr, "meter_bench: %s\n", name.c_str());
      meter::Config c = config;
      c.buffer.path = stored_path;
      c.buffer.durability = Durability::normal;
      std::optional<PlainTable> baseline;
      if (options.baseline) baseline.emplace(baseline_path, Durability::normal);
      runs.push_back(run_phases(name, c, normal_workload, devices, preloaded->measurements,
                                batch_size, baseline ? &*baseline : nullptr));
    }
  }
  if (!options.keep) remove_database(stored_path);
  if (options.run_power_loss) {
    const Workload& w = power_loss_workload ? *power_loss_workload : normal_workload;
    run("power_loss, empty", Durability::power_loss, w);
  }

  print_report(options, runs, preloaded, fs, dir, load_at_start, batch_size, seconds_since(start));
  print_decode_rates(std::max<std::int64_t>(1000, options.messages / 5));
  if (own_dir && !options.keep) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return 0;
}
