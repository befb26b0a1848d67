"""consumption_hourly and series_latest: rollups kept by the database in the writing transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Why: with a year of hourly readings for 1,000 meters, the consumption of one meter over a year
read 8,760 rows and the devices listing (the fleet page) read the whole table to find each
series' latest reading. Now:
* consumption_hourly holds, per series and UTC hour, what GET /api/v1/consumption sums: counts
  of readings and of each flag it reports, and the exact NUMERIC sums of the deltas (all,
  suspicious_jump, trusted, flagged energy) each with the count of deltas that went into it, so
  a sum over no delta reads null exactly as SQL's sum() does. Buckets whose edges are whole UTC
  hours (every bucket in UTC and in the zones whose offsets are whole hours) are answered from
  it; others (e.g. Asia/Kolkata) from the rows, as before.
* series_latest holds each series' latest reading (timestamp, value, unit, when it arrived,
  which gateway), so the devices listing reads one row per series.

They follow revisions because statement triggers maintain them from PostgreSQL's transition
tables: an insert adds its rows, an update (a higher revision replacing a lower one: new delta,
flags, delta_from) subtracts the old row and adds the new one, so a revised reading moves its
energy between the trusted / flagged / estimated sums (issue #14). The trigger runs in the
transaction of the statement, under the row locks of the upsert, so the rollups are exactly as
committed as the rows; rows go in key order (no deadlocks between batches). A delete subtracts,
and a TRUNCATE empties both. `partitions drop` removes the dropped hours' rollups itself (a
DETACH fires no trigger). The identity of answers with and without rollups is tested over
randomized revisions (central/tests/test_rollups.py).

Energy classes are spelled here as in central/api_series.py (UNTRUSTED_FLAGS,
FLAGGED_ENERGY_FLAGS); the equality test fails if the two ever differ.

Why the primary key INCLUDEs every figure: live ingest writes the rollup rows hour by hour for
all meters, so one meter's hours lie on as many heap pages as it has hours (8,760 a year), no
fewer than its readings do. With every figure in the index, a meter's year is an index-only
scan of consecutive leaf pages (~160 for a year). Autovacuum visits the table after 1% of it
changed (not 20%), so the visibility map that index-only scans need stays current.

Also a partial index over `gap` readings: the consumption API reads them to spread estimated
energy, and they are few.
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SUMS = ("readings", "deltas", "consumption", "flagged", "first_readings", "counter_resets",
         "suspicious_jumps", "suspicious_jump_deltas", "suspicious_jump_delta", "trusted_deltas",
         "trusted", "flagged_energy_deltas", "flagged_energy", "glitches", "gaps")

# Aggregates over `m`, whose column s is +1 for a row that counts and -1 for one that stops
# counting (the old version of an updated row).
_AGGREGATE = """
SELECT m.device_id, m.metric_type,
       date_bin('1 hour', m."timestamp", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
       sum(m.s) AS readings,
       coalesce(sum(m.s) FILTER (WHERE m.delta IS NOT NULL), 0) AS deltas,
       coalesce(sum(m.s * m.delta), 0) AS consumption,
       coalesce(sum(m.s) FILTER (WHERE cardinality(m.flags) > 0), 0) AS flagged,
       coalesce(sum(m.s) FILTER (WHERE 'first_reading' = ANY(m.flags)), 0) AS first_readings,
       coalesce(sum(m.s) FILTER (WHERE 'counter_reset' = ANY(m.flags)), 0) AS counter_resets,
       coalesce(sum(m.s) FILTER (WHERE 'suspicious_jump' = ANY(m.flags)), 0) AS suspicious_jumps,
       coalesce(sum(m.s) FILTER (WHERE 'suspicious_jump' = ANY(m.flags)
                                   AND m.delta IS NOT NULL), 0) AS suspicious_jump_deltas,
       coalesce(sum(m.s * m.delta) FILTER (WHERE 'suspicious_jump' = ANY(m.flags)), 0)
           AS suspicious_jump_delta,
       coalesce(sum(m.s) FILTER (WHERE NOT m.flags && '{{gap,implausible_rate,suspicious_jump}}'
                                   AND m.delta IS NOT NULL), 0) AS trusted_deltas,
       coalesce(sum(m.s * m.delta) FILTER (
           WHERE NOT m.flags && '{{gap,implausible_rate,suspicious_jump}}'), 0) AS trusted,
       coalesce(sum(m.s) FILTER (WHERE m.flags && '{{implausible_rate,suspicious_jump}}'
                                   AND m.delta IS NOT NULL), 0) AS flagged_energy_deltas,
       coalesce(sum(m.s * m.delta) FILTER (
           WHERE m.flags && '{{implausible_rate,suspicious_jump}}'), 0) AS flagged_energy,
       coalesce(sum(m.s) FILTER (WHERE 'glitch' = ANY(m.flags)), 0) AS glitches,
       coalesce(sum(m.s) FILTER (WHERE 'gap' = ANY(m.flags)), 0) AS gaps
  FROM {source} m
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
"""

_ADD = ("INSERT INTO consumption_hourly AS h (device_id, metric_type, hour, " + ", ".join(_SUMS)
        + ") " + _AGGREGATE + " ON CONFLICT (device_id, metric_type, hour) DO UPDATE SET "
        + ", ".join(f"{c} = h.{c} + EXCLUDED.{c}" for c in _SUMS))

_LATEST = """
INSERT INTO series_latest AS l (device_id, metric_type, "timestamp", value, unit, ingested_at,
                                gateway_id)
SELECT DISTINCT ON (device_id, metric_type) device_id, metric_type, "timestamp", value, unit,
       ingested_at, gateway_id
  FROM {source}
 ORDER BY device_id, metric_type, "timestamp" DESC
ON CONFLICT (device_id, metric_type) DO UPDATE
   SET "timestamp" = EXCLUDED."timestamp", value = EXCLUDED.value, unit = EXCLUDED.unit,
       ingested_at = EXCLUDED.ingested_at, gateway_id = EXCLUDED.gateway_id
 WHERE l."timestamp" < EXCLUDED."timestamp"
"""

# After a delete, the series that lost their latest reading take it again from what is left.
_LATEST_AFTER_DELETE = """
WITH stale AS (DELETE FROM series_latest s USING (SELECT DISTINCT device_id, metric_type
                                                    FROM old_rows) o
                WHERE s.device_id = o.device_id AND s.metric_type = o.metric_type
                  AND NOT EXISTS (SELECT 1 FROM normalized_measurements m
                                   WHERE m.device_id = s.device_id
                                     AND m.metric_type = s.metric_type
                                     AND m."timestamp" = s."timestamp")
               RETURNING s.device_id, s.metric_type)
INSERT INTO series_latest (device_id, metric_type, "timestamp", value, unit, ingested_at,
                           gateway_id)
SELECT DISTINCT ON (m.device_id, m.metric_type) m.device_id, m.metric_type, m."timestamp",
       m.value, m.unit, m.ingested_at, m.gateway_id
  FROM normalized_measurements m JOIN stale USING (device_id, metric_type)
 ORDER BY m.device_id, m.metric_type, m."timestamp" DESC
"""


def _function(name: str, body: str) -> str:
    return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
            f"BEGIN\n{body}\nRETURN NULL;\nEND\n$body$")


def upgrade() -> None:
    sums = ",\n".join(f"{c} {'numeric' if c in ('consumption', 'suspicious_jump_delta', 'trusted', 'flagged_energy') else 'bigint'} NOT NULL"
                      for c in _SUMS)
    op.execute(f"""
        CREATE TABLE consumption_hourly (
            device_id text NOT NULL,
            metric_type text NOT NULL,
            hour timestamptz NOT NULL,
            {sums},
            CONSTRAINT pk_consumption_hourly PRIMARY KEY (device_id, metric_type, hour)
                INCLUDE ({", ".join(_SUMS)})
        ) WITH (autovacuum_vacuum_scale_factor = 0.01,
                autovacuum_vacuum_insert_scale_factor = 0.01)""")
    op.execute("""
        CREATE TABLE series_latest (
            device_id text NOT NULL,
            metric_type text NOT NULL,
            "timestamp" timestamptz NOT NULL,
            value numeric NOT NULL,
            unit text NOT NULL,
            ingested_at timestamptz NOT NULL,
            gateway_id bigint NOT NULL,
            CONSTRAINT pk_series_latest PRIMARY KEY (device_id, metric_type)
        )""")
    # Backfill from the rows already stored, before the triggers exist (the service is stopped).
    everything = "(SELECT 1 AS s, * FROM normalized_measurements)"
    op.execute(_ADD.format(source=everything))
    op.execute(_LATEST.format(source="normalized_measurements"))
    plus_new = "(SELECT 1 AS s, * FROM new_rows)"
    minus_old = "(SELECT -1 AS s, * FROM old_rows)"
    both = ("(SELECT 1 AS s, * FROM new_rows UNION ALL SELECT -1 AS s, * FROM old_rows)")
    op.execute(_function("rollups_after_insert", _ADD.format(source=plus_new) + ";\n"
                         + _LATEST.format(source="new_rows") + ";"))
    op.execute(_function("rollups_after_update", _ADD.format(source=both) + ";"))
    op.execute(_function("rollups_after_delete", _ADD.format(source=minus_old) + ";\n"
                         + _LATEST_AFTER_DELETE + ";"))
    op.execute(_function("rollups_after_truncate",
                         "TRUNCATE consumption_hourly, series_latest;"))
    op.execute("CREATE TRIGGER rollups_after_insert AFTER INSERT ON normalized_measurements "
               "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION rollups_after_insert()")
    op.execute("CREATE TRIGGER rollups_after_update AFTER UPDATE ON normalized_measurements "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION rollups_after_update()")
    op.execute("CREATE TRIGGER rollups_after_delete AFTER DELETE ON normalized_measurements "
               "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION rollups_after_delete()")
    op.execute("CREATE TRIGGER rollups_after_truncate AFTER TRUNCATE ON normalized_measurements "
               "FOR EACH STATEMENT EXECUTE FUNCTION rollups_after_truncate()")
    op.execute('CREATE INDEX ix_measurements_gaps ON normalized_measurements '
               '(device_id, metric_type, "timestamp") WHERE \'gap\' = ANY(flags)')


def downgrade() -> None:
    op.execute("DROP INDEX ix_measurements_gaps")
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER rollups_after_{event} ON normalized_measurements")
        op.execute(f"DROP FUNCTION rollups_after_{event}()")
    op.execute("DROP TABLE series_latest")
    op.execute("DROP TABLE consumption_hourly")
