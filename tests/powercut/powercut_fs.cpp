// The power-cut filesystem (powercut_fs.hpp). One FUSE thread answers the
// kernel, one operation at a time, under State::mutex; the test thread arms,
// waits and powers on under the same mutex.
//
// The namespace is kept here (path → node), each file's data in a store file
// named by its node id: a rename or removal changes no store file, so the
// entries a cut brings back still find their data. For each file, the blocks
// written since its last sync keep their content as of that sync (their
// pre-image); a cut writes pre-images back (all, or those the seeded draw
// loses) and the size back to the synced one.
#define FUSE_USE_VERSION 31

#include "powercut/powercut_fs.hpp"

#include <fcntl.h>
#include <fuse3/fuse.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <vector>

namespace meter::test {

namespace {

constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kSector = 512;

bool ends_with(const std::string& text, const std::string& tail) {
  return text.size() >= tail.size() &&
         text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

const char* name_of(CutKind kind) {
  switch (kind) {
    case CutKind::any:
      return "any";
    case CutKind::create:
      return "create";
    case CutKind::rename:
      return "rename";
    case CutKind::fsync:
      return "fsync";
    case CutKind::wal:
      return "wal";
    case CutKind::checkpoint:
      return "checkpoint";
    case CutKind::unlink:
      return "unlink";
    case CutKind::write:
      return "write";
  }
  return "?";
}

struct Node {
  std::uint64_t id = 0;
  bool directory = false;
  mode_t mode = 0;
  int fd = -1;  // the store file (files only)
  std::string store_path;
  int open_count = 0;
  std::uint64_t durable_size = 0;
  std::map<std::uint64_t, std::string> pre_images;  // block → its content at the last sync
  std::optional<std::uint64_t> last_block;          // the block written last
};
using NodePtr = std::shared_ptr<Node>;

struct PowerCutFs::State {
  std::string store;
  std::mutex mutex;
  std::condition_variable changed;
  std::uint64_t next_id = 1;
  std::map<std::uint64_t, NodePtr> nodes;
  std::map<std::string, NodePtr> current;  // what processes see
  std::map<std::string, NodePtr> durable;  // what a cut leaves
  std::map<CutKind, std::int64_t> counts;
  std::int64_t wal_syncs = 0;
  bool powered = true;
  // The armed cut.
  std::optional<CutKind> armed_kind;
  std::int64_t armed_remaining = 0;
  CutMode cut_mode = CutMode::drop_all;
  std::uint64_t seed = 0;
  CutKind last_cut = CutKind::any;
  std::chrono::microseconds sync_delay{0};  // added to every sync (set_sync_delay)

  static State& get() { return *static_cast<State*>(fuse_get_context()->private_data); }

  NodePtr make_node(bool directory, mode_t mode) {
    auto node = std::make_shared<Node>();
    node->id = next_id++;
    node->directory = directory;
    node->mode = mode;
    if (!directory) {
      node->store_path = store + "/" + std::to_string(node->id);
      node->fd = ::open(node->store_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (node->fd < 0) return nullptr;
    }
    nodes[node->id] = node;
    return node;
  }

  NodePtr find(const std::string& path) {
    auto found = current.find(path);
    return found == current.end() ? nullptr : found->second;
  }

  // Counts an operation of `kind`; true if the power is (now) off: the
  // operation must fail without effect.
  bool cut_here(CutKind kind) {
    if (!powered) return true;
    ++counts[kind];
    ++counts[CutKind::any];
    if (armed_kind && (*armed_kind == kind || *armed_kind == CutKind::any)) {
      if (--armed_remaining <= 0) {
        armed_kind.reset();
        powered = false;
        last_cut = kind;
        changed.notify_all();
        return true;
      }
    }
    return false;
  }

  std::uint64_t size_of(const Node& node) {
    struct stat info {};
    if (::fstat(node.fd, &info) != 0) return 0;
    return static_cast<std::uint64_t>(info.st_size);
  }

  // Keeps the synced content of the blocks in [from, to) before they change.
  void keep_pre_images(Node& node, std::uint64_t from, std::uint64_t to) {
    if (to <= from) return;
    for (std::uint64_t block = from / kBlock; block <= (to - 1) / kBlock; ++block) {
      if (node.pre_images.count(block) != 0) continue;
      std::string content;
      const std::uint64_t start = block * kBlock;
      if (start < node.durable_size) {
        content.resize(std::min(kBlock, node.durable_size - start));
        const auto n = ::pread(node.fd, content.data(), content.size(), static_cast<off_t>(start));
        content.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
      }
      node.pre_images.emplace(block, std::move(content));
    }
  }

  void synced(Node& node) {
    node.pre_images.clear();
    node.last_block.reset();
    node.durable_size = size_of(node);
  }

  void collect_garbage() {
    std::set<std::uint64_t> used;
    for (const auto& entry : current) used.insert(entry.second->id);
    for (const auto& entry : durable) used.insert(entry.second->id);
    for (auto it = nodes.begin(); it != nodes.end();) {
      const auto& node = it->second;
      if (used.count(node->id) == 0 && node->open_count == 0) {
        if (node->fd >= 0) {
          ::close(node->fd);
          ::unlink(node->store_path.c_str());
        }
        it = nodes.erase(it);
      } else {
        ++it;
      }
    }
  }

  // The children of `directory` in `names` (one level).
  static std::vector<std::string> children(const std::map<std::string, NodePtr>& names,
                                           const std::string& directory) {
    std::vector<std::string> found;
    const std::string prefix = directory == "/" ? "/" : directory + "/";
    for (auto it = names.lower_bound(prefix); it != names.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      if (it->first.find('/', prefix.size()) == std::string::npos) found.push_back(it->first);
    }
    return found;
  }

  // The cut, applied: the namespace and every file's data as the disk had them.
  void revert(std::int64_t& blocks, std::int64_t& entries) {
    // Entries: those synced in their directory, under a directory that is itself there.
    std::map<std::string, NodePtr> kept;
    for (const auto& [path, node] : durable) {
      bool reachable = true;
      for (auto up = parent_of(path); up != "/"; up = parent_of(up)) {
        const auto found = durable.find(up);
        if (found == durable.end() || !found->second->directory) {
          reachable = false;
          break;
        }
      }
      if (path == "/" || reachable) kept[path] = node;
    }
    for (const auto& [path, node] : current) {
      auto found = kept.find(path);
      if (found == kept.end() || found->second != node) ++entries;
    }
    for (const auto& [path, node] : kept) {
      if (current.count(path) == 0) ++entries;
    }
    current = kept;
    durable = kept;
    collect_garbage();
    std::mt19937_64 random(seed);
    for (auto& [id, node] : nodes) {
      if (node->directory) continue;
      const std::uint64_t size = size_of(*node);
      if (node->pre_images.empty() && size == node->durable_size) continue;
      std::map<std::uint64_t, bool> survives;
      std::uint64_t new_size = node->durable_size;
      if (cut_mode == CutMode::random_blocks) {
        for (const auto& entry : node->pre_images) survives[entry.first] = (random() & 1) != 0;
        if (size >= node->durable_size) {
          for (const auto& [block, kept_block] : survives) {
            if (kept_block && block * kBlock < size) {
              new_size = std::max(new_size, std::min(size, (block + 1) * kBlock));
            }
          }
        } else if ((random() & 1) != 0) {
          new_size = size;  // the truncation reached the disk
        }
      }
      if (::ftruncate(node->fd, static_cast<off_t>(new_size)) != 0) continue;
      for (const auto& [block, pre_image] : node->pre_images) {
        const std::uint64_t start = block * kBlock;
        if (start >= new_size) continue;
        const std::uint64_t length = std::min(kBlock, new_size - start);
        std::string old = pre_image;
        old.resize(length, '\0');  // beyond the synced size: nothing was there
        std::uint64_t from = 0;    // bytes of the new content that stay
        if (survives[block]) {
          if (node->last_block != block) continue;
          from = std::min(length, (random() % (kBlock / kSector)) * kSector);  // torn
        }
        ++blocks;
        if (from < length) {
          const auto written = ::pwrite(node->fd, old.data() + from, length - from,
                                        static_cast<off_t>(start + from));
          (void)written;
        }
      }
      synced(*node);
    }
  }
};

namespace {

using State = PowerCutFs::State;

Node* handle(struct fuse_file_info* fi) {
  auto& state = State::get();
  auto found = state.nodes.find(fi->fh);
  return found == state.nodes.end() ? nullptr : found->second.get();
}

void fill_stat(State& state, const Node& node, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = node.id;
  st->st_uid = ::getuid();
  st->st_gid = ::getgid();
  if (node.directory) {
    st->st_mode = S_IFDIR | (node.mode & 07777);
    st->st_nlink = 2;
  } else {
    struct stat info {};
    ::fstat(node.fd, &info);
    st->st_mode = S_IFREG | (node.mode & 07777);
    st->st_nlink = 1;
    st->st_size = info.st_size;
    st->st_blocks = info.st_blocks;
    st->st_blksize = static_cast<blksize_t>(kBlock);
    st->st_atim = info.st_atim;
    st->st_mtim = info.st_mtim;
    st->st_ctim = info.st_ctim;
  }
  (void)state;
}

void* on_init(struct fuse_conn_info*, struct fuse_config* config) {
  config->entry_timeout = 0;
  config->attr_timeout = 0;
  config->negative_timeout = 0;
  config->use_ino = 1;
  config->hard_remove = 1;  // no .fuse_hidden files: a removed open file keeps its node
  config->nullpath_ok = 0;  // paths name the kinds of writes and syncs
  return fuse_get_context()->private_data;
}

int on_getattr(const char* path, struct stat* st, struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  if (fi != nullptr) {
    if (auto* node = handle(fi)) {
      fill_stat(state, *node, st);
      return 0;
    }
  }
  if (path == nullptr) return -ENOENT;
  auto node = state.find(path);
  if (!node) return -ENOENT;
  fill_stat(state, *node, st);
  return 0;
}

int on_readdir(const char* path, void* buffer, fuse_fill_dir_t fill, off_t, struct fuse_file_info*,
               enum fuse_readdir_flags) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  auto node = state.find(path);
  if (!node || !node->directory) return -ENOTDIR;
  fill(buffer, ".", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  fill(buffer, "..", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  for (const auto& child : State::children(state.current, path)) {
    const auto name = child.substr(child.rfind('/') + 1);
    fill(buffer, name.c_str(), nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  }
  return 0;
}

int on_mkdir(const char* path, mode_t mode) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (state.cut_here(CutKind::create)) return -EIO;
  auto parent = state.find(parent_of(path));
  if (!parent || !parent->directory) return -ENOENT;
  if (state.find(path)) return -EEXIST;
  state.current[path] = state.make_node(true, mode);
  return 0;
}

int on_rmdir(const char* path) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (state.cut_here(CutKind::unlink)) return -EIO;
  auto node = state.find(path);
  if (!node) return -ENOENT;
  if (!node->directory) return -ENOTDIR;
  if (!State::children(state.current, path).empty()) return -ENOTEMPTY;
  state.current.erase(path);
  state.collect_garbage();
  return 0;
}

int on_unlink(const char* path) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (state.cut_here(CutKind::unlink)) return -EIO;
  auto node = state.find(path);
  if (!node) return -ENOENT;
  if (node->directory) return -EISDIR;
  state.current.erase(path);
  state.collect_garbage();
  return 0;
}

int on_rename(const char* from, const char* to, unsigned int flags) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (state.cut_here(CutKind::rename)) return -EIO;
  if (flags != 0) return -EINVAL;  // RENAME_NOREPLACE / EXCHANGE: not needed here
  auto node = state.find(from);
  if (!node) return -ENOENT;
  auto parent = state.find(parent_of(to));
  if (!parent || !parent->directory) return -ENOENT;
  const std::string source = from;
  const std::string target = to;
  if (auto existing = state.find(target)) {
    if (existing->directory != node->directory) return node->directory ? -ENOTDIR : -EISDIR;
    if (existing->directory && !State::children(state.current, target).empty()) return -ENOTEMPTY;
  }
  // A directory moves with everything under it.
  std::vector<std::pair<std::string, NodePtr>> moved;
  const std::string prefix = source + "/";
  for (auto it = state.current.begin(); it != state.current.end();) {
    if (it->first == source || it->first.compare(0, prefix.size(), prefix) == 0) {
      moved.emplace_back(target + it->first.substr(source.size()), it->second);
      it = state.current.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [path, moved_node] : moved) state.current[path] = moved_node;
  state.collect_garbage();
  return 0;
}

int open_node(State& state, const NodePtr& node, struct fuse_file_info* fi, const char* path) {
  if ((fi->flags & O_TRUNC) != 0) {
    const auto size = state.size_of(*node);
    state.keep_pre_images(*node, 0, size);
    if (::ftruncate(node->fd, 0) != 0) return -errno;
  }
  ++node->open_count;
  fi->fh = node->id;
  // SQLite maps its -shm file into memory: that needs the page cache.
  fi->direct_io = ends_with(path, "-shm") ? 0 : 1;
  fi->keep_cache = 0;
  return 0;
}

int on_create(const char* path, mode_t mode, struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (auto existing = state.find(path)) {
    if (!state.powered) return -EIO;
    if ((fi->flags & O_EXCL) != 0) return -EEXIST;
    return open_node(state, existing, fi, path);
  }
  if (state.cut_here(CutKind::create)) return -EIO;
  auto parent = state.find(parent_of(path));
  if (!parent || !parent->directory) return -ENOENT;
  auto node = state.make_node(false, mode);
  if (!node) return -EIO;
  state.current[path] = node;
  return open_node(state, node, fi, path);
}

int on_open(const char* path, struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  auto node = state.find(path);
  if (!node) return -ENOENT;
  if (node->directory) return -EISDIR;
  return open_node(state, node, fi, path);
}

int on_read(const char*, char* buffer, size_t size, off_t offset, struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  auto* node = handle(fi);
  if (node == nullptr) return -EBADF;
  const auto n = ::pread(node->fd, buffer, size, offset);
  return n < 0 ? -errno : static_cast<int>(n);
}

CutKind kind_of_write(const std::string& path) {
  if (ends_with(path, "-wal")) return CutKind::wal;
  if (ends_with(path, ".db")) return CutKind::checkpoint;
  return CutKind::write;
}

int on_write(const char* path, const char* buffer, size_t size, off_t offset,
             struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  auto* node = handle(fi);
  if (node == nullptr) return state.powered ? -EBADF : -EIO;
  if (state.cut_here(kind_of_write(path == nullptr ? "" : path))) return -EIO;
  const auto start = static_cast<std::uint64_t>(offset);
  state.keep_pre_images(*node, std::min(start, state.size_of(*node)), start + size);
  const auto n = ::pwrite(node->fd, buffer, size, offset);
  if (n < 0) return -errno;
  if (n > 0) node->last_block = (start + static_cast<std::uint64_t>(n) - 1) / kBlock;
  return static_cast<int>(n);
}

int on_truncate(const char* path, off_t size, struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  Node* node = fi != nullptr ? handle(fi) : nullptr;
  NodePtr by_path;
  if (node == nullptr && path != nullptr) {
    by_path = state.find(path);
    node = by_path.get();
  }
  if (node == nullptr) return -ENOENT;
  if (node->directory) return -EISDIR;
  const auto now = state.size_of(*node);
  const auto wanted = static_cast<std::uint64_t>(size);
  state.keep_pre_images(*node, std::min(now, wanted), std::max(now, wanted));
  return ::ftruncate(node->fd, size) == 0 ? 0 : -errno;
}

// The slow disk of set_sync_delay: the sync's time, before its effect. Not
// under the state's lock, so the test thread can still arm, cut and count.
void slow_sync(State& state) {
  std::chrono::microseconds delay{0};
  {
    std::lock_guard lock(state.mutex);
    delay = state.sync_delay;
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);  // the disk's time, not a wait
}

int on_fsync(const char* path, int, struct fuse_file_info* fi) {
  auto& state = State::get();
  slow_sync(state);
  std::lock_guard lock(state.mutex);
  auto* node = handle(fi);
  if (node == nullptr) return state.powered ? -EBADF : -EIO;
  if (state.cut_here(CutKind::fsync)) return -EIO;
  state.synced(*node);
  if (path != nullptr && ends_with(path, "-wal")) ++state.wal_syncs;
  return 0;
}

int on_fsyncdir(const char* path, int, struct fuse_file_info*) {
  auto& state = State::get();
  slow_sync(state);
  std::lock_guard lock(state.mutex);
  if (state.cut_here(CutKind::fsync)) return -EIO;
  if (path == nullptr) return -ENOENT;
  const std::string directory = path;
  for (const auto& child : State::children(state.durable, directory)) state.durable.erase(child);
  for (const auto& child : State::children(state.current, directory)) {
    state.durable[child] = state.current[child];
  }
  state.collect_garbage();
  return 0;
}

int on_release(const char*, struct fuse_file_info* fi) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (auto* node = handle(fi)) --node->open_count;
  state.collect_garbage();
  return 0;
}

int on_flush(const char*, struct fuse_file_info*) { return 0; }
int on_opendir(const char* path, struct fuse_file_info*) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  auto node = state.find(path);
  if (!node) return -ENOENT;
  return node->directory ? 0 : -ENOTDIR;
}
int on_releasedir(const char*, struct fuse_file_info*) { return 0; }
int on_chmod(const char* path, mode_t mode, struct fuse_file_info*) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  if (path == nullptr) return 0;
  auto node = state.find(path);
  if (!node) return -ENOENT;
  node->mode = mode;
  return 0;
}
int on_chown(const char*, uid_t, gid_t, struct fuse_file_info*) { return 0; }
int on_utimens(const char*, const struct timespec*, struct fuse_file_info*) { return 0; }
int on_access(const char* path, int) {
  auto& state = State::get();
  std::lock_guard lock(state.mutex);
  if (!state.powered) return -EIO;
  return state.find(path) ? 0 : -ENOENT;
}
int on_statfs(const char*, struct statvfs* info) {
  auto& state = State::get();
  return ::statvfs(state.store.c_str(), info) == 0 ? 0 : -errno;
}

}  // namespace

PowerCutFs::PowerCutFs(std::string store, std::string mountpoint)
    : mountpoint_(std::move(mountpoint)), state_(std::make_unique<State>()) {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    throw std::runtime_error("/dev/fuse is not usable (" + std::string(std::strerror(errno)) +
                             "): the power-cut filesystem cannot be mounted");
  }
  std::filesystem::create_directories(store);
  std::filesystem::create_directories(mountpoint_);
  state_->store = store;
  auto root = state_->make_node(true, 0755);
  state_->current["/"] = root;
  state_->durable["/"] = root;

  static const struct fuse_operations operations = [] {
    struct fuse_operations o {};
    o.init = on_init;
    o.getattr = on_getattr;
    o.readdir = on_readdir;
    o.mkdir = on_mkdir;
    o.rmdir = on_rmdir;
    o.unlink = on_unlink;
    o.rename = on_rename;
    o.create = on_create;
    o.open = on_open;
    o.read = on_read;
    o.write = on_write;
    o.truncate = on_truncate;
    o.fsync = on_fsync;
    o.fsyncdir = on_fsyncdir;
    o.release = on_release;
    o.flush = on_flush;
    o.opendir = on_opendir;
    o.releasedir = on_releasedir;
    o.chmod = on_chmod;
    o.chown = on_chown;
    o.utimens = on_utimens;
    o.access = on_access;
    o.statfs = on_statfs;
    return o;
  }();
  const char* argv[] = {"powercut", "-o", "fsname=powercut,subtype=powercut"};
  struct fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fuse_ = fuse_new(&args, &operations, sizeof operations, state_.get());
  fuse_opt_free_args(&args);
  if (fuse_ == nullptr) throw std::runtime_error("fuse_new failed");
  if (fuse_mount(fuse_, mountpoint_.c_str()) != 0) {
    fuse_destroy(fuse_);
    throw std::runtime_error("cannot mount the power-cut filesystem at " + mountpoint_ +
                             " (FUSE: is /dev/fuse usable and fusermount3 installed?)");
  }
  loop_ = std::thread([this] { fuse_loop(fuse_); });
}

PowerCutFs::~PowerCutFs() {
  power_on();  // nothing waits on a dead filesystem
  fuse_exit(fuse_);
  fuse_unmount(fuse_);
  if (loop_.joinable()) loop_.join();
  fuse_destroy(fuse_);
}

void PowerCutFs::arm(CutKind kind, std::int64_t nth, CutMode mode, std::uint64_t seed) {
  std::lock_guard lock(state_->mutex);
  state_->armed_kind = kind;
  state_->armed_remaining = std::max<std::int64_t>(1, nth);
  state_->cut_mode = mode;
  state_->seed = seed;
}

void PowerCutFs::cut_now(CutMode mode, std::uint64_t seed) {
  std::lock_guard lock(state_->mutex);
  state_->armed_kind.reset();
  state_->powered = false;
  state_->cut_mode = mode;
  state_->seed = seed;
  state_->last_cut = CutKind::any;
  state_->changed.notify_all();
}

bool PowerCutFs::wait_for_cut(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return !state_->powered; });
}

bool PowerCutFs::powered() {
  std::lock_guard lock(state_->mutex);
  return state_->powered;
}

void PowerCutFs::power_on() {
  std::lock_guard lock(state_->mutex);
  if (state_->powered) return;
  std::int64_t blocks = 0;
  std::int64_t entries = 0;
  state_->revert(blocks, entries);
  reverted_blocks_ = blocks;
  reverted_entries_ = entries;
  state_->armed_kind.reset();
  state_->powered = true;
}

void PowerCutFs::set_sync_delay(std::chrono::microseconds delay) {
  std::lock_guard lock(state_->mutex);
  state_->sync_delay = delay;
}

std::int64_t PowerCutFs::operations(CutKind kind) {
  std::lock_guard lock(state_->mutex);
  return state_->counts[kind];
}

std::int64_t PowerCutFs::wal_syncs() {
  std::lock_guard lock(state_->mutex);
  return state_->wal_syncs;
}

CutKind PowerCutFs::last_cut_kind() {
  std::lock_guard lock(state_->mutex);
  return state_->last_cut;
}

}  // namespace meter::test
