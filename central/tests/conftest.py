"""Fixtures: the real PostgreSQL from run.sh (DATABASE_URL), migrated once; clean tables per test;
TestClient apps; a real uvicorn server on a loopback port for end-to-end HTTP tests."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from central import accounts, migrate
from central.app import create_app
from central.settings import Settings

if not os.environ.get("DATABASE_URL"):
    raise pytest.UsageError("DATABASE_URL is not set: run the suite with central/tests/run.sh")
# The fixtures TRUNCATE every table: refuse anything that does not look like a test database.
if not os.environ["DATABASE_URL"].rsplit("/", 1)[-1].split("?")[0].endswith("_test"):
    raise pytest.UsageError("DATABASE_URL must name a database ending in _test (tests truncate "
                            "tables); central/tests/run.sh provides one")

DATA_TABLES = "normalized_measurements, raw_events, api_tokens, gateways, viewers"


def make_settings(**over) -> Settings:
    return Settings(**over)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def migrated(settings) -> str:
    url = settings.sqlalchemy_url()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def app(migrated, settings):
    app = create_app(settings)
    yield app
    app.state.engine.dispose()


@pytest.fixture(scope="session")
def engine(app):
    return app.state.engine


@pytest.fixture(autouse=True)
def clean(request):
    """Empty tables before each test that touches the database."""
    if "engine" in request.fixturenames or "client" in request.fixturenames \
            or "live" in request.fixturenames:
        eng = request.getfixturevalue("engine")
        with eng.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
    yield


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def gw(engine) -> str:
    """Token of gateway gw1."""
    return accounts.create(engine, "gateway", "gw1")


@pytest.fixture
def gw2(engine) -> str:
    return accounts.create(engine, "gateway", "gw2")


@pytest.fixture
def viewer(engine) -> str:
    return accounts.create(engine, "viewer", "ops")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app in a background thread (real sockets, real HTTP/1.1 parsing)."""

    def __init__(self, app):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


LIVE_LIMITS = dict(max_body_bytes=2 * 1024 * 1024, max_decompressed_bytes=8 * 1024 * 1024,
                   max_records=2000)


@pytest.fixture(scope="session")
def live_app(migrated):
    app = create_app(make_settings(**LIVE_LIMITS))
    yield app
    app.state.engine.dispose()


@pytest.fixture(scope="session")
def live_server(live_app):
    with LiveServer(live_app) as server:
        yield server


@pytest.fixture
def live(live_server, engine):
    """The running server; tables cleaned by the autouse fixture."""
    return live_server
