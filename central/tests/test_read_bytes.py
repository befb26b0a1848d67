"""The read API's answers, byte for byte, against answers recorded before the read path was made
faster (issue #17): consumption in several zones and bucket sizes, the devices listing with its
usual intervals and paging, and the gateways listing, over a populated database with revisions,
gaps whose energy is spread over several buckets, 40-digit values, tiny and negative numbers and
ids that JSON must escape. Served from the rollups and from the rows, the bytes are the same.

The recorded answers are in central/tests/data/read_bytes/ (written by the code of commit
"read bytes: record ..." with CENTRAL_READ_BYTES_WRITE=1). The clock of the listings is frozen
(central.api_read._now) and the times the database stamps at ingest are set to fixed values, so
nothing in an answer depends on when the test runs.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import accounts, api_read
from central.app import create_app
from central.tests.conftest import make_settings
from central.tests.helpers import batch, body, headers, measurement

UTC = dt.timezone.utc
DATA = Path(__file__).parent / "data" / "read_bytes"
WRITE = os.environ.get("CENTRAL_READ_BYTES_WRITE") == "1"
START = dt.datetime(2024, 3, 29, 0, 0, tzinfo=UTC)  # Berlin's clocks go forward on 03-31
NOW = dt.datetime(2024, 4, 4, 12, 0, 7, 123456, tzinfo=UTC)
FIXED = "2024-04-04T11:00:00.5+00:00"
FLAG_CHOICES = [(), (), (), ("gap",), ("suspicious_jump",), ("implausible_rate",),
                ("gap", "suspicious_jump"), ("out_of_order",), ("glitch",), ("counter_reset",)]
ODD_IDS = ["line\nbreak", 'quote"back\\slash', "ümlaut-☃", "tab\tand\x01control"]


def ts_text(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def series(rng: random.Random, device: str, metric: str = "energy", count: int = 120,
           minutes: tuple[int, int] = (20, 90), value: int = 1000, scale: int = 3):
    """Readings every 20-90 minutes from START with random flags, deltas of `scale` fraction
    digits and, for gaps, a delta_from up to 30 hours back; plus a second revision of some."""
    first, revised = [], []
    t = START + dt.timedelta(minutes=rng.randint(0, 59), milliseconds=rng.randint(0, 999))
    for i in range(count):
        flags = ("first_reading",) if i == 0 else rng.choice(FLAG_CHOICES)
        step = rng.randint(0, 4000 * 10**scale)
        value += step
        delta = None
        if "first_reading" not in flags and "glitch" not in flags and "counter_reset" not in flags:
            delta = _fraction(step, scale)
        extra = {}
        if "gap" in flags:
            extra["delta_from"] = ts_text(t - dt.timedelta(minutes=rng.randint(60, 30 * 60)))
        text = _fraction(value, scale)
        first.append(measurement(device=device, metric=metric, ts=ts_text(t), value=text,
                                 flags=sorted(flags), delta=delta, seq=len(first) + 1, **extra))
        if i and rng.random() < 0.15:  # the agent recomputed this reading: revision 2
            flags2 = rng.choice(FLAG_CHOICES)
            delta2 = None if "glitch" in flags2 or "counter_reset" in flags2 else \
                _fraction(rng.randint(0, 4000 * 10**scale), scale)
            extra2 = {"delta_from": ts_text(t - dt.timedelta(minutes=rng.randint(60, 20 * 60)))} \
                if "gap" in flags2 else {}
            revised.append(measurement(device=device, metric=metric, ts=ts_text(t), value=text,
                                       flags=sorted(flags2), delta=delta2, revision=2,
                                       seq=len(first), **extra2))
        t += dt.timedelta(minutes=rng.randint(*minutes), milliseconds=rng.randint(0, 999))
    return first, revised


def _fraction(n: int, scale: int) -> str:
    """n / 10^scale as canonical decimal text."""
    sign, digits = ("-" if n < 0 else ""), str(abs(n)).rjust(scale + 1, "0")
    whole, frac = digits[:len(digits) - scale] if scale else digits, digits[len(digits) - scale:]
    frac = frac.rstrip("0") if scale else ""
    return sign + whole + ("." + frac if frac else "")


def readings() -> tuple[list[dict], list[dict]]:
    rng = random.Random(17)
    first, revised = [], []
    for args in [("m1", "energy", 160), ("m1", "power", 30), ("m2", "energy", 90, (50, 200)),
                 ("tiny", "energy", 40, (30, 60), 0, 12), ("lone", "energy", 1)]:
        f, r = series(rng, *args)
        first += f
        revised += r
        if args[:2] == ("m1", "energy"):  # arrives late, among the series' last 11 readings
            t = dt.datetime.fromisoformat(f[-3]["timestamp"].replace("Z", "+00:00"))
            revised.append(measurement(device="m1", ts=ts_text(t + dt.timedelta(seconds=1)),
                                       value="1.5", flags=["out_of_order"], delta="0.25",
                                       seq=len(f) + 1))
    twin = START + dt.timedelta(hours=9)
    for i, (minutes, value) in enumerate([(0, "10"), (15, "11"), (15, "12"), (30, "13")]):
        first.append(measurement(device="twin", ts=ts_text(twin + dt.timedelta(minutes=minutes)),
                                 value=value, seq=i + 1, delta=None if i == 0 else "1",
                                 flags=["first_reading"] if i == 0 else
                                 ["timestamp_conflict"] if minutes == 15 else []))
    for i in range(12):  # every 15 minutes until 5 minutes before NOW: not overdue
        t = NOW.replace(microsecond=0) - dt.timedelta(minutes=5 + 15 * (11 - i))
        first.append(measurement(device="live", ts=ts_text(t), value=str(20 + i), seq=i + 1,
                                 delta=None if i == 0 else "1",
                                 flags=["first_reading"] if i == 0 else []))
    for i, device in enumerate(ODD_IDS):
        f, r = series(rng, device, count=3 + i)
        first += f
        revised += r
    big = "123456789012345678901234567890123456789.5"  # 40 significant digits
    first.append(measurement(device="big", ts=ts_text(START + dt.timedelta(hours=5)), value=big,
                             flags=["first_reading"], seq=1))
    first.append(measurement(device="big", ts=ts_text(START + dt.timedelta(hours=7)),
                             value="123456789012345678901234567890123456790",
                             delta="0.5", seq=2))
    first.append(measurement(device="neg", ts=ts_text(START + dt.timedelta(hours=2)),
                             value="-3.25", flags=["first_reading", "negative_value"], seq=1))
    first.append(measurement(device="neg", ts=ts_text(START + dt.timedelta(hours=3)),
                             value="-1", flags=["negative_value"], delta="2.25", seq=2))
    return first, revised


def consumption(device: str, bucket: str, tz: str, frm: dt.datetime, to: dt.datetime) -> str:
    return (f"/api/v1/consumption?device_id={device}&bucket={bucket}&tz={tz}"
            f"&from={ts_text(frm)}&to={ts_text(to)}")


END = START + dt.timedelta(days=8)
QUERIES = {
    "consumption_day_utc": consumption("m1", "day", "UTC", START, END),
    "consumption_day_berlin": consumption("m1", "day", "Europe/Berlin", START, END),
    "consumption_hour_utc": consumption("m1", "hour", "UTC", START, END),
    "consumption_hour_berlin": consumption("m1", "hour", "Europe/Berlin", START, END),
    "consumption_day_kolkata": consumption("m1", "day", "Asia/Kolkata", START, END),
    "consumption_hour_st_johns": consumption("m2", "hour", "America/St_Johns", START, END),
    "consumption_day_partial": consumption(
        "m2", "day", "Europe/Berlin", START + dt.timedelta(hours=30, minutes=7),
        START + dt.timedelta(days=3, hours=1)),
    "consumption_power": consumption("m1", "day", "UTC", START, END) + "&metric_type=power",
    "consumption_tiny": consumption("tiny", "hour", "UTC", START, START + dt.timedelta(days=2)),
    "consumption_big": consumption("big", "day", "UTC", START, START + dt.timedelta(days=1)),
    "consumption_negative": consumption("neg", "day", "UTC", START, START + dt.timedelta(days=1)),
    "consumption_nothing": consumption("nobody", "day", "UTC", START, END),
    "devices": "/api/v1/devices?limit=5000",
    "devices_page_1": "/api/v1/devices?limit=4",
    "gateways": "/api/v1/gateways",
}


@pytest.fixture(scope="module")
def rows_app(migrated):
    app = create_app(make_settings(read_rollups=False))
    yield app
    app.state.engine.dispose()


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(api_read, "_now", lambda: NOW)


def load(client, engine) -> str:
    gw = accounts.create(engine, "gateway", "gw1")
    viewer = accounts.create(engine, "viewer", "ops")
    first, revised = readings()
    for records in (first, revised):
        for i in range(0, len(records), 100):
            r = client.post("/api/v1/ingest", content=body(batch(
                ms=records[i:i + 100], protocol_version="2",
                backlog={"records": 7, "oldest_received_at": "2024-04-04T10:59:00.250Z"})),
                headers=headers(gw))
            assert r.status_code == 200, r.text
            assert "rejected" not in {m["outcome"] for m in r.json()["measurements"]}, r.text
    # What the database stamps with its own clock, fixed so the answers do not depend on it.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE gateways SET created_at = :t, last_contact_at = :t, "
                             "clock_skew_ms = -1234"),
                     {"t": FIXED})
        conn.execute(sa.text("UPDATE normalized_measurements SET ingested_at = :t, "
                             "updated_at = :t"), {"t": FIXED})
        conn.execute(sa.text("UPDATE series_latest SET ingested_at = :t"), {"t": FIXED})
    return viewer


def test_answers_are_the_recorded_bytes_with_and_without_rollups(app, rows_app, engine,
                                                                 frozen_clock):
    with TestClient(app) as client, TestClient(rows_app) as from_rows:
        viewer = load(client, engine)
        auth = {"Authorization": f"Bearer {viewer}"}
        answers = {}
        for name, path in QUERIES.items():
            r = client.get(path, headers=auth)
            assert r.status_code == 200, (name, r.text)
            answers[name] = r.content
        cursor = client.get(QUERIES["devices_page_1"], headers=auth).json()["next_cursor"]
        answers["devices_page_2"] = client.get(
            f"/api/v1/devices?limit=4&cursor={cursor}", headers=auth).content
        for name, path in QUERIES.items():
            assert from_rows.get(path, headers=auth).content == answers[name], name
    if WRITE:
        DATA.mkdir(parents=True, exist_ok=True)
        for name, content in answers.items():
            (DATA / f"{name}.json").write_bytes(content)
    recorded = {p.stem: p.read_bytes() for p in DATA.glob("*.json")}
    assert sorted(recorded) == sorted(answers)
    for name, content in answers.items():
        assert content == recorded[name], name
