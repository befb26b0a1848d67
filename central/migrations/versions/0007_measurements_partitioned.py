"""normalized_measurements partitioned by month of `timestamp`; dropped_partitions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Why: at fleet scale (a year of hourly readings for 1,000 meters is 8.76 M rows) queries over a
time range prune to the months they touch, each month's indexes stay small, and retention can
drop a month (`python3 -m central partitions drop`, off by default) instead of deleting rows.

The partition key is the reading's `timestamp`, never the ingest time: the event_id is a hash
over the canonical timestamp (docs/PROTOCOL.md; ingest rejects a mismatch), so every send of
one event_id has the same timestamp and lands in the same partition. PostgreSQL requires the key
in every unique index, so the primary key becomes (event_id, "timestamp"); because the timestamp
is a function of the event_id, it is unique exactly where event_id alone was, and ON CONFLICT
(event_id, "timestamp") takes the same decisions ON CONFLICT (event_id) took.

Partitions: one per month with data in the automatic window (central/partitions.py), the
current and next month, and a DEFAULT partition for everything else. Ingest creates later
months as their data arrives.

The upgrade copies the table (rename, create the partitioned one, INSERT ... SELECT, build the
indexes after the copy, drop the old one) under an exclusive lock: stop the service while
migrating, as for 0003. Measured on 8.76 M rows: docs/BENCHMARKS.md.
"""
from alembic import op

from central.partitions import months_at_upgrade, partitions_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = """
    event_id text COLLATE "C" NOT NULL
        CONSTRAINT ck_measurements_event_id
        CHECK (octet_length(event_id) = 64 AND event_id ~ '^[0-9a-f]*$'),
    gateway_id bigint NOT NULL CONSTRAINT fk_measurements_gateway REFERENCES gateways(id),
    device_id text NOT NULL,
    metric_type text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    value numeric NOT NULL,
    unit text NOT NULL,
    delta numeric,
    flags text[] NOT NULL DEFAULT '{}',
    revision integer NOT NULL CONSTRAINT ck_measurements_revision CHECK (revision >= 1),
    raw_buffer_id uuid NOT NULL,
    raw_seq bigint NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    delta_from timestamptz
"""
_NAMES = ("event_id, gateway_id, device_id, metric_type, \"timestamp\", value, unit, delta, flags, "
          "revision, raw_buffer_id, raw_seq, ingested_at, updated_at, delta_from")
_INDEXES = ("pk_normalized_measurements", "ix_measurements_device_metric_time",
            "ix_measurements_time")


def upgrade() -> None:
    conn = op.get_bind()
    op.execute("ALTER TABLE normalized_measurements RENAME TO normalized_measurements_0006")
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_0006")
    op.execute(f'CREATE TABLE normalized_measurements ({_COLUMNS}) PARTITION BY RANGE ("timestamp")')
    for statement in partitions_sql("normalized_measurements", months_at_upgrade(
            conn, "normalized_measurements_0006", "timestamp")):
        op.execute(statement)
    op.execute(f"INSERT INTO normalized_measurements ({_NAMES}) "
               f"SELECT {_NAMES} FROM normalized_measurements_0006")
    # Indexes after the copy: one sorted build per partition instead of row-by-row inserts.
    op.execute('ALTER TABLE normalized_measurements ADD CONSTRAINT pk_normalized_measurements '
               'PRIMARY KEY (event_id, "timestamp")')
    op.execute('CREATE INDEX ix_measurements_device_metric_time ON normalized_measurements '
               '(device_id, metric_type, "timestamp")')
    op.execute('CREATE INDEX ix_measurements_time ON normalized_measurements ("timestamp")')
    op.execute("DROP TABLE normalized_measurements_0006")
    op.execute("""
        CREATE TABLE dropped_partitions (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            table_name text NOT NULL,
            partition_name text NOT NULL,
            range_from timestamptz NOT NULL,
            range_to timestamptz NOT NULL,
            row_count bigint NOT NULL,
            note text NOT NULL,
            dropped_at timestamptz NOT NULL DEFAULT now()
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE dropped_partitions")
    op.execute("ALTER TABLE normalized_measurements RENAME TO normalized_measurements_0007")
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_0007")
    op.execute(f"CREATE TABLE normalized_measurements ({_COLUMNS})")
    op.execute(f"INSERT INTO normalized_measurements ({_NAMES}) "
               f"SELECT {_NAMES} FROM normalized_measurements_0007")
    op.execute("ALTER TABLE normalized_measurements ADD CONSTRAINT pk_normalized_measurements "
               "PRIMARY KEY (event_id)")
    op.execute('CREATE INDEX ix_measurements_device_metric_time ON normalized_measurements '
               '(device_id, metric_type, "timestamp")')
    op.execute('CREATE INDEX ix_measurements_time ON normalized_measurements ("timestamp")')
    op.execute("DROP TABLE normalized_measurements_0007")  # and its partitions
