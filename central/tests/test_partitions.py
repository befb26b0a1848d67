"""Monthly partitions (migrations 0007, 0008; central/partitions.py): rows land in the month of
the column that is the same on every send, duplicates and revisions decide across partitions as
before, DEFAULT catches what has no month, dropping is refused unless asked for, and each
migration upgrades a populated database."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import migrate, partitions
from central.app import create_app
from central.tests.conftest import make_settings
from central.tests.helpers import (batch, body, headers, measurement, poster, raw_event,
                                   recent_pair, run_parallel, snapshot)
from central.tests.test_migrations import scratch_url  # noqa: F401 - a fixture

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UTC = dt.timezone.utc


def post(client, token, **envelope):
    r = client.post("/api/v1/ingest", content=body(batch(**envelope)), headers=headers(token))
    assert r.status_code == 200, r.text
    return r.json()


def outcomes(answer, kind="measurements"):
    return [o["outcome"] for o in answer[kind]]


def homes(engine, table: str) -> list[str]:
    """The partition of each row, ordered by the partition key."""
    key = partitions.PARTITION_KEYS[table]
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            f'SELECT tableoid::regclass::text FROM {table} ORDER BY "{key}"')).scalars())


def test_measurements_land_in_their_month_and_decide_as_before(client, engine, gw):
    ms = [measurement(ts="1970-01-01T00:00:00.000Z", value="3", seq=3),  # outside the window
          measurement(ts="2024-01-31T23:59:59.999Z", value="1", seq=1),
          measurement(ts="2024-02-01T00:00:00.000Z", value="2", seq=2)]
    assert outcomes(post(client, gw, ms=ms)) == ["stored"] * 3
    assert homes(engine, "normalized_measurements") == [
        "normalized_measurements_default", "normalized_measurements_y2024m01",
        "normalized_measurements_y2024m02"]
    assert outcomes(post(client, gw, ms=ms)) == ["duplicate"] * 3
    revised = [dict(m, revision=2, delta=None, flags=["out_of_order"]) for m in ms]
    assert outcomes(post(client, gw, ms=revised)) == ["stored"] * 3
    assert outcomes(post(client, gw, ms=ms)) == ["superseded"] * 3
    assert outcomes(post(client, gw, ms=revised)) == ["duplicate"] * 3
    rows = snapshot(engine)["measurements"]
    assert [(r[0], r[9]) for r in rows] == sorted((m["event_id"], 2) for m in ms)
    with engine.connect() as conn:  # the month after the newest, created ahead of its data
        assert conn.execute(sa.text(
            "SELECT to_regclass('normalized_measurements_y2024m03') IS NOT NULL")).scalar()
        assert conn.execute(sa.text(
            "SELECT to_regclass('normalized_measurements_y1970m01') IS NULL")).scalar()


def test_a_raw_event_resent_with_another_received_at_is_a_duplicate(client, engine, gw):
    first = raw_event(1, b"first", received_at="2024-01-31T10:00:00.000Z")
    assert outcomes(post(client, gw, raws=[first]), "raw_events") == ["stored"]
    for received_at in ("2024-03-05T10:00:00.000Z", "2024-01-31T10:00:00.000Z",
                        "9999-12-31T23:59:59.999Z"):
        again = raw_event(1, b"other", received_at=received_at)
        assert outcomes(post(client, gw, raws=[again]), "raw_events") == ["duplicate"]
    raws = snapshot(engine)["raw"]
    assert [(r[2], bytes(r[4]), r[9]) for r in raws] == [
        (1, b"first", dt.datetime(2024, 1, 31, 10, tzinfo=UTC))]
    assert homes(engine, "raw_events") == ["raw_events_y2024m01"]


def test_the_same_raw_identity_sent_twice_at_once_in_two_months_is_stored_once(live, engine,
                                                                                 gw):
    for seq in range(1, 6):
        envs = [batch(raws=[raw_event(seq, f"{month}".encode(),
                                      received_at=f"2024-0{month}-15T10:00:00.000Z")])
                for month in (1, 2)]
        answers = run_parallel([poster(live.url, gw, body(env)) for env in envs])
        assert sorted(a.json()["raw_events"][0]["outcome"] for a in answers) == [
            "duplicate", "stored"]
    assert len(snapshot(engine)["raw"]) == 5


def test_a_month_created_later_takes_its_rows_out_of_default(client, engine, gw, viewer):
    ms = [measurement(ts=f"2005-06-0{d}T12:00:00.000Z", value=str(d), delta="1", seq=d)
          for d in range(1, 4)]
    assert outcomes(post(client, gw, ms=ms)) == ["stored"] * 3
    assert set(homes(engine, "normalized_measurements")) == {"normalized_measurements_default"}
    path = ("/api/v1/consumption?device_id=m1&bucket=day&from=2005-06-01T00:00:00Z"
            "&to=2005-06-05T00:00:00Z")
    auth = {"Authorization": f"Bearer {viewer}"}
    before = client.get(path, headers=auth).json()
    conn = engine.raw_connection()
    try:
        assert partitions.create_month(conn, "normalized_measurements", (2005, 6))
    finally:
        conn.close()
    assert set(homes(engine, "normalized_measurements")) == {"normalized_measurements_y2005m06"}
    assert client.get(path, headers=auth).json() == before
    assert outcomes(post(client, gw, ms=ms)) == ["duplicate"] * 3


def cli(*args):
    return subprocess.run(["/usr/bin/python3", "-m", "central", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_dropping_is_refused_without_the_flag_and_recorded_with_it(client, engine, gw, viewer):
    raws = [raw_event(1, received_at="2022-01-10T00:00:00.000Z"),
            raw_event(2, received_at="2022-02-10T00:00:00.000Z")]
    ms = [measurement(ts="2022-01-10T00:00:00.000Z", value="1", seq=1),
          measurement(ts="2022-02-10T00:00:00.000Z", value="2", delta="1", seq=2)]
    post(client, gw, raws=raws, ms=ms)

    refused = cli("partitions", "drop", "--table", "raw_events", "--before", "2022-02")
    assert refused.returncode == 2 and "would drop raw_events_y2022m01" in refused.stderr
    no_note = cli("partitions", "drop", "--table", "raw_events", "--before", "2022-02",
                  "--yes-delete-data")
    assert no_note.returncode == 2
    assert [h for h in homes(engine, "raw_events")] == ["raw_events_y2022m01",
                                                        "raw_events_y2022m02"]

    for table in ("raw_events", "normalized_measurements"):
        done = cli("partitions", "drop", "--table", table, "--before", "2022-02",
                   "--yes-delete-data", "--note", "retention: 2023 audit closed")
        assert done.returncode == 0, done.stderr
        assert f"dropped {table}_y2022m01 (1 rows)" in done.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT table_name, partition_name, row_count, note FROM dropped_partitions "
            "WHERE partition_name LIKE '%y2022m01' ORDER BY id")).all() == [
                ("raw_events", "raw_events_y2022m01", 1, "retention: 2023 audit closed"),
                ("normalized_measurements", "normalized_measurements_y2022m01", 1,
                 "retention: 2023 audit closed")]
    # The identity of a dropped raw event is kept: resending it stores nothing.
    assert outcomes(post(client, gw, raws=raws[:1]), "raw_events") == ["duplicate"]
    assert len(snapshot(engine)["raw"]) == 1
    # Reads agree with the rows that are left, from the rollups or not.
    listing = cli("partitions", "list")
    assert listing.returncode == 0 and "normalized_measurements_y2022m01" not in listing.stdout
    rows_app = create_app(make_settings(read_rollups=False))
    auth = {"Authorization": f"Bearer {viewer}"}
    path = ("/api/v1/consumption?device_id=m1&bucket=day&from=2022-01-01T00:00:00Z"
            "&to=2022-03-01T00:00:00Z")
    try:
        with TestClient(rows_app) as from_rows:
            assert client.get(path, headers=auth).json() == from_rows.get(path,
                                                                          headers=auth).json()
    finally:
        rows_app.state.engine.dispose()
    assert client.get(path, headers=auth).json()["total"]["readings"] == 1
    stored, from_the_rows = recent_pair(engine)  # m1's 11 latest timestamps: the one left
    assert stored == from_the_rows == [("m1", "energy", [dt.datetime(2022, 2, 10, tzinfo=UTC)])]


def test_month_arithmetic_and_window():
    assert partitions.add_months((2024, 12), 1) == (2025, 1)
    assert partitions.add_months((2024, 1), -1) == (2023, 12)
    assert partitions.month_of("0001-01-01T00:00:00.000Z") == (1, 1)
    now = dt.datetime(2026, 12, 6, tzinfo=UTC)
    assert partitions.months_to_create({(2026, 12)}, now) == {(2026, 12), (2027, 1)}
    assert partitions.months_to_create({(2027, 2)}, now) == {(2027, 2)}  # March is too far
    assert partitions.months_to_create({(9999, 12), (2000, 1)}, now) == set()
    with pytest.raises(ValueError):
        partitions.parse_month("2024-13")


# --- migrations on a populated database ------------------------------------------------------

_POPULATE_0006 = """
INSERT INTO gateways (name) VALUES ('gw1'), ('gw2');
INSERT INTO raw_events (gateway_id, buffer_id, seq, topic, payload, payload_json, qos, retained,
                        dup, received_at, decode_error)
SELECT 1 + s % 2, '6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90', s, 't/' || s, convert_to('{"s":' || s
       || '}', 'UTF8'), ('{"s":' || s || '}')::jsonb, 1, false, false,
       CASE WHEN s = 7 THEN timestamptz '1999-05-01 00:00+00'
            ELSE timestamptz '2024-01-20 00:00+00' + s * interval '5 days' END, NULL
  FROM generate_series(1, 20) s;
INSERT INTO normalized_measurements (event_id, gateway_id, device_id, metric_type, "timestamp",
       value, unit, delta, flags, revision, raw_buffer_id, raw_seq, delta_from)
SELECT encode(sha256(convert_to('e' || s, 'UTF8')), 'hex'), 1 + s % 2, 'm' || s % 3, 'energy',
       CASE WHEN s = 7 THEN timestamptz '1999-05-01 00:00+00'
            ELSE timestamptz '2024-01-20 00:00+00' + s * interval '37 hours' END,
       s * 1.5, 'kWh', CASE WHEN s % 4 > 0 THEN s * 0.25 END,
       CASE s % 5 WHEN 0 THEN '{gap}'::text[] WHEN 1 THEN '{suspicious_jump}' ELSE '{}' END,
       1 + s % 3, '6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90', s,
       CASE WHEN s % 4 > 0 THEN timestamptz '2024-01-19 00:00+00' + s * interval '37 hours' END
  FROM generate_series(1, 60) s;
"""


def test_each_migration_upgrades_a_populated_database(scratch_url):  # noqa: F811
    migrate.upgrade(scratch_url, "0006")
    engine = sa.create_engine(scratch_url, future=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(_POPULATE_0006))
        original = snapshot(engine)

        migrate.upgrade(scratch_url, "0007")
        assert snapshot(engine) == original
        measurement_homes = homes(engine, "normalized_measurements")
        assert measurement_homes[0] == "normalized_measurements_default"  # 1999: outside
        assert set(measurement_homes[1:]) == {"normalized_measurements_y2024m01",
                                              "normalized_measurements_y2024m02",
                                              "normalized_measurements_y2024m03",
                                              "normalized_measurements_y2024m04"}

        migrate.upgrade(scratch_url, "0008")
        assert snapshot(engine) == original
        assert homes(engine, "raw_events")[0] == "raw_events_default"
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT count(*) FROM raw_event_ids k JOIN raw_events r USING "
                "(gateway_id, buffer_id, seq, received_at)")).scalar() == 20

        migrate.upgrade(scratch_url, "0009")
        assert snapshot(engine) == original
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT sum(readings), sum(deltas), sum(consumption), sum(trusted), "
                "sum(flagged_energy), sum(gaps) FROM consumption_hourly")).one() == \
                conn.execute(sa.text(
                    "SELECT count(*), count(delta), sum(delta), sum(delta) FILTER (WHERE NOT flags "
                    "&& '{gap,implausible_rate,suspicious_jump}'), sum(delta) FILTER (WHERE flags "
                    "&& '{implausible_rate,suspicious_jump}'), count(*) FILTER (WHERE 'gap' = "
                    "ANY(flags)) FROM normalized_measurements")).one()
            assert conn.execute(sa.text(
                'SELECT device_id, "timestamp" FROM series_latest ORDER BY 1')).all() == \
                conn.execute(sa.text(
                    'SELECT device_id, max("timestamp") FROM normalized_measurements '
                    "GROUP BY 1 ORDER BY 1")).all()

        migrate.upgrade(scratch_url, "0010")
        assert snapshot(engine) == original
        stored, from_the_rows = recent_pair(engine)  # each series' 11 latest timestamps
        assert stored == from_the_rows and len(stored) == 3

        migrate.downgrade(scratch_url, "0009")
        assert snapshot(engine) == original
        with engine.connect() as conn:
            assert "recent" not in {c["name"] for c in sa.inspect(conn).get_columns(
                "series_latest")}
        migrate.downgrade(scratch_url, "0006")  # and back, every row as it was
        assert snapshot(engine) == original
        migrate.upgrade(scratch_url)
        assert snapshot(engine) == original
        stored, from_the_rows = recent_pair(engine)
        assert stored == from_the_rows and len(stored) == 3
    finally:
        engine.dispose()
