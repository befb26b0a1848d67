"""central/accounts.py and central/auth.py: tokens hashed, rotation, revocation, token kinds."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from central import accounts
from central.auth import GATEWAY_PREFIX, VIEWER_PREFIX, authenticate, bearer_token, hash_token
from central.errors import ApiError
from central.tests.helpers import batch, body, headers


def test_tokens_are_random_and_stored_only_hashed(engine):
    t1 = accounts.create(engine, "gateway", "gw1")
    t2 = accounts.create(engine, "viewer", "ops")
    assert t1.startswith(GATEWAY_PREFIX) and t2.startswith(VIEWER_PREFIX) and len(t1) >= 40
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT token_hash, token_prefix FROM api_tokens")).all()
        dump = " ".join(str(r) for r in conn.execute(sa.text(
            "SELECT * FROM api_tokens t JOIN gateways g ON g.id = t.gateway_id")).all())
    assert {bytes(r.token_hash) for r in rows} == {hashlib.sha256(t.encode()).digest() for t in (t1, t2)}
    assert t1 not in dump and t1[8:] not in dump


def test_authenticate_kinds(engine):
    t = accounts.create(engine, "gateway", "gw1")
    v = accounts.create(engine, "viewer", "ops")
    with engine.connect() as conn:
        p = authenticate(conn, t)
        assert (p.kind, p.name) == ("gateway", "gw1") and p.gateway_pk
        assert authenticate(conn, v).kind == "viewer"
        with pytest.raises(ApiError) as exc:
            authenticate(conn, t + "x")
        assert exc.value.status == 401


def test_rotate_revokes_old_token(engine):
    old = accounts.create(engine, "gateway", "gw1")
    new = accounts.rotate(engine, "gateway", "gw1")
    with engine.connect() as conn:
        assert authenticate(conn, new).name == "gw1"
        with pytest.raises(ApiError):
            authenticate(conn, old)


def test_rotate_keep_old_then_revoke_old(engine):
    old = accounts.create(engine, "gateway", "gw1")
    new = accounts.rotate(engine, "gateway", "gw1", keep_old=True)
    with engine.connect() as conn:
        authenticate(conn, old)
        authenticate(conn, new)
    assert accounts.revoke(engine, "gateway", "gw1", old_tokens_only=True) == 1
    with engine.connect() as conn:
        authenticate(conn, new)
        with pytest.raises(ApiError):
            authenticate(conn, old)


def test_revoke_gateway(engine):
    t = accounts.create(engine, "gateway", "gw1")
    assert accounts.revoke(engine, "gateway", "gw1") == 1
    with engine.connect() as conn, pytest.raises(ApiError):
        authenticate(conn, t)
    with pytest.raises(accounts.AccountError):
        accounts.rotate(engine, "gateway", "gw1")


def test_names_validated_and_unique(engine):
    accounts.create(engine, "gateway", "gw-berlin-01")
    with pytest.raises(accounts.AccountError):
        accounts.create(engine, "gateway", "gw-berlin-01")
    for bad in ("", " gw", "gw 1", "x" * 129, "gw\x00"):
        with pytest.raises(accounts.AccountError):
            accounts.create(engine, "gateway", bad)
    with pytest.raises(accounts.AccountError):
        accounts.rotate(engine, "viewer", "nobody")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Token abc", "Bearer " + "x" * 300])
def test_bearer_header_parsing(header):
    with pytest.raises(ApiError) as exc:
        bearer_token(header)
    assert exc.value.status == 401


def test_hash_is_sha256():
    assert hash_token("abc") == hashlib.sha256(b"abc").digest()


def test_gateway_token_cannot_read_and_viewer_cannot_upload(client, engine):
    g = accounts.create(engine, "gateway", "gw1")
    v = accounts.create(engine, "viewer", "ops")
    assert client.get("/api/v1/measurements", headers={"Authorization": f"Bearer {g}"}).status_code == 403
    assert client.get("/api/v1/measurements", headers={"Authorization": f"Bearer {v}"}).status_code == 200
    r = client.post("/api/v1/ingest", content=body(batch()), headers=headers(v))
    assert r.status_code == 403 and r.json()["error"] == "wrong_token_kind"
    assert client.get("/api/v1/gateways").status_code == 401
