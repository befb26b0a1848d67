"""Alembic migrations: up from an empty database, down to nothing, up again; models agree."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from central import migrate
from central.models import metadata

TABLES = {"gateways", "viewers", "api_tokens", "raw_events", "normalized_measurements"}


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
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
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
        pk = inspector.get_pk_constraint("raw_events")["constrained_columns"]
        assert pk == ["gateway_id", "buffer_id", "seq"]
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
