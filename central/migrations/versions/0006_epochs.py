"""epochs and operator_event_problems: operator events (meter replacements) parsed from raw events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Why: an operator's `meter-agent meter replace` travels as a raw event on the reserved topic
`$meter-agent/operator`. raw_events keeps it like any other message (the audit trail); `epochs`
holds what it means, one row per identity (device, metric, at), the latest record by
(received_at, seq) winning, a withdrawal kept as withdrawn. A payload that cannot be parsed is
never lost (its raw event is stored) and never applied: it is listed in
operator_event_problems with the reason, so an operator can see and fix it.

Operator events may already be stored as raw events (an agent falls back to protocol "1",
which carries raw events, while its central is older): the upgrade parses those once, with the
same code ingest uses, so no replacement recorded before the upgrade is missed.
"""
from types import SimpleNamespace

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE epochs (
            identity text COLLATE "C" PRIMARY KEY CHECK (identity ~ '^[0-9a-f]{64}$'),
            device_id text NOT NULL,
            metric_type text NOT NULL,
            "at" timestamptz NOT NULL,
            old_final numeric,
            new_initial numeric,
            withdrawn boolean NOT NULL,
            recorded_at timestamptz NOT NULL,
            gateway_id bigint NOT NULL REFERENCES gateways(id),
            raw_buffer_id uuid NOT NULL,
            raw_seq bigint NOT NULL,
            received_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute('CREATE INDEX ix_epochs_device_metric_at ON epochs (device_id, metric_type, "at")')
    op.execute("""
        CREATE TABLE operator_event_problems (
            gateway_id bigint NOT NULL REFERENCES gateways(id),
            buffer_id uuid NOT NULL,
            seq bigint NOT NULL,
            problem text NOT NULL,
            found_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, buffer_id, seq)
        )""")
    _parse_stored_operator_events()


def _parse_stored_operator_events() -> None:
    from central import operator_events  # the ingest code itself: one definition of the rules

    conn = op.get_bind()
    rows = conn.exec_driver_sql(
        "SELECT r.gateway_id, g.name, r.buffer_id::text, r.seq, r.topic, r.payload, "
        "r.received_at FROM raw_events r JOIN gateways g ON g.id = r.gateway_id "
        "WHERE r.topic = %(topic)s ORDER BY r.received_at, r.seq",
        {"topic": operator_events.TOPIC}).all()
    cursor = conn.connection.cursor()
    for gateway_pk, gateway, buffer_id, seq, topic, payload, received_at in rows:
        raw = SimpleNamespace(topic=topic, seq=seq, payload=bytes(payload), received_at=received_at)
        operator_events.apply(cursor, gateway, gateway_pk, buffer_id, [raw])


def downgrade() -> None:
    op.execute("DROP TABLE operator_event_problems")
    op.execute("DROP TABLE epochs")
