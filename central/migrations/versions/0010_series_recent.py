"""series_latest.recent: each series' 11 latest reading timestamps, kept by the database at ingest.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Why: the devices listing shows each series' usual interval, the median gap between its last 11
readings. With series_latest (0009) the latest reading was one row per series, but the 11
timestamps were still looked up per series in the newest partitions: 1,000 index descents, ~60
of the ~75 ms of SQL behind the fleet page with a year of hourly data for 1,000 meters
(docs/BENCHMARKS.md). Now they are kept beside the latest reading, newest first, as a multiset
of the rows' timestamps (two readings at one instant are two entries, as two rows were), so the
listing reads one row per series and nothing else.

How they follow the rows (the rollup triggers of 0009, replaced here with the same statements
plus `recent`):
* insert: each series' newest 11 timestamps of the statement are merged with the stored ones and
  the newest 11 kept; a series row is only rewritten when the statement brings a newer latest
  reading or a timestamp that enters the 11 (a late reading older than all 11 writes nothing);
* update: the ingest upsert changes delta, flags, revision and delta_from, never a timestamp
  (the event_id is a hash over it), so `recent`, like the latest reading, stays;
* delete: the series that lost rows take their 11 again from the rows that are left
  (series_recent()), as they take their latest reading again; `partitions drop` does the same
  for the series whose 11 reach into the dropped months (a DETACH fires no trigger);
* truncate: emptied with the rest of series_latest.
The devices listing with CENTRAL_READ_ROLLUPS=false still reads the rows; the answers are the
same (central/tests/test_rollups.py, test_read_bytes.py).
"""
import importlib.util
from pathlib import Path

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RECENT = 11

# series_latest's statement of 0009's rollups_after_insert, carrying `recent` too.
_LATEST_WITH_RECENT = f"""
WITH ranked AS (
  SELECT device_id, metric_type, "timestamp", value, unit, ingested_at, gateway_id,
         row_number() OVER (PARTITION BY device_id, metric_type ORDER BY "timestamp" DESC) AS k
    FROM new_rows
), recent AS (
  SELECT device_id, metric_type, array_agg("timestamp" ORDER BY "timestamp" DESC) AS recent
    FROM ranked WHERE k <= {RECENT} GROUP BY device_id, metric_type
)
INSERT INTO series_latest AS l (device_id, metric_type, "timestamp", value, unit, ingested_at,
                                gateway_id, recent)
SELECT r.device_id, r.metric_type, r."timestamp", r.value, r.unit, r.ingested_at, r.gateway_id,
       t.recent
  FROM ranked r JOIN recent t USING (device_id, metric_type)
 WHERE r.k = 1
 ORDER BY r.device_id, r.metric_type
ON CONFLICT (device_id, metric_type) DO UPDATE
   SET "timestamp" = CASE WHEN l."timestamp" < EXCLUDED."timestamp" THEN EXCLUDED."timestamp"
                          ELSE l."timestamp" END,
       value = CASE WHEN l."timestamp" < EXCLUDED."timestamp" THEN EXCLUDED.value
                    ELSE l.value END,
       unit = CASE WHEN l."timestamp" < EXCLUDED."timestamp" THEN EXCLUDED.unit ELSE l.unit END,
       ingested_at = CASE WHEN l."timestamp" < EXCLUDED."timestamp" THEN EXCLUDED.ingested_at
                          ELSE l.ingested_at END,
       gateway_id = CASE WHEN l."timestamp" < EXCLUDED."timestamp" THEN EXCLUDED.gateway_id
                         ELSE l.gateway_id END,
       recent = ARRAY(SELECT t FROM unnest(l.recent || EXCLUDED.recent) AS t
                       ORDER BY t DESC LIMIT {RECENT})
 WHERE l."timestamp" < EXCLUDED."timestamp" OR cardinality(l.recent) < {RECENT}
    OR EXCLUDED.recent[1] > l.recent[{RECENT}]
"""

_PLUS_NEW = "(SELECT 1 AS s, * FROM new_rows)"
_MINUS_OLD = "(SELECT -1 AS s, * FROM old_rows)"
# After a delete, 0009's statement (the series that lost their latest reading take it again from
# what is left), then this one: every series that lost a row takes its 11 again.
_RECENT_AFTER_DELETE = """
UPDATE series_latest s SET recent = series_recent(s.device_id, s.metric_type)
  FROM (SELECT DISTINCT device_id, metric_type FROM old_rows) o
 WHERE s.device_id = o.device_id AND s.metric_type = o.metric_type
"""


def _rollups_0009():
    """Migration 0009's module: its statements, which 0010 keeps (consumption_hourly's, and
    series_latest's after a delete) or puts back on downgrade, are not copied here."""
    spec = importlib.util.spec_from_file_location(
        "rollups_0009", Path(__file__).with_name("0009_rollups.py"))
    rollups = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rollups)
    return rollups


def _function(name: str, body: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
            f"BEGIN\n{body}\nRETURN NULL;\nEND\n$body$")


def upgrade() -> None:
    rollups = _rollups_0009()
    op.execute("ALTER TABLE series_latest ADD COLUMN recent timestamptz[] NOT NULL DEFAULT '{}'")
    op.execute(f"""
        CREATE FUNCTION series_recent(device text, metric text) RETURNS timestamptz[]
        LANGUAGE sql STABLE AS $body$
          SELECT ARRAY(SELECT m."timestamp" FROM normalized_measurements m
                        WHERE m.device_id = device AND m.metric_type = metric
                        ORDER BY m."timestamp" DESC LIMIT {RECENT})
        $body$""")
    # Backfill before the triggers change (the service is stopped during migrations).
    op.execute("UPDATE series_latest SET recent = series_recent(device_id, metric_type)")
    op.execute(_function("rollups_after_insert", rollups._ADD.format(source=_PLUS_NEW) + ";\n"
                         + _LATEST_WITH_RECENT + ";"))
    op.execute(_function("rollups_after_delete", rollups._ADD.format(source=_MINUS_OLD) + ";\n"
                         + rollups._LATEST_AFTER_DELETE + ";\n" + _RECENT_AFTER_DELETE + ";"))


def downgrade() -> None:
    rollups = _rollups_0009()
    op.execute(_function("rollups_after_insert", rollups._ADD.format(source=_PLUS_NEW) + ";\n"
                         + rollups._LATEST.format(source="new_rows") + ";"))
    op.execute(_function("rollups_after_delete", rollups._ADD.format(source=_MINUS_OLD) + ";\n"
                         + rollups._LATEST_AFTER_DELETE + ";"))
    op.execute("DROP FUNCTION series_recent(text, text)")
    op.execute("ALTER TABLE series_latest DROP COLUMN recent")
