"""Monthly range partitions of the two data tables: created ahead as data arrives, dropped only
on an operator's explicit order.

Why it is shaped this way:
* The partition key is the column that is the same on every send of a record: a measurement's
  `timestamp` (the event_id is a hash over it, so one event_id is always in one partition and
  ON CONFLICT (event_id, "timestamp") decides exactly what ON CONFLICT (event_id) decided) and a
  raw event's `received_at` (the gateway's clock at receipt, kept in its buffer). Never the
  ingest time, which differs between a send and its retry.
* Each table has a DEFAULT partition, so a row never fails for want of a partition: a month
  outside the automatic window (the protocol accepts years 0001-9999; a meter with an unset
  clock says 2000 or 1970), or a month whose partition could not be created just then (lock
  timeout), lands there and stays correct, only less pruned. `partitions list` shows its rows.
* Ingest creates the partition of every month its batch touches inside the window, and the
  month after it (ahead of the data), in a short transaction of its own before the batch's, with
  a lock timeout: creating a partition locks the parent, and a slow reader must not stall ingest.
  A process remembers the months it has seen, so the steady state costs a set lookup per batch.
* When the DEFAULT partition already holds rows of a month being created (data from before the
  month entered the window), those rows are moved into the new partition in the same
  transaction, which then attaches it: no row is ever in two places or none.
* Dropping is off by default: `python3 -m central partitions drop` refuses without
  --yes-delete-data, logs what it drops, and records it in `dropped_partitions`. Raw events keep
  their identity in `raw_event_ids` (migration 0008), so a resent raw event from a dropped month
  is still answered `duplicate`, never stored again.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import weakref
from dataclasses import dataclass
from typing import Iterable, Optional

import psycopg2
import psycopg2.errorcodes

log = logging.getLogger("central.partitions")

# table -> its partition key (the column that is the same on every retry).
PARTITION_KEYS = {"normalized_measurements": "timestamp", "raw_events": "received_at"}
# Months created automatically: from this many months back to this many ahead of now. Bounds
# the partition count a gateway with a wrong clock can cause; older data goes to DEFAULT unless
# an operator creates its months (`partitions create`).
WINDOW_MONTHS_BACK = 120
WINDOW_MONTHS_AHEAD = 2
LOCK_TIMEOUT = "2s"
UTC = dt.timezone.utc

Month = tuple[int, int]  # (year, month)


def month_of(text_or_time) -> Month:
    """The UTC month of a canonical timestamp text ('2026-12-06T...Z') or an aware datetime."""
    if isinstance(text_or_time, str):
        return int(text_or_time[0:4]), int(text_or_time[5:7])
    t = text_or_time.astimezone(UTC)
    return t.year, t.month


def add_months(month: Month, n: int) -> Month:
    index = month[0] * 12 + month[1] - 1 + n
    return index // 12, index % 12 + 1


def month_start(month: Month) -> dt.datetime:
    return dt.datetime(month[0], month[1], 1, tzinfo=UTC)


def partition_name(table: str, month: Month) -> str:
    return f"{table}_y{month[0]:04d}m{month[1]:02d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def in_window(month: Month, now: dt.datetime) -> bool:
    current = month_of(now)
    return add_months(current, -WINDOW_MONTHS_BACK) <= month <= add_months(current,
                                                                         WINDOW_MONTHS_AHEAD)


def months_to_create(months: Iterable[Month], now: dt.datetime) -> set[Month]:
    """Each month in the window and the month after it (ahead of the data), if also in it."""
    wanted = set()
    for month in months:
        for candidate in (month, add_months(month, 1)):
            if in_window(candidate, now):
                wanted.add(candidate)
    return wanted


def parse_month(text: str) -> Month:
    match = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return int(match.group(1)), int(match.group(2))


# --- migrations (0007, 0008) ---------------------------------------------------------------------

def months_at_upgrade(conn, table: str, key: str) -> list[Month]:
    """The months to create when a populated table is partitioned: those with rows inside the
    automatic window, and the current and next month (SQLAlchemy connection)."""
    now = dt.datetime.now(UTC)
    months = {month_of(t) for (t,) in conn.exec_driver_sql(
        f"SELECT DISTINCT date_trunc('month', \"{key}\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
        f"FROM {table}")}
    current = month_of(now)
    months |= {current, add_months(current, 1)}
    return sorted(m for m in months if in_window(m, now))


def partitions_sql(table: str, months: list[Month]) -> list[str]:
    """CREATE statements for the DEFAULT partition and these months' partitions."""
    out = [f"CREATE TABLE {default_name(table)} PARTITION OF {table} DEFAULT"]
    for month in months:
        low, high = month_start(month), month_start(add_months(month, 1))
        out.append(f"CREATE TABLE {partition_name(table, month)} PARTITION OF {table} "
                   f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')")
    return out


# --- database ---------------------------------------------------------------------------------

_known: "weakref.WeakKeyDictionary[object, set[tuple[str, Month]]]" = weakref.WeakKeyDictionary()


def ensure_for_batch(engine, measurement_times: Iterable[str], received_times: Iterable[str],
                     now: Optional[dt.datetime] = None) -> None:
    """Create the partitions a batch's rows (canonical timestamp texts) need, if missing."""
    now = now or dt.datetime.now(UTC)
    wanted = [("normalized_measurements", m)
              for m in months_to_create({month_of(t) for t in measurement_times}, now)]
    wanted += [("raw_events", m) for m in months_to_create({month_of(t) for t in received_times},
                                                           now)]
    known = _known.setdefault(engine, set())
    missing = [w for w in wanted if w not in known]
    if not missing:
        return
    conn = engine.raw_connection()
    try:
        for table, month in sorted(missing):
            if create_month(conn, table, month):
                known.add((table, month))
    finally:
        conn.close()


def create_month(conn, table: str, month: Month, lock_timeout: Optional[str] = LOCK_TIMEOUT
                 ) -> bool:
    """Create (table, month)'s partition if absent, moving its rows out of DEFAULT; commits.
    True when the partition exists afterwards; False when a lock was not granted in time (the
    rows then keep going to DEFAULT, and a later batch tries again)."""
    name, default = partition_name(table, month), default_name(table)
    key = PARTITION_KEYS[table]
    low, high = month_start(month), month_start(add_months(month, 1))
    try:
        with conn.cursor() as cur:
            if lock_timeout:
                cur.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            if cur.fetchone()[0]:
                conn.rollback()
                return True
            # The default partition is locked first: no row of this month can enter it between
            # the check and the attach.
            cur.execute(f"LOCK TABLE {default} IN SHARE ROW EXCLUSIVE MODE")
            cur.execute(f'SELECT EXISTS (SELECT 1 FROM {default} WHERE "{key}" >= %s '
                        f'AND "{key}" < %s)', (low, high))
            if not cur.fetchone()[0]:
                cur.execute(f"CREATE TABLE {name} PARTITION OF {table} "
                            "FOR VALUES FROM (%s) TO (%s)", (low, high))
            else:
                cur.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS "
                            "INCLUDING CONSTRAINTS)")
                # Statement triggers on the parent do not fire for statements on a partition or
                # a plain table, so the rollups (migration 0009) see no change: the rows move.
                cur.execute(f'WITH moved AS (DELETE FROM {default} WHERE "{key}" >= %s '
                            f'AND "{key}" < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved',
                            (low, high))
                moved = cur.rowcount
                cur.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} "
                            "FOR VALUES FROM (%s) TO (%s)", (low, high))
                log.info("partition %s created with %d rows moved from %s", name, moved, default)
        conn.commit()
        return True
    except psycopg2.Error as exc:
        conn.rollback()
        if exc.pgcode in (psycopg2.errorcodes.DUPLICATE_TABLE,
                          psycopg2.errorcodes.INVALID_OBJECT_DEFINITION):
            return True  # another process created it meanwhile
        if exc.pgcode == psycopg2.errorcodes.LOCK_NOT_AVAILABLE:
            log.warning("partition %s not created now (lock timeout); its rows go to %s",
                        name, default)
            return False
        raise


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    low: Optional[dt.datetime]  # None for DEFAULT
    high: Optional[dt.datetime]
    rows: int  # estimated (pg_class.reltuples) except for DEFAULT, which is counted


def listing(conn) -> list[Partition]:
    out = []
    with conn.cursor() as cur:
        for table in PARTITION_KEYS:
            cur.execute("""
                SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), greatest(c.reltuples, 0)
                  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = to_regclass(%s)
                 ORDER BY c.relname""", (table,))
            for name, bound, rows in cur.fetchall():
                if bound == "DEFAULT":
                    cur.execute(f"SELECT count(*) FROM {name}")
                    out.append(Partition(table, name, None, None, cur.fetchone()[0]))
                    continue
                low, high = _bounds(name)
                out.append(Partition(table, name, low, high, int(rows)))
    return out


def _bounds(name: str) -> tuple[dt.datetime, dt.datetime]:
    match = re.search(r"_y(\d{4})m(\d{2})$", name)
    assert match, name
    month = (int(match.group(1)), int(match.group(2)))
    return month_start(month), month_start(add_months(month, 1))


def droppable(conn, table: str, before: Month) -> list[Partition]:
    """The monthly partitions of `table` that end at or before the start of `before`."""
    edge = month_start(before)
    return [p for p in listing(conn)
            if p.table == table and p.high is not None and p.high <= edge]


def drop_before(conn, table: str, before: Month, operator_note: str) -> list[tuple[str, int]]:
    """Drop `table`'s monthly partitions wholly before `before`, in one transaction, each
    recorded in dropped_partitions and logged. For measurements the rollups of those hours go
    too, and each series' latest reading is taken again from what is left, so every read gives
    the same answer as a query over the remaining rows. Returns (partition, exact rows)."""
    dropped = []
    with conn.cursor() as cur:
        parts = droppable(conn, table, before)
        for part in parts:
            cur.execute(f"SELECT count(*) FROM {part.name}")
            rows = cur.fetchone()[0]
            cur.execute(f"ALTER TABLE {table} DETACH PARTITION {part.name}")
            cur.execute(f"DROP TABLE {part.name}")
            cur.execute("INSERT INTO dropped_partitions (table_name, partition_name, range_from, "
                        "range_to, row_count, note) VALUES (%s, %s, %s, %s, %s, %s)",
                        (table, part.name, part.low, part.high, rows, operator_note))
            if table == "normalized_measurements":
                cur.execute("DELETE FROM consumption_hourly WHERE hour >= %s AND hour < %s",
                            (part.low, part.high))
            log.warning("dropped partition %s (%s rows, %s to %s) on the operator's order: %s",
                        part.name, rows, part.low, part.high, operator_note)
            dropped.append((part.name, rows))
        if dropped and table == "normalized_measurements":
            cur.execute("""
                WITH stale AS (DELETE FROM series_latest s
                                WHERE NOT EXISTS (SELECT 1 FROM normalized_measurements m
                                                   WHERE m.device_id = s.device_id
                                                     AND m.metric_type = s.metric_type
                                                     AND m."timestamp" = s."timestamp")
                               RETURNING device_id, metric_type)
                INSERT INTO series_latest (device_id, metric_type, "timestamp", value, unit,
                                           ingested_at, gateway_id)
                SELECT DISTINCT ON (m.device_id, m.metric_type) m.device_id, m.metric_type,
                       m."timestamp", m.value, m.unit, m.ingested_at, m.gateway_id
                  FROM normalized_measurements m JOIN stale USING (device_id, metric_type)
                 ORDER BY m.device_id, m.metric_type, m."timestamp" DESC""")
            # Each series' 11 latest timestamps (migration 0010) again from the rows left, for
            # the series whose oldest of them lies before the last dropped month's end (and
            # those just taken again); the others' 11 are all newer than any dropped row.
            cur.execute("""
                UPDATE series_latest SET recent = series_recent(device_id, metric_type)
                 WHERE cardinality(recent) = 0 OR recent[cardinality(recent)] < %s""",
                        (max(part.high for part in parts),))
    conn.commit()
    return dropped
