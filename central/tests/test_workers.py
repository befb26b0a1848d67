"""`python3 -m central serve --workers 2` as real processes (central/workers.py): the schema is
migrated once, by the parent, before the workers start; the workers serve the API; SIGTERM to
the parent stops every process it started; a worker that dies takes the service down with
status 1 (so systemd restarts it) instead of leaving it running short of a worker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg2
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from central import accounts, migrate
from central.cli import _parser
from central.settings import Settings
from central.tests.conftest import free_port
from central.tests.helpers import batch, body, headers, measurement, raw_event

REPO = Path(__file__).resolve().parents[2]
DATABASE = "central_workers_test"


@pytest.fixture(scope="module")
def fresh_url():
    """A database of its own, empty: the shared test database is already migrated, and these
    tests must see the migrations run."""
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cur.execute(f"CREATE DATABASE {DATABASE}")
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + DATABASE
    yield url
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.close()


def children(pid: int) -> dict[int, str]:
    """The live children of pid and their command lines, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            found[int(entry)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    """`serve --workers N` on a free loopback port, its log in a file; stopped by PID."""

    def __init__(self, url: str, log: Path, *extra: str):
        self.port = free_port()
        self.log = log
        env = dict(os.environ, DATABASE_URL=url, CENTRAL_LOG_LEVEL="info",
                   PYTHONPATH=str(REPO))
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["/usr/bin/python3", "-m", "central", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), *extra], cwd=REPO, env=env, stdout=out, stderr=out)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).status_code \
                        == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no /healthz: {self.log.read_text()}")
            time.sleep(0.1)   # polling its start against a deadline

    def started(self) -> dict[int, str]:
        """Its children now, remembered so that stop() can end them if the test failed."""
        self.children = children(self.process.pid)
        return self.children

    def stop(self) -> None:
        for pid in [self.process.pid, *getattr(self, "children", {})]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(30)


def workers_of(pid: int) -> dict[int, str]:
    return {p: c for p, c in children(pid).items() if "spawn_main" in c}


def test_two_workers_migrate_once_serve_and_all_stop_on_sigterm(fresh_url, tmp_path):
    served = Served(fresh_url, tmp_path / "serve.log", "--workers", "2")
    try:
        served.wait_healthy()
        started = served.started()
        workers = workers_of(served.process.pid)
        assert len(workers) == 2, started

        # Every migration ran, once: by the parent, before the workers (they never migrate).
        log = (tmp_path / "serve.log").read_text()
        revisions = list(ScriptDirectory.from_config(
            migrate.alembic_config(fresh_url)).walk_revisions())
        assert log.count("Running upgrade") == len(revisions) >= 6, log
        assert log.index("Running upgrade") < log.index("workers started")

        # The workers serve the API against the environment's database.
        engine = sa.create_engine(Settings(database_url=fresh_url).sqlalchemy_url(), future=True)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE gateways, viewers, api_tokens RESTART IDENTITY "
                                     "CASCADE"))
            gateway = accounts.create(engine, "gateway", "gw-workers")
            viewer = accounts.create(engine, "viewer", "ops")
        finally:
            engine.dispose()
        base = f"http://127.0.0.1:{served.port}"
        sent = httpx.post(f"{base}/api/v1/ingest", headers=headers(gateway), timeout=30,
                          content=body(batch(gateway="gw-workers", raws=[raw_event(1)],
                                             ms=[measurement("m-workers", seq=1)])))
        assert sent.status_code == 200, sent.text
        assert [m["outcome"] for m in sent.json()["measurements"]] == ["stored"]
        devices = httpx.get(f"{base}/api/v1/devices", timeout=30,
                            headers={"Authorization": f"Bearer {viewer}"})
        assert "m-workers" in devices.text

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(30) == 0
        # Everything it started is gone when it returns (the workers are joined before it exits).
        assert [pid for pid in started if alive(pid)] == []
        assert "signal 15: stopping 2 workers" in (tmp_path / "serve.log").read_text()
    finally:
        served.stop()


def test_a_dead_worker_stops_the_service_with_status_1(fresh_url, tmp_path):
    served = Served(fresh_url, tmp_path / "serve.log", "--workers", "2", "--no-migrate")
    try:
        served.wait_healthy()
        started = served.started()
        victim, survivor = sorted(workers_of(served.process.pid))
        os.kill(victim, signal.SIGKILL)
        assert served.process.wait(30) == 1
        assert not alive(survivor) and [pid for pid in started if alive(pid)] == []
        assert f"worker {victim} exited with status -9" in (tmp_path / "serve.log").read_text()
    finally:
        served.stop()


def test_the_worker_count_is_checked(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["serve", "--workers", "0"])
    assert exit_.value.code == 2 and "between 1 and 64" in capsys.readouterr().err
    assert _parser().parse_args(["serve", "--workers", "3"]).workers == 3
    env = dict(os.environ, CENTRAL_WORKERS="0")
    run = subprocess.run(["/usr/bin/python3", "-m", "central", "serve", "--no-migrate"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "CENTRAL_WORKERS must be between 1 and 64" in run.stderr


def test_the_connections_per_worker_are_set_from_the_environment(monkeypatch):
    from central.db import make_engine  # noqa: PLC0415
    monkeypatch.setenv("CENTRAL_DB_POOL_SIZE", "3")
    monkeypatch.setenv("CENTRAL_DB_MAX_OVERFLOW", "0")
    engine = make_engine(Settings())
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (3, 0)  # noqa: SLF001
    finally:
        engine.dispose()
