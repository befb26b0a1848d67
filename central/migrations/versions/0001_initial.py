"""Initial schema: gateways, viewers, api_tokens, raw_events, normalized_measurements.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_contact_at", sa.DateTime(timezone=True)),
        sa.Column("last_sent_at", sa.DateTime(timezone=True)),
        sa.Column("clock_skew_ms", sa.BigInteger),
        sa.Column("backlog_records", sa.BigInteger),
        sa.Column("backlog_oldest_received_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("name", name="uq_gateways_name"),
    )
    op.create_table(
        "viewers",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("name", name="uq_viewers_name"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        sa.Column("token_prefix", sa.Text, nullable=False),
        sa.Column("gateway_id", sa.BigInteger,
                  sa.ForeignKey("gateways.id", ondelete="CASCADE", name="fk_api_tokens_gateway")),
        sa.Column("viewer_id", sa.BigInteger,
                  sa.ForeignKey("viewers.id", ondelete="CASCADE", name="fk_api_tokens_viewer")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
        sa.CheckConstraint("(gateway_id IS NULL) <> (viewer_id IS NULL)", name="ck_api_tokens_one_owner"),
        sa.CheckConstraint("octet_length(token_hash) = 32", name="ck_api_tokens_sha256"),
    )
    op.create_table(
        "raw_events",
        sa.Column("gateway_id", sa.BigInteger, sa.ForeignKey("gateways.id", name="fk_raw_events_gateway"),
                  nullable=False),
        sa.Column("buffer_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("payload_json", pg.JSONB),
        sa.Column("qos", sa.SmallInteger, nullable=False),
        sa.Column("retained", sa.Boolean, nullable=False),
        sa.Column("dup", sa.Boolean, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decode_error", sa.Text),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("gateway_id", "buffer_id", "seq", name="pk_raw_events"),
        sa.CheckConstraint("seq >= 1", name="ck_raw_events_seq"),
        sa.CheckConstraint("qos BETWEEN 0 AND 2", name="ck_raw_events_qos"),
    )
    op.create_table(
        "normalized_measurements",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("gateway_id", sa.BigInteger,
                  sa.ForeignKey("gateways.id", name="fk_measurements_gateway"), nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("metric_type", sa.Text, nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("delta", sa.Numeric),
        sa.Column("flags", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("raw_buffer_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("raw_seq", sa.BigInteger, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("event_id", name="pk_normalized_measurements"),
        sa.CheckConstraint("event_id ~ '^[0-9a-f]{64}$'", name="ck_measurements_event_id"),
        sa.CheckConstraint("revision >= 1", name="ck_measurements_revision"),
    )
    # Device / metric / time-range queries (GET /api/v1/measurements, GET /api/v1/devices).
    op.create_index("ix_measurements_device_metric_time", "normalized_measurements",
                    ["device_id", "metric_type", "timestamp"])
    # Time-range queries across devices (paging orders by timestamp, event_id).
    op.create_index("ix_measurements_time", "normalized_measurements", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_measurements_time", table_name="normalized_measurements")
    op.drop_index("ix_measurements_device_metric_time", table_name="normalized_measurements")
    op.drop_table("normalized_measurements")
    op.drop_table("raw_events")
    op.drop_table("api_tokens")
    op.drop_table("viewers")
    op.drop_table("gateways")
