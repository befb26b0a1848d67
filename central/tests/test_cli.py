"""`python3 -m central` as a real subprocess: tokens printed once on stdout, nothing secret logged."""

from __future__ import annotations

import os
import subprocess

from central.auth import GATEWAY_PREFIX, VIEWER_PREFIX
from central.tests.helpers import batch, body, headers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, env=None):
    return subprocess.run(["/usr/bin/python3", "-m", "central", *args], cwd=REPO,
                          capture_output=True, text=True, env=env or os.environ, timeout=60)


def test_create_rotate_revoke_list(engine, client):
    assert cli("migrate").returncode == 0
    created = cli("gateway", "create", "gw-cli")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith(GATEWAY_PREFIX) and "\n" not in token
    assert token not in created.stderr
    assert client.post("/api/v1/ingest", content=body(batch(gateway="gw-cli")),
                       headers=headers(token)).status_code == 200

    rotated = cli("gateway", "rotate", "gw-cli")
    new = rotated.stdout.strip()
    assert rotated.returncode == 0 and new != token
    assert client.post("/api/v1/ingest", content=body(batch(gateway="gw-cli")),
                       headers=headers(token)).status_code == 401
    listed = cli("gateway", "list")
    assert "gw-cli\tactive" in listed.stdout and new[:8] in listed.stdout and new not in listed.stdout

    viewer = cli("viewer", "create", "ops").stdout.strip()
    assert viewer.startswith(VIEWER_PREFIX)
    assert client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {viewer}"}).status_code == 200

    assert cli("gateway", "revoke", "gw-cli").returncode == 0
    assert client.post("/api/v1/ingest", content=body(batch(gateway="gw-cli")),
                       headers=headers(new)).status_code == 401
    assert "gw-cli\trevoked" in cli("gateway", "list").stdout


def test_errors_are_reported_not_raised(engine):
    dup = cli("gateway", "create", "gw1")
    assert dup.returncode == 0
    again = cli("gateway", "create", "gw1")
    assert again.returncode == 1 and "already exists" in again.stderr and again.stdout == ""
    assert cli("viewer", "rotate", "nobody").returncode == 1


def test_missing_database_url_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    r = cli("gateway", "list", env=env)
    assert r.returncode == 2 and "DATABASE_URL" in r.stderr


def test_secret_database_url_not_in_settings_repr():
    from central.settings import Settings
    s = Settings(database_url="postgresql://u:supersecret@h/db")
    assert "supersecret" not in repr(s) and "supersecret" not in str(s.dict())
    assert s.sqlalchemy_url().startswith("postgresql+psycopg2://u:supersecret@")
