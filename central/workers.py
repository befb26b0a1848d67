"""`serve --workers N`: N uvicorn worker processes sharing one listening socket.

Why our own supervisor and not uvicorn's `workers=`: Debian 12's uvicorn (0.17.6) starts its
workers and then only waits for a signal; a worker that dies (killed by the OOM killer, a
segfault in a C extension) is neither restarted nor noticed, and the service silently carries on
with fewer processes. Here the parent watches every worker: one that exits on its own makes the
parent stop the others and exit with status 1, so systemd (Restart=on-failure) restarts the
whole service and the failure is in the journal. SIGTERM or SIGINT to the parent stops every
worker gracefully (uvicorn finishes the requests in flight), SIGKILL after GRACE_SECONDS.

What stays in the parent: binding the socket and running the migrations (once, before any worker
starts: the CLI does it). The workers are started with multiprocessing's "spawn" (a fresh
interpreter each, as uvicorn does), build the app from the environment (create_app's settings)
and hold their own connection pools: N workers use up to N x (CENTRAL_DB_POOL_SIZE + 10)
PostgreSQL connections.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from multiprocessing.context import SpawnProcess

import uvicorn

log = logging.getLogger("central.workers")

# Below the unit's TimeoutStopSec (30 s), so systemd never has to SIGKILL what we stop.
GRACE_SECONDS = 20.0
APP = "central.app:create_app"

multiprocessing.allow_connection_pickling()  # the listening socket goes to each worker
_spawn = multiprocessing.get_context("spawn")


def _worker_main(config: uvicorn.Config, sock: socket.socket) -> None:
    """A worker's life: the central's logging, then uvicorn on the inherited socket."""
    from central.cli import configure_logging  # noqa: PLC0415 - the worker's own interpreter
    configure_logging()
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


def serve(host: str, port: int, workers: int, log_level: str) -> int:
    """Runs `workers` worker processes until a signal or a worker's death; the exit status."""
    config = uvicorn.Config(APP, factory=True, host=host, port=port, log_level=log_level,
                            workers=workers, proxy_headers=False)
    sock = config.bind_socket()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    stop_signal: list[int] = []

    def on_signal(number: int, _frame) -> None:
        stop_signal.append(number)
        try:
            os.write(wake_write, b"x")   # wakes the wait below (a self-pipe)
        except BlockingIOError:
            pass

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes: list[SpawnProcess] = []
    try:
        for _ in range(workers):
            process = _spawn.Process(target=_worker_main, args=(config, sock),
                                     name="meter-central worker")
            process.start()
            processes.append(process)
        sock.close()   # the workers hold it; a stopped service then refuses connections at once
        log.info("%d workers started on %s:%d (pids %s)", workers, host, port,
                 " ".join(str(p.pid) for p in processes))
        sentinels = {p.sentinel: p for p in processes}
        while not stop_signal:
            ready = multiprocessing.connection.wait([wake_read, *sentinels])
            if stop_signal or wake_read in ready:
                break
            dead = [sentinels[s] for s in ready if s in sentinels]
            if dead:
                for process in dead:
                    process.join()
                    log.error("worker %d exited with status %s: stopping the others (the "
                              "service exits with status 1)", process.pid, process.exitcode)
                _stop(processes)
                return 1
        log.info("signal %d: stopping %d workers", stop_signal[0] if stop_signal else 0,
                 len(processes))
        _stop(processes)
        return 0
    finally:
        _stop(processes)   # on any exception too: never leave a worker behind
        _stop_resource_tracker()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_read)
        os.close(wake_write)


def _stop_resource_tracker() -> None:
    """Starting a "spawn" process also starts multiprocessing's resource tracker, a helper
    process that exits by itself only once it notices our end of its pipe closed, i.e. after
    we are gone. Stopped here, so nothing started by `serve` outlives it.
    (`_stop` is private, hence the guard: without it the helper still exits, just later.)"""
    from multiprocessing import resource_tracker  # noqa: PLC0415
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)  # noqa: SLF001
    if stop is not None:
        stop()


def _stop(processes: list[SpawnProcess]) -> None:
    """SIGTERM to every live worker (uvicorn's graceful stop), SIGKILL after GRACE_SECONDS."""
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            log.warning("worker %d still running after %.0f s: killing it", process.pid,
                        GRACE_SECONDS)
            process.kill()
            process.join()
