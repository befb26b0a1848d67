"""End-to-end over real HTTP (uvicorn on a loopback port): concurrency, gzip, size limits."""

from __future__ import annotations

import gzip
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from central.tests.conftest import LIVE_LIMITS
from central.tests.helpers import (batch, body, data_rows, events, headers, measurement,
                                   new_buffer, poster, run_parallel)


def test_concurrent_duplicate_uploads_store_once(live, gw, engine):
    for round_ in range(4):
        raws, ms = events(400, start=1 + round_ * 400)
        data = body(batch(raws=raws, ms=ms))
        r1, r2 = run_parallel([poster(live.url, gw, data), poster(live.url, gw, data, True)])
        assert r1.status_code == r2.status_code == 200, (r1.text[:200], r2.text[:200])
        for key in ("raw_events", "measurements"):
            pairs = zip(r1.json()[key], r2.json()[key])
            assert all(sorted([a["outcome"], b["outcome"]]) == ["duplicate", "stored"]
                       for a, b in pairs), key
    rows = data_rows(engine)
    assert len(rows["raw"]) == 1600 and len(rows["measurements"]) == 1600


def test_concurrent_overlapping_batches_from_two_gateways(live, gw, gw2, engine):
    """Same readings via two gateways, in opposite orders, at once: one row each, no deadlock."""
    _, ms = events(600)
    b1, b2 = new_buffer(), new_buffer()
    env1 = batch(gateway="gw1", buffer_id=b1, ms=ms)
    env2 = batch(gateway="gw2", buffer_id=b2, ms=list(reversed(ms)))
    results = run_parallel([poster(live.url, gw, body(env1)), poster(live.url, gw2, body(env2)),
                            poster(live.url, gw, body(env1))])
    assert [r.status_code for r in results] == [200, 200, 200]
    stored = Counter()
    for r in results:
        for o in r.json()["measurements"]:
            stored[o["event_id"]] += o["outcome"] == "stored"
    assert set(stored.values()) == {1}
    with engine.connect() as conn:
        owners = conn.execute(sa.text(
            "SELECT g.name, count(*) FROM normalized_measurements m JOIN gateways g "
            "ON g.id = m.gateway_id GROUP BY 1")).all()
    assert sum(n for _, n in owners) == 600


def test_revision_ordering_under_concurrency(live, gw, engine):
    """Eight clients send revisions 1..8 of the same 300 readings at once; the highest wins."""
    base = [dict(device=f"d{i % 5}", ts=f"2024-02-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
                 value=str(i)) for i in range(300)]

    def env(rev):
        ms = [measurement(**b, revision=rev, delta=str(rev), flags=["out_of_order"] if rev % 2 else [])
              for b in base]
        return body(batch(ms=ms))

    for _ in range(2):
        results = run_parallel([poster(live.url, gw, env(rev)) for rev in (3, 8, 1, 6, 2, 7, 5, 4)])
        assert all(r.status_code == 200 for r in results)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT revision, delta::text, flags FROM normalized_measurements")).all()
        assert len(rows) == 300
        assert {tuple(r[:2]) for r in rows} == {(8, "8")} and all(r[2] == [] for r in rows)
        eight = results[1].json()["measurements"]
        assert {o["outcome"] for o in eight} <= {"stored", "duplicate"}


def test_gzip_upload_over_http(live, gw, engine):
    raws, ms = events(50)
    r = poster(live.url, gw, body(batch(raws=raws, ms=ms)), gzip_body=True)()
    assert r.status_code == 200
    assert len(data_rows(engine)["measurements"]) == 50


def test_gzip_bomb_over_http_is_413_and_server_survives(live, gw, engine):
    limit = LIVE_LIMITS["max_decompressed_bytes"]
    bomb = gzip.compress(b"[" + b" " * (limit * 4) + b"]")
    assert len(bomb) < LIVE_LIMITS["max_body_bytes"]
    with httpx.Client(timeout=60) as c:
        r = c.post(live.url + "/api/v1/ingest", content=bomb, headers=headers(gw, True))
        assert r.status_code == 413 and r.json()["limit"] == limit
        ok = c.post(live.url + "/api/v1/ingest", content=body(batch()), headers=headers(gw))
        assert ok.status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_over_http(live, gw, engine, chunked):
    limit = LIVE_LIMITS["max_body_bytes"]
    data = b" " * (limit + 10) + body(batch())

    def gen():
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    with httpx.Client(timeout=60) as c:
        r = c.post(live.url + "/api/v1/ingest", content=gen() if chunked else data,
                   headers=headers(gw))
    assert r.status_code == 413 and r.json()["limit"] == limit
    assert data_rows(engine) == {"raw": [], "measurements": []}


def test_bad_token_over_http(live, engine):
    with httpx.Client(timeout=10) as c:
        r = c.post(live.url + "/api/v1/ingest", content=body(batch()),
                   headers=headers("mgw_nope"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
