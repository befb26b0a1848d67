"""Alembic migrations: up from an empty database, down to nothing, up again; models agree."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from central import migrate
from central.models import metadata

TABLES = {"gateways", "viewers", "api_tokens", "raw_events", "normalized_measurements", "epochs",
          "operator_event_problems", "raw_event_ids", "consumption_hourly", "series_latest",
          "dropped_partitions"}


@pytest.fixture
def scratch_url(settings):
    """A database of its own, so going down to base does not disturb the other tests."""
    url = make_url(settings.sqlalchemy_url())
    name = f"mig_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                             password=url.password, dbname=url.database)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield str(url.set(database=name))
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def tables(url: str) -> set[str]:
    """The tables, without the partitions of the partitioned ones (migrations 0007, 0008)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            partitions = set(conn.execute(sa.text(
                "SELECT relname FROM pg_class WHERE relispartition")).scalars())
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"} - partitions
    finally:
        engine.dispose()


def test_up_down_up(scratch_url):
    assert tables(scratch_url) == set()
    migrate.upgrade(scratch_url)
    assert tables(scratch_url) == TABLES
    migrate.downgrade(scratch_url, "base")
    assert tables(scratch_url) == set()
    migrate.upgrade(scratch_url)
    assert tables(scratch_url) == TABLES


def test_models_match_migrations(scratch_url):
    migrate.upgrade(scratch_url)
    engine = sa.create_engine(scratch_url)
    try:
        inspector = sa.inspect(engine)
        for table in metadata.sorted_tables:
            got = {c["name"] for c in inspector.get_columns(table.name)}
            assert got == {c.name for c in table.columns}, table.name
        indexes = {i["name"] for i in inspector.get_indexes("normalized_measurements")}
        assert {"ix_measurements_device_metric_time", "ix_measurements_time"} <= indexes
        # A raw event's identity is (gateway, buffer_id, seq), kept once in raw_event_ids since
        # raw_events is partitioned by received_at (0008), whose key must be in its primary key.
        pk = inspector.get_pk_constraint("raw_event_ids")["constrained_columns"]
        assert pk == ["gateway_id", "buffer_id", "seq"]
        pk = inspector.get_pk_constraint("raw_events")["constrained_columns"]
        assert pk == ["gateway_id", "buffer_id", "seq", "received_at"]
        types = {c["name"]: type(c["type"]).__name__ for c in
                 inspector.get_columns("normalized_measurements")}
        assert types["value"] == types["delta"] == "NUMERIC"
        assert types["timestamp"] == "TIMESTAMP"
    finally:
        engine.dispose()


def test_no_create_all_in_production_code():
    from pathlib import Path
    pkg = Path(__file__).resolve().parents[1]
    offenders = [p for p in pkg.glob("*.py") if "create_all" in p.read_text()]
    assert offenders == []


def test_event_id_check_and_collation(scratch_url):
    """Migration 0003 swapped the event_id CHECK for a cheaper one: it must accept exactly what
    `^[0-9a-f]{64}$` accepted. The column compares bytes (COLLATE "C")."""
    migrate.upgrade(scratch_url)
    engine = sa.create_engine(scratch_url)
    good = "0123456789abcdef" * 4
    bad = [good.upper(), good[:63], good + "0", good[:63] + "g", good[:62] + "\u00e9",
           "\u00e9" * 32, good[:63] + " ", " " + good[:63], good[:63] + "\n", ""]
    insert = sa.text(
        "INSERT INTO normalized_measurements (event_id, gateway_id, device_id, metric_type, "
        "\"timestamp\", value, unit, revision, raw_buffer_id, raw_seq) VALUES (:e, :g, 'd', "
        "'energy', now(), 1, 'kWh', 1, gen_random_uuid(), 1)")
    try:
        with engine.begin() as conn:
            gw = conn.execute(sa.text(
                "INSERT INTO gateways (name) VALUES ('g') RETURNING id")).scalar()
            conn.execute(insert, {"e": good, "g": gw})
            collation = conn.execute(sa.text(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'normalized_measurements' "
                "AND column_name = 'event_id'")).scalar()
        assert collation == "C"
        for text in bad:
            with pytest.raises(sa.exc.IntegrityError, match="ck_measurements_event_id"):
                with engine.begin() as conn:
                    conn.execute(insert, {"e": text, "g": gw})
        migrate.downgrade(scratch_url, "0002")  # and back: the old CHECK holds the same rows
        migrate.upgrade(scratch_url)
    finally:
        engine.dispose()


def test_gateways_row_versions_stay_few(scratch_url):
    """Migration 0004: the status row's old versions are pruned while few (fillfactor 10), so
    the foreign-key lookups of an ingest batch's rows do not walk a long chain of them."""
    migrate.upgrade(scratch_url)
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            options = conn.execute(sa.text(
                "SELECT reloptions FROM pg_class WHERE relname = 'gateways'")).scalar()
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            conn.execute(sa.text("INSERT INTO gateways (name) VALUES ('g')"))
        most = 0
        for i in range(200):  # as ingest does: an update per batch, lookups by id in between
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE gateways SET backlog_records = :i"), {"i": i})
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT 1 FROM gateways WHERE id = 1 FOR KEY SHARE"))
                most = max(most, conn.execute(sa.text(
                    "SELECT count(*) FROM heap_page_items(get_raw_page('gateways', 0)) "
                    "WHERE lp_flags = 1")).scalar())
        assert options == ["fillfactor=10"]
        assert most <= 10  # ~60 with the default fillfactor
    finally:
        engine.dispose()


def _populate_at_0004(url: str) -> None:
    """A gateway, a raw event and a measurement written with the schema of 0004."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            gw = conn.execute(sa.text(
                "INSERT INTO gateways (name) VALUES ('g') RETURNING id")).scalar()
            conn.execute(sa.text(
                "INSERT INTO raw_events (gateway_id, buffer_id, seq, topic, payload, qos, "
                "retained, dup, received_at) VALUES (:g, gen_random_uuid(), 1, 't', 'x', 0, "
                "false, false, now())"), {"g": gw})
            conn.execute(sa.text(
                "INSERT INTO normalized_measurements (event_id, gateway_id, device_id, "
                "metric_type, \"timestamp\", value, unit, delta, flags, revision, raw_buffer_id, "
                "raw_seq) VALUES (:e, :g, 'd', 'energy', '2024-01-01T00:00:00Z', 2, 'kWh', 1.5, "
                "'{suspicious_jump}', 3, gen_random_uuid(), 1)"), {"e": "ab" * 32, "g": gw})
    finally:
        engine.dispose()


def _measurement_row(url: str):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT event_id, value::text, delta::text, flags, revision "
                "FROM normalized_measurements")).all()
    finally:
        engine.dispose()


def test_0005_delta_from_on_a_populated_database(scratch_url):
    """Rows stored before protocol "2" keep everything and get no delta_from (their delta stays
    in their own bucket); down again drops only the column."""
    migrate.upgrade(scratch_url, "0004")
    _populate_at_0004(scratch_url)
    before = _measurement_row(scratch_url)
    migrate.upgrade(scratch_url, "0005")
    engine = sa.create_engine(scratch_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT delta_from FROM normalized_measurements")).all() == [(None,)]
    finally:
        engine.dispose()
    assert _measurement_row(scratch_url) == before
    migrate.downgrade(scratch_url, "0004")
    assert _measurement_row(scratch_url) == before


def test_0006_epochs_parses_operator_events_already_stored(scratch_url):
    """A central upgraded after agents sent replacements (as protocol "1" raw events) has their
    epochs; the other data is untouched, and down again drops only the new tables."""
    import json

    from central import operator_events
    migrate.upgrade(scratch_url, "0005")
    _populate_at_0004(scratch_url)
    at = "2024-03-01T12:00:00.000Z"
    good = json.dumps({"at": at, "device_id": "d", "event": "meter_replaced",
                       "identity": operator_events.identity("d", "energy", at),
                       "metric_type": "energy", "new_initial": "0", "old_final": None,
                       "recorded_at": at, "withdrawn": False}).encode()
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            for seq, payload in ((2, good), (3, b"not json")):
                conn.execute(sa.text(
                    "INSERT INTO raw_events (gateway_id, buffer_id, seq, topic, payload, qos, "
                    "retained, dup, received_at) VALUES (1, gen_random_uuid(), :seq, "
                    "'$meter-agent/operator', :p, 0, false, false, now())"),
                    {"seq": seq, "p": payload})
        before = _measurement_row(scratch_url)
        migrate.upgrade(scratch_url, "0006")
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT device_id, \"at\", new_initial::text, withdrawn, raw_seq FROM epochs"
            )).all() == [("d", operator_events_time(at), "0", False, 3 - 1)]
            assert conn.execute(sa.text(
                "SELECT seq FROM operator_event_problems")).scalars().all() == [3]
            assert conn.execute(sa.text("SELECT count(*) FROM raw_events")).scalar() == 3
        assert _measurement_row(scratch_url) == before
        migrate.downgrade(scratch_url, "0005")
        assert "epochs" not in tables(scratch_url) and _measurement_row(scratch_url) == before
        migrate.upgrade(scratch_url)
    finally:
        engine.dispose()


def operator_events_time(text: str):
    from central.canonical import parse_timestamp
    return parse_timestamp(text)
