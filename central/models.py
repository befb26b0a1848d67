"""Table definitions (SQLAlchemy Table objects), mirroring the Alembic migrations.

The queries themselves are SQL text (`sa.text`), not built from these tables or ORM classes:
ingest is bulk SQL (INSERT ... SELECT FROM unnest ... ON CONFLICT) and the read side is a
handful of queries; neither wants identity maps or a query builder. The schema of
record is central/migrations/versions/*; tests/test_migrations.py checks the two agree.
Tables are only ever created by the migrations, never from these definitions.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

# Stored with fillfactor 10 (migration 0004): each batch updates its gateway's row, and the
# foreign-key lookups of its rows must not walk a long chain of old versions.
gateways = sa.Table(
    "gateways", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),  # the protocol's gateway_id
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    # Status as of the last accepted batch (read side: GET /api/v1/gateways).
    sa.Column("last_contact_at", sa.DateTime(timezone=True)),
    sa.Column("last_sent_at", sa.DateTime(timezone=True)),
    sa.Column("clock_skew_ms", sa.BigInteger),
    sa.Column("backlog_records", sa.BigInteger),
    sa.Column("backlog_oldest_received_at", sa.DateTime(timezone=True)),
    # Records answered `rejected` (migration 0002), counted per answer.
    sa.Column("rejected_records", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_rejected_at", sa.DateTime(timezone=True)),
    sa.Column("last_rejection_reason", sa.Text),
)

viewers = sa.Table(
    "viewers", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),  # sha256(token)
    sa.Column("token_prefix", sa.Text, nullable=False),  # first characters, to tell tokens apart
    sa.Column("gateway_id", sa.BigInteger, sa.ForeignKey("gateways.id", ondelete="CASCADE")),
    sa.Column("viewer_id", sa.BigInteger, sa.ForeignKey("viewers.id", ondelete="CASCADE")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("(gateway_id IS NULL) <> (viewer_id IS NULL)", name="ck_api_tokens_one_owner"),
)

# Partitioned by month of received_at (migration 0008); the primary key includes the partition
# key, and raw_event_ids holds the identity (gateway, buffer_id, seq) once across partitions.
raw_events = sa.Table(
    "raw_events", metadata,
    sa.Column("gateway_id", sa.BigInteger, sa.ForeignKey("gateways.id"), primary_key=True),
    sa.Column("buffer_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # the original bytes, always
    sa.Column("payload_json", pg.JSONB),  # the same payload as JSONB when it is JSON
    sa.Column("qos", sa.SmallInteger, nullable=False),
    sa.Column("retained", sa.Boolean, nullable=False),
    sa.Column("dup", sa.Boolean, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), primary_key=True),  # gateway clock
    sa.Column("decode_error", sa.Text),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

raw_event_ids = sa.Table(
    "raw_event_ids", metadata,
    sa.Column("gateway_id", sa.BigInteger, primary_key=True),  # no foreign key: TRUNCATE order
    sa.Column("buffer_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),  # its partition
)

# Partitioned by month of timestamp (migration 0007): primary key (event_id, timestamp), the
# timestamp being a function of the event_id.
normalized_measurements = sa.Table(
    "normalized_measurements", metadata,
    sa.Column("event_id", sa.Text(collation="C"), primary_key=True),  # bytes order (0003)
    sa.Column("gateway_id", sa.BigInteger, sa.ForeignKey("gateways.id"), nullable=False),
    sa.Column("device_id", sa.Text, nullable=False),
    sa.Column("metric_type", sa.Text, nullable=False),
    sa.Column("timestamp", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("value", sa.Numeric, nullable=False),
    sa.Column("unit", sa.Text, nullable=False),
    sa.Column("delta", sa.Numeric),
    sa.Column("flags", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("raw_buffer_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("raw_seq", sa.BigInteger, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Protocol "2": the timestamp of the reading the delta is measured from (migration 0005).
    sa.Column("delta_from", sa.DateTime(timezone=True)),
)

# Operator events (`$meter-agent/operator` raw events) parsed into epochs (migration 0006): one row
# per identity (device, metric, at); the latest record by (received_at, seq) wins.
epochs = sa.Table(
    "epochs", metadata,
    sa.Column("identity", sa.Text(collation="C"), primary_key=True),
    sa.Column("device_id", sa.Text, nullable=False),
    sa.Column("metric_type", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("old_final", sa.Numeric),
    sa.Column("new_initial", sa.Numeric),
    sa.Column("withdrawn", sa.Boolean, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gateway_id", sa.BigInteger, sa.ForeignKey("gateways.id"), nullable=False),
    sa.Column("raw_buffer_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("raw_seq", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Operator events whose payload could not be parsed: stored as raw events, never applied.
operator_event_problems = sa.Table(
    "operator_event_problems", metadata,
    sa.Column("gateway_id", sa.BigInteger, sa.ForeignKey("gateways.id"), primary_key=True),
    sa.Column("buffer_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("problem", sa.Text, nullable=False),
    sa.Column("found_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Rollups kept by statement triggers in the writing transaction (migration 0009).
_ROLLUP_COUNTS = ("readings", "deltas", "flagged", "first_readings", "counter_resets",
                  "suspicious_jumps", "suspicious_jump_deltas", "trusted_deltas",
                  "flagged_energy_deltas", "glitches", "gaps")
_ROLLUP_SUMS = ("consumption", "suspicious_jump_delta", "trusted", "flagged_energy")
consumption_hourly = sa.Table(
    "consumption_hourly", metadata,
    sa.Column("device_id", sa.Text, primary_key=True),
    sa.Column("metric_type", sa.Text, primary_key=True),
    sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),  # UTC hour start
    *[sa.Column(name, sa.BigInteger, nullable=False) for name in _ROLLUP_COUNTS],
    *[sa.Column(name, sa.Numeric, nullable=False) for name in _ROLLUP_SUMS],
)

series_latest = sa.Table(
    "series_latest", metadata,
    sa.Column("device_id", sa.Text, primary_key=True),
    sa.Column("metric_type", sa.Text, primary_key=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("value", sa.Numeric, nullable=False),
    sa.Column("unit", sa.Text, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gateway_id", sa.BigInteger, nullable=False),  # no foreign key: TRUNCATE order
    # The series' 11 latest reading timestamps, newest first (0010): its usual interval.
    sa.Column("recent", pg.ARRAY(sa.DateTime(timezone=True)), nullable=False,
              server_default="{}"),
)

# Partitions dropped on an operator's order (migration 0007; `python3 -m central partitions`).
dropped_partitions = sa.Table(
    "dropped_partitions", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("partition_name", sa.Text, nullable=False),
    sa.Column("range_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("range_to", sa.DateTime(timezone=True), nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
