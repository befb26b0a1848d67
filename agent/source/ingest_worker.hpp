// An ingest worker process (`meter-agent ingest-worker`, started only by the
// daemon, agent/source/ingest_workers.hpp): one broker connection on the
// gateway's shared subscription. Its message callback sends each message to
// the daemon over the inherited socket (fd 3, agent/source/ingest_channel.hpp)
// and returns — which is the PUBACK — only once the daemon answers that the
// message is committed. Several workers' messages then wait on one sync of the
// inbox: group commit across processes, since Paho C acknowledges one message
// at a time per process.
//
// If the daemon goes away (its socket closes, or it dies: PR_SET_PDEATHSIG),
// the worker exits without returning from the callback: nothing is
// acknowledged that was not committed. SIGTERM stops it cleanly.
//
// A retired worker (`drain`: mqtt.ingest_workers was lowered) resumes its
// session only to empty it: it leaves the shared subscription, commits what
// the broker had queued for it, and once nothing came for kDrainQuiet after
// the UNSUBACK it ends the session (a clean-session connect) and exits 0.
#pragma once

#include <chrono>

namespace meter::agent {

inline constexpr int kIngestChannelFd = 3;
// The exit code of a retired worker whose session is drained and ended (and
// only of it: a worker stopped by SIGTERM, e.g. systemd stopping the whole
// unit, exits 0 and its session is kept).
inline constexpr int kDrainedExitCode = 10;  // none of the command line's codes (0-3)
inline constexpr std::chrono::seconds kDrainQuiet{3};

// The process's whole life; returns its exit code.
int run_ingest_worker();

}  // namespace meter::agent
