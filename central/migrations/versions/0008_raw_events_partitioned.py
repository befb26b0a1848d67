"""raw_events partitioned by month of `received_at`; raw_event_ids keeps each raw identity once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Why: raw events are most of the central's bytes (the original payload and its jsonb copy); by
month they can be pruned by time and, on an operator's explicit order, dropped a month at a time.

The partition key is `received_at`, the gateway's clock at receipt, which the agent keeps in its
buffer and sends unchanged on every retry (never the ingest time). A raw event's identity,
though, is (gateway_id, buffer_id, seq) (docs/PROTOCOL.md: "insert if absent"), and nothing
makes a gateway send the same received_at twice: a buggy or restored agent could resend seq 41
with another receive time, which may fall in another month. A unique index on the partitioned
table must include the key, so it could not refuse that second copy. `raw_event_ids` is a plain
table with exactly the old primary key (gateway_id, buffer_id, seq) and the received_at that
was stored: ingest inserts the identity there first (ON CONFLICT DO NOTHING, row locks as
before) and the raw event only when its identity was new, so such a resend is answered
`duplicate` and the first copy kept, exactly as before. It also tells which month holds an
identity, so reading one raw event touches one partition. Identities are kept when a month
is dropped: a resend of a dropped event stays a duplicate.

The upgrade copies the table (stop the service while migrating).
"""
from alembic import op

from central.partitions import months_at_upgrade, partitions_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = """
    gateway_id bigint NOT NULL CONSTRAINT fk_raw_events_gateway REFERENCES gateways(id),
    buffer_id uuid NOT NULL,
    seq bigint NOT NULL CONSTRAINT ck_raw_events_seq CHECK (seq >= 1),
    topic text NOT NULL,
    payload bytea NOT NULL,
    payload_json jsonb,
    qos smallint NOT NULL CONSTRAINT ck_raw_events_qos CHECK (qos BETWEEN 0 AND 2),
    retained boolean NOT NULL,
    dup boolean NOT NULL,
    received_at timestamptz NOT NULL,
    decode_error text,
    ingested_at timestamptz NOT NULL DEFAULT now()
"""
_NAMES = ("gateway_id, buffer_id, seq, topic, payload, payload_json, qos, retained, dup, "
          "received_at, decode_error, ingested_at")


def upgrade() -> None:
    conn = op.get_bind()
    op.execute("ALTER TABLE raw_events RENAME TO raw_events_0007")
    op.execute("ALTER INDEX pk_raw_events RENAME TO pk_raw_events_0007")
    op.execute("""
        CREATE TABLE raw_event_ids (
            -- No foreign key: raw_events' own one checks the same gateway_id in the same
            -- statement, and one here would make TRUNCATE ... CASCADE empty this table twice.
            gateway_id bigint NOT NULL,
            buffer_id uuid NOT NULL,
            seq bigint NOT NULL,
            received_at timestamptz NOT NULL,
            CONSTRAINT pk_raw_event_ids PRIMARY KEY (gateway_id, buffer_id, seq)
        )""")
    op.execute(f"CREATE TABLE raw_events ({_COLUMNS}) PARTITION BY RANGE (received_at)")
    for statement in partitions_sql("raw_events", months_at_upgrade(conn, "raw_events_0007",
                                                                    "received_at")):
        op.execute(statement)
    op.execute(f"INSERT INTO raw_events ({_NAMES}) SELECT {_NAMES} FROM raw_events_0007")
    op.execute("INSERT INTO raw_event_ids (gateway_id, buffer_id, seq, received_at) "
               "SELECT gateway_id, buffer_id, seq, received_at FROM raw_events_0007")
    op.execute("ALTER TABLE raw_events ADD CONSTRAINT pk_raw_events "
               "PRIMARY KEY (gateway_id, buffer_id, seq, received_at)")
    op.execute("DROP TABLE raw_events_0007")
    # Emptying raw_events empties the identities with it (a TRUNCATE is "forget everything";
    # dropping a month is not, and keeps them).
    op.execute("CREATE FUNCTION raw_event_ids_after_truncate() RETURNS trigger LANGUAGE plpgsql "
               "AS $body$ BEGIN TRUNCATE raw_event_ids; RETURN NULL; END $body$")
    op.execute("CREATE TRIGGER raw_event_ids_after_truncate AFTER TRUNCATE ON raw_events "
               "FOR EACH STATEMENT EXECUTE FUNCTION raw_event_ids_after_truncate()")


def downgrade() -> None:
    op.execute("DROP TRIGGER raw_event_ids_after_truncate ON raw_events")
    op.execute("DROP FUNCTION raw_event_ids_after_truncate()")
    op.execute("ALTER TABLE raw_events RENAME TO raw_events_0008")
    op.execute("ALTER INDEX pk_raw_events RENAME TO pk_raw_events_0008")
    op.execute(f"CREATE TABLE raw_events ({_COLUMNS})")
    op.execute(f"INSERT INTO raw_events ({_NAMES}) SELECT {_NAMES} FROM raw_events_0008")
    op.execute("ALTER TABLE raw_events ADD CONSTRAINT pk_raw_events "
               "PRIMARY KEY (gateway_id, buffer_id, seq)")
    op.execute("DROP TABLE raw_events_0008")
    op.execute("DROP TABLE raw_event_ids")
