// The power-cut filesystem (tests/powercut/powercut_fs.hpp) as a process of
// its own, for the soak (tests/soak/soak.py), which runs the agent on it and
// cuts the power on its schedule:
//
//   soak_powercut_mount STORE MOUNTPOINT
//
// prints `mounted` once the filesystem answers, then reads commands on stdin,
// one a line, and answers each with one line on stdout:
//   cut SEED  -> `cut`: the power goes now (each unsynced 4 KiB block
//                survives or not, seeded; the last one torn)
//   on        -> `on reverted_blocks=N reverted_entries=M`: the cut applied
//                to the store, the power back
// End of input, SIGTERM or SIGINT: powers on, unmounts, exits 0.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>

#include "powercut/powercut_fs.hpp"

namespace {

using meter::test::CutMode;
using meter::test::PowerCutFs;

// Answers one command; false when the line is not one.
bool answer(PowerCutFs& fs, const std::string& line) {
  std::istringstream words(line);
  std::string command;
  words >> command;
  if (command == "cut") {
    std::uint64_t seed = 1;
    words >> seed;
    fs.cut_now(CutMode::random_blocks, seed);
    std::cout << "cut" << std::endl;
    return true;
  }
  if (command == "on") {
    fs.power_on();
    std::cout << "on reverted_blocks=" << fs.reverted_blocks()
              << " reverted_entries=" << fs.reverted_entries() << std::endl;
    return true;
  }
  return false;
}

bool stop_requested() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: soak_powercut_mount STORE MOUNTPOINT\n";
    return 2;
  }
  // Blocked in every thread (the FUSE thread inherits the mask): the main
  // loop sees them pending and unmounts instead of dying mounted.
  sigset_t stopping;
  sigemptyset(&stopping);
  sigaddset(&stopping, SIGTERM);
  sigaddset(&stopping, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stopping, nullptr);
  try {
    PowerCutFs fs(argv[1], argv[2]);
    std::cout << "mounted" << std::endl;
    std::string pending;
    while (!stop_requested()) {
      pollfd input{STDIN_FILENO, POLLIN, 0};
      if (::poll(&input, 1, 200) <= 0) continue;  // a period to look at signals, not a wait
      char chunk[256];
      const auto got = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;  // end of input
      pending.append(chunk, static_cast<std::size_t>(got));
      for (auto end = pending.find('\n'); end != std::string::npos; end = pending.find('\n')) {
        const std::string line = pending.substr(0, end);
        pending.erase(0, end + 1);
        if (!answer(fs, line)) std::cout << "unknown command: " << line << std::endl;
      }
    }
  } catch (const std::exception& error) {
    std::cerr << "soak_powercut_mount: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
