#include "common/util/durable_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace meter {
namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status sync_directory(const std::string& path) {
  const auto directory = directory_of(path);
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error{directory + ": " + std::strerror(errno)};
  const bool synced = ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!synced) return Error{directory + ": cannot sync: " + std::strerror(error)};
  return Ok{};
}

}  // namespace

Status replace_file_durably(const std::string& path, std::string_view text) {
  const auto temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error{temporary + ": " + std::strerror(errno)};
  std::size_t written = 0;
  while (written < text.size()) {
    const auto n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  const bool ok = written == text.size() && ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) {
    (void)::unlink(temporary.c_str());
    return Error{temporary + ": cannot write: " + std::strerror(error)};
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return Error{path + ": cannot replace: " + std::strerror(errno)};
  }
  return sync_directory(path);
}

Status remove_file_durably(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error{path + ": cannot remove: " + std::strerror(errno)};
  }
  return sync_directory(path);
}

}  // namespace meter
