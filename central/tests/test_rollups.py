"""Rollups (migration 0009) give the answers the rows give: consumption per bucket with its
trusted / flagged / estimated split and the devices listing, over randomized revisions that move
energy between buckets and classes, sent in random batches and orders."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import random

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from central.app import create_app
from central.canonical import decimal_text
from central.tests.conftest import DATA_TABLES, make_settings
from central.tests.helpers import batch, body, headers, measurement, recent_pair

UTC = dt.timezone.utc
START = dt.datetime(2024, 3, 29, 20, 0, tzinfo=UTC)  # across a month edge and Berlin's DST change
SPAN_MINUTES = 3 * 24 * 60
# (flags, delta present): what the protocol allows a counter reading to carry.
FLAG_CHOICES = [((), True), (("gap",), True), (("suspicious_jump",), True),
                (("implausible_rate",), True), (("gap", "suspicious_jump"), True),
                (("first_reading",), False), (("counter_reset",), False), (("glitch",), False),
                (("out_of_order",), True), ((), False)]
QUERIES = [("day", "UTC"), ("hour", "UTC"), ("day", "Europe/Berlin"), ("hour", "Europe/Berlin"),
           ("day", "Asia/Kolkata"), ("hour", "America/St_Johns")]


@pytest.fixture(scope="module")
def rows_app(migrated):
    """The same service reading the rows instead of the rollups."""
    app = create_app(make_settings(read_rollups=False))
    yield app
    app.state.engine.dispose()


def ts_text(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def canonical(numerator: int, denominator: int) -> str:
    return decimal_text(decimal.Decimal(numerator) / decimal.Decimal(denominator))


def version(rng: random.Random, device: str, t: dt.datetime, value: str, revision: int,
            seq: int) -> dict:
    flags, has_delta = rng.choice(FLAG_CHOICES)
    delta = canonical(rng.randint(0, 4000), 8) if has_delta else None
    extra = {}
    if delta is not None and rng.random() < 0.8:  # delta_from up to 30 hours back
        extra["delta_from"] = ts_text(t - dt.timedelta(minutes=rng.randint(0, 30 * 60)))
    return measurement(device=device, ts=ts_text(t), value=value, revision=revision,
                       flags=sorted(flags), delta=delta, seq=seq, **extra)


def send_all(client, token, records: list[dict], rng: random.Random) -> None:
    while records:
        n = rng.randint(1, 12)
        chunk, records = records[:n], records[n:]
        r = client.post("/api/v1/ingest", content=body(batch(ms=chunk, protocol_version="2")),
                        headers=headers(token))
        assert r.status_code == 200, r.text
        outcomes = [m["outcome"] for m in r.json()["measurements"]]
        assert "rejected" not in outcomes, r.text


def answers(client, viewer, queries) -> list:
    out = []
    for path in queries:
        r = client.get(path, headers={"Authorization": f"Bearer {viewer}"})
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def devices(client, viewer) -> list:
    r = client.get("/api/v1/devices?limit=50", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200
    # silent_seconds and overdue follow the clock of each request.
    return [{k: v for k, v in item.items() if k not in ("silent_seconds", "overdue")}
            for item in r.json()["items"]]


def reset(engine):
    from central import accounts
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
    return accounts.create(engine, "gateway", "gw1"), accounts.create(engine, "viewer", "ops")


@settings(max_examples=int(os.environ.get("CENTRAL_ROLLUP_EXAMPLES", "10")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_consumption_and_devices_are_the_same_with_and_without_rollups(app, rows_app, engine,
                                                                       seed):
    rng = random.Random(seed)
    gw, viewer = reset(engine)
    first, later = [], []
    seq = 0
    for device in ("m1", "m2"):
        for _ in range(rng.randint(1, 25)):
            t = START + dt.timedelta(minutes=rng.randint(0, SPAN_MINUTES),
                                     milliseconds=rng.randint(0, 999))
            value = canonical(rng.randint(0, 10**6), 4)
            seq += 1
            revisions = rng.randint(1, 3)
            first.append(version(rng, device, t, value, 1, seq))
            for revision in range(2, revisions + 1):
                later.append(version(rng, device, t, value, revision, seq))
    rng.shuffle(first)
    rng.shuffle(later)  # a lower revision after a higher one is superseded
    queries = []
    for bucket, tz in QUERIES:
        frm = START + dt.timedelta(minutes=rng.randint(-600, SPAN_MINUTES // 2))
        to = frm + dt.timedelta(minutes=rng.randint(1, SPAN_MINUTES))
        queries.append(f"/api/v1/consumption?device_id=m{rng.randint(1, 2)}&bucket={bucket}"
                       f"&tz={tz}&from={ts_text(frm)}&to={ts_text(to)}")

    with TestClient(app) as with_rollups, TestClient(rows_app) as from_rows:
        send_all(with_rollups, gw, first, rng)
        before = answers(with_rollups, viewer, queries)
        assert before == answers(from_rows, viewer, queries)
        send_all(with_rollups, gw, later, rng)
        after = answers(with_rollups, viewer, queries)
        assert after == answers(from_rows, viewer, queries)
        assert devices(with_rollups, viewer) == devices(from_rows, viewer)
    stored, from_the_rows = recent_pair(engine)
    assert stored == from_the_rows and stored
    # The rollup holds what the rows hold, row for row, not only what a query sums up.
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT coalesce(sum(readings), 0), coalesce(sum(consumption), 0), "
            "coalesce(sum(trusted), 0) FROM consumption_hourly")).one() == conn.execute(sa.text(
                "SELECT count(*), coalesce(sum(delta), 0), coalesce(sum(delta) FILTER (WHERE NOT "
                "flags && '{gap,implausible_rate,suspicious_jump}'), 0) "
                "FROM normalized_measurements")).one()


def test_a_revision_moves_energy_between_classes_in_the_rollup(client, engine, gw, viewer):
    """A reading first trusted, then revised to a gap spread over two hours: the trusted energy
    leaves its hour and the estimated energy appears in both."""
    t = "2024-05-01T02:00:00.000Z"
    first = measurement(ts=t, value="10", delta="4", seq=1)
    revised = measurement(ts=t, value="10", delta="4", seq=1, revision=2, flags=["gap"],
                          delta_from="2024-05-01T00:00:00.000Z")
    path = ("/api/v1/consumption?device_id=m1&bucket=hour&tz=UTC"
            "&from=2024-05-01T00:00:00Z&to=2024-05-01T03:00:00Z")
    auth = {"Authorization": f"Bearer {viewer}"}
    for record in (first, revised):
        r = client.post("/api/v1/ingest", content=body(batch(ms=[record], protocol_version="2")),
                        headers=headers(gw))
        assert r.json()["measurements"][0]["outcome"] == "stored"
        if record is first:
            total = client.get(path, headers=auth).json()["total"]
            assert (total["trusted"], total["estimated"]) == (4, None)
    buckets = client.get(path, headers=auth).json()["buckets"]
    assert [b["trusted"] for b in buckets] == [None, None, None]
    assert [b["estimated"] for b in buckets] == [2, 2, None]
    assert [b["gaps"] for b in buckets] == [0, 0, 1]
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT readings, deltas, trusted_deltas, trusted, gaps FROM consumption_hourly"
        )).all() == [(1, 1, 0, 0, 1)]


def test_whole_hour_buckets_are_read_from_the_rollup(client, engine, gw, viewer):
    """The rollup is what answers (UTC, whole-hour zones), the rows where bucket edges are not
    whole UTC hours: altering the rollup alone changes only the former."""
    ms = [measurement(ts=f"2024-05-01T0{h}:10:00.000Z", value=str(h), delta="1", seq=h)
          for h in range(1, 5)]
    assert client.post("/api/v1/ingest", content=body(batch(ms=ms)),
                       headers=headers(gw)).status_code == 200
    auth = {"Authorization": f"Bearer {viewer}"}

    def total(tz):
        return client.get("/api/v1/consumption?device_id=m1&bucket=day&from=2024-05-01T00:00:00Z"
                          f"&to=2024-05-02T00:00:00Z&tz={tz}", headers=auth).json()["total"]
    assert total("UTC")["consumption"] == total("Asia/Kolkata")["consumption"] == 4
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE consumption_hourly SET consumption = consumption + 100"))
    assert total("UTC")["consumption"] == 404
    assert total("Europe/Berlin")["consumption"] == 404
    assert total("Asia/Kolkata")["consumption"] == 4


def test_truncate_empties_the_rollups(client, engine, gw):
    assert client.post("/api/v1/ingest", content=body(batch(ms=[measurement()])),
                       headers=headers(gw)).status_code == 200
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM series_latest")).scalar() == 1
        conn.execute(sa.text("TRUNCATE normalized_measurements"))
        assert conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM consumption_hourly) + "
            "(SELECT count(*) FROM series_latest)")).scalar() == 0


def test_deleting_rows_keeps_the_rollups_and_the_latest_reading_in_step(client, engine, gw):
    ms = [measurement(ts=f"2024-05-01T0{h}:00:00.000Z", value=str(h), delta="1", seq=h)
          for h in range(1, 4)]
    assert client.post("/api/v1/ingest", content=body(batch(ms=ms)),
                       headers=headers(gw)).status_code == 200
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM normalized_measurements "
                             "WHERE \"timestamp\" >= '2024-05-01T02:00:00Z'"))
        assert conn.execute(sa.text(
            "SELECT \"timestamp\", value FROM series_latest")).one() == (
                dt.datetime(2024, 5, 1, 1, tzinfo=UTC), 1)
        assert conn.execute(sa.text(
            "SELECT sum(readings), sum(consumption) FROM consumption_hourly")).one() == (1, 1)
    stored, from_the_rows = recent_pair(engine)
    assert stored == from_the_rows == [("m1", "energy", [dt.datetime(2024, 5, 1, 1, tzinfo=UTC)])]


def test_the_last_11_timestamps_follow_late_readings_deletes_and_ties(client, engine, gw):
    """series_latest.recent (migration 0010): a late reading among the newest 11 enters them, one
    older than all 11 changes nothing, two readings at one instant are two entries, and a delete
    of one of the 11 takes them again from the rows."""
    def post(ms):
        r = client.post("/api/v1/ingest", content=body(batch(ms=ms)), headers=headers(gw))
        assert r.status_code == 200 and "rejected" not in r.text, r.text

    def stored():
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT recent FROM series_latest")).scalar_one()

    hours = [dt.datetime(2024, 5, 1, tzinfo=UTC) + dt.timedelta(hours=2 * h) for h in range(15)]
    post([measurement(ts=ts_text(t), value=str(i), seq=i + 1) for i, t in enumerate(hours)])
    assert stored() == hours[:3:-1]
    late = hours[-2] + dt.timedelta(hours=1)
    post([measurement(ts=ts_text(late), value="99", seq=100, flags=["out_of_order"])])
    assert stored() == sorted(hours[5:] + [late], reverse=True)
    before = stored()
    post([measurement(ts=ts_text(hours[0] - dt.timedelta(hours=1)), value="98", seq=101,
                      flags=["out_of_order"])])
    assert stored() == before
    post([measurement(ts=ts_text(hours[-1]), value="97", seq=102,
                      flags=["timestamp_conflict"])])
    assert stored() == sorted(hours[6:] + [late, hours[-1]], reverse=True)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM normalized_measurements WHERE \"timestamp\" = :t"),
                     {"t": late})
    assert stored() == sorted(hours[5:] + [hours[-1]], reverse=True)
    stored_pairs, from_the_rows = recent_pair(engine)
    assert stored_pairs == from_the_rows


def test_concurrent_batches_with_overlapping_revisions_keep_the_rollup_exact(live, rows_app,
                                                                             engine, gw, viewer):
    """Two batches in flight at once carry revisions of the same readings (in either order of
    arrival): the rollup ends as the committed rows say."""
    from central.tests.helpers import poster, run_parallel
    rng = random.Random(17)
    for attempt in range(3):
        readings = [(START + dt.timedelta(minutes=37 * i + attempt), canonical(i + 1, 4))
                    for i in range(40)]
        envs = []
        for revision in (1, 2):
            ms = [version(rng, "m1", t, value, revision, i + 1)
                  for i, (t, value) in enumerate(readings)]
            rng.shuffle(ms)
            envs.append(batch(ms=ms, protocol_version="2"))
        answers = run_parallel([poster(live.url, gw, body(env)) for env in envs])
        assert [a.status_code for a in answers] == [200, 200]
    path = (f"/api/v1/consumption?device_id=m1&bucket=hour&tz=UTC&from={ts_text(START)}"
            f"&to={ts_text(START + dt.timedelta(days=2))}")
    auth = {"Authorization": f"Bearer {viewer}"}
    with TestClient(rows_app) as from_rows:
        expected = from_rows.get(path, headers=auth).json()
    with httpx.Client() as c:
        assert c.get(live.url + path, headers=auth).json() == expected
    assert expected["total"]["readings"] == 120
    stored, from_the_rows = recent_pair(engine)
    assert stored == from_the_rows


def test_concurrent_batches_of_one_series_keep_its_last_11_timestamps(live, engine, gw):
    """Two batches in flight at once, each with other readings of the same series, interleaved
    in time: the stored 11 latest timestamps are the rows' (the upsert merges under the row
    lock of series_latest)."""
    from central.tests.helpers import poster, run_parallel
    for attempt in range(3):
        times = [START + dt.timedelta(days=attempt, minutes=7 * i) for i in range(30)]
        envs = [batch(ms=[measurement(ts=ts_text(t), value=str(i), seq=i + 1)
                          for i, t in enumerate(times) if i % 2 == part]) for part in (0, 1)]
        answers = run_parallel([poster(live.url, gw, body(env)) for env in envs])
        assert [a.status_code for a in answers] == [200, 200]
        stored, from_the_rows = recent_pair(engine)
        assert stored == from_the_rows
        assert stored[0][2][0] == times[-1] and len(stored[0][2]) == 11
