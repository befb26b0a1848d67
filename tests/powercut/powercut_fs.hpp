// A filesystem for tests that can lose power (FUSE, libfuse3): a passthrough
// to a store directory that remembers every write not yet made durable and, on
// command, cuts the power. What a power cut keeps is what the disk had:
//   - file data as of its last fsync/fdatasync; of the writes after it, none
//     (CutMode::drop_all) or a seeded random subset of 4 KiB blocks, the last
//     block written torn at a 512-byte sector (CutMode::random_blocks);
//   - directory entries (creations, renames, removals, mkdir) as of the last
//     fsync of their directory: an entry never synced is gone, a removed or
//     renamed one is back where it was.
// A cut is placed at the n-th operation of a kind (a created file or
// directory, a rename, an fsync of a file or directory, a write to a SQLite
// WAL, a write to a database file: a checkpoint, an unlink) or of any kind.
// The operation it falls on fails, and so does every one after it, until
// power_on(): that applies the cut to the store and answers again.
//
// The kernel is told to cache nothing (entries, attributes, file data: direct
// I/O; only SQLite's -shm files, which SQLite maps into memory, go through the
// page cache, dropped at every open), so what a process reads after
// power_on() is what the cut left.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

struct fuse;

namespace meter::test {

enum class CutKind { any, create, rename, fsync, wal, checkpoint, unlink, write };
const char* name_of(CutKind kind);

enum class CutMode {
  drop_all,       // every write since the last sync is lost
  random_blocks,  // each unsynced 4 KiB block survives or not (seeded); the last one torn
};

class PowerCutFs {
 public:
  // Mounts a new filesystem at `mountpoint` (an empty directory), kept in
  // `store` (an empty directory). Throws std::runtime_error, saying why, if
  // /dev/fuse is missing or the mount fails: a test that needs it fails.
  PowerCutFs(std::string store, std::string mountpoint);
  ~PowerCutFs();  // unmounts
  PowerCutFs(const PowerCutFs&) = delete;
  PowerCutFs& operator=(const PowerCutFs&) = delete;

  // The power goes at the `nth` operation of `kind` from now (1: the next).
  void arm(CutKind kind, std::int64_t nth, CutMode mode, std::uint64_t seed);
  // Cuts the power now (between operations).
  void cut_now(CutMode mode, std::uint64_t seed);
  // Blocks until the power is off (an armed cut came) or `timeout` passed.
  bool wait_for_cut(std::chrono::milliseconds timeout);
  bool powered();
  // Applies the cut to the store and powers on: every operation works again
  // on what the cut left.
  void power_on();

  // Makes every fsync/fdatasync (of a file or a directory) take `delay` more,
  // as on a slow disk (an SD card: milliseconds per sync), to measure what
  // the agent does there. The filesystem answers one request at a time, so a
  // sync in progress also holds back the requests behind it, as a busy card
  // does.
  void set_sync_delay(std::chrono::microseconds delay);

  // Operations of each kind since the mount (any: all counted ones).
  std::int64_t operations(CutKind kind);
  // fsyncs of SQLite WAL files (names ending in -wal) since the mount.
  std::int64_t wal_syncs();
  // The kind of operation the last cut fell on (any: cut_now).
  CutKind last_cut_kind();
  // Unsynced 4 KiB blocks and directory entries the last power_on reverted.
  std::int64_t reverted_blocks() { return reverted_blocks_; }
  std::int64_t reverted_entries() { return reverted_entries_; }

  // The FUSE callbacks (powercut_fs.cpp) work on this.
  struct State;

 private:
  std::string mountpoint_;
  std::unique_ptr<State> state_;
  struct fuse* fuse_ = nullptr;
  std::thread loop_;
  std::int64_t reverted_blocks_ = 0;
  std::int64_t reverted_entries_ = 0;
};

}  // namespace meter::test
