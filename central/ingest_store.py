"""Storing a validated batch: bulk, idempotent, revision-ordered, all in one transaction.

Why it is shaped this way:
* One INSERT ... SELECT FROM unnest(arrays) per table, not one statement per row: a batch of
  1,000 events is two round trips, which is what makes >= 10k events/s possible.
* Raw events: their identity (gateway, buffer_id, seq) goes into raw_event_ids first, ON CONFLICT
  DO NOTHING; RETURNING tells which are new ("stored"), and only those are inserted into the
  raw_events partition of their received_at; the others were already there ("duplicate"), even
  when resent with another received_at (migration 0008).
* Partitions: the months the batch needs are created, if missing, before its transaction
  (central/partitions.py); a month without one goes to the DEFAULT partition, never fails.
* Measurements: ON CONFLICT (event_id, "timestamp") DO UPDATE (the timestamp is the partition key
  and a function of the event_id, validated, so this is exactly ON CONFLICT (event_id)) ... WHERE stored.revision < incoming.revision.
  PostgreSQL decides this per row under the row lock, so revision ordering holds however uploads
  interleave; a conflicting row is locked even when the WHERE is false, so the follow-up SELECT
  that tells "duplicate" from "superseded" sees the state our transaction will commit against.
  The first delivering gateway and raw reference are never overwritten: a reading heard
  through two gateways is one row, owned by whichever delivered it first.
* Rows are inserted in key order so concurrent batches with overlapping keys lock in the same
  order and cannot deadlock; a deadlock or serialization failure is retried anyway.
* The gateway's status row is updated last, so two batches of one gateway in flight at once
  (the agent keeps two) wait for each other only for the first one's commit. Their commits may
  land in either order: the status fields follow the batch with the later `sent_at`, whatever
  the commit order (see _GATEWAY_STATUS).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Any, Iterable, Optional

import psycopg2
import psycopg2.errorcodes
from sqlalchemy.engine import Engine

from central import PROTOCOL_VERSION, operator_events, partitions
from central.canonical import decimal_text
from central.ingest_validate import Batch, MeasurementRecord, RawRecord

log = logging.getLogger("central.ingest")

_RETRY_CODES = {psycopg2.errorcodes.DEADLOCK_DETECTED, psycopg2.errorcodes.SERIALIZATION_FAILURE}
_MAX_ATTEMPTS = 5

# The payload travels once, as the base64 text the gateway sent (validated strictly, so
# PostgreSQL's decoder yields the same bytes), a third shorter than hex; its jsonb copy is parsed
# from those bytes where validation found JSON that jsonb accepts (is_json), rather than sent
# again as text.
_INSERT_RAW = """
WITH u AS (
  SELECT * FROM unnest(%(seq)s::bigint[], %(topic)s::text[], %(payload)s::text[],
                       %(is_json)s::boolean[], %(qos)s::smallint[], %(retained)s::boolean[],
                       %(dup)s::boolean[], %(received_at)s::timestamptz[], %(decode_error)s::text[])
         AS u(seq, topic, payload, is_json, qos, retained, dup, received_at, decode_error)
), new_ids AS (
  INSERT INTO raw_event_ids (gateway_id, buffer_id, seq, received_at)
  SELECT %(gw)s, %(buffer_id)s::uuid, u.seq, u.received_at FROM u ORDER BY u.seq
  ON CONFLICT (gateway_id, buffer_id, seq) DO NOTHING
  RETURNING seq
)
INSERT INTO raw_events (gateway_id, buffer_id, seq, topic, payload, payload_json, qos, retained,
                        dup, received_at, decode_error)
SELECT %(gw)s, %(buffer_id)s::uuid, u.seq, u.topic, p.bytes,
       CASE WHEN u.is_json THEN convert_from(p.bytes, 'UTF8')::jsonb END,
       u.qos, u.retained, u.dup, u.received_at, u.decode_error
  FROM u JOIN new_ids USING (seq)
 CROSS JOIN LATERAL (SELECT decode(u.payload, 'base64') AS bytes) AS p
 ORDER BY u.seq
RETURNING seq
"""

# ORDER BY event_id COLLATE "C": the lock order every batch shares, compared as bytes like the
# column itself (migration 0003) rather than through the locale.
_UPSERT_MEASUREMENTS = """
INSERT INTO normalized_measurements AS m (event_id, gateway_id, device_id, metric_type,
       "timestamp", value, unit, delta, flags, revision, raw_buffer_id, raw_seq, delta_from)
SELECT u.event_id, %(gw)s, u.device_id, u.metric_type, u.ts, u.value, u.unit, u.delta,
       string_to_array(u.flags, ','), u.revision, u.raw_buffer_id::uuid, u.raw_seq, u.delta_from
  FROM unnest(%(event_id)s::text[], %(device_id)s::text[], %(metric_type)s::text[],
              %(ts)s::timestamptz[], %(value)s::numeric[], %(unit)s::text[], %(delta)s::numeric[],
              %(flags)s::text[], %(revision)s::integer[], %(raw_buffer_id)s::text[],
              %(raw_seq)s::bigint[], %(delta_from)s::timestamptz[])
       AS u(event_id, device_id, metric_type, ts, value, unit, delta, flags, revision,
            raw_buffer_id, raw_seq, delta_from)
 ORDER BY u.event_id COLLATE "C"
ON CONFLICT (event_id, "timestamp") DO UPDATE
   SET delta = EXCLUDED.delta, flags = EXCLUDED.flags, revision = EXCLUDED.revision,
       delta_from = EXCLUDED.delta_from, updated_at = now()
 WHERE m.revision < EXCLUDED.revision
RETURNING event_id
"""

# One primary-key probe per id (LIMIT 1 keeps the subquery from being flattened into a join),
# so a replayed batch costs the same on a small table as on a large one; `event_id = ANY(...)`
# made the planner scan the whole table while it was small. The timestamp prunes each probe
# to its month's partition.
_EXISTING = """
SELECT m.event_id, m.revision, m.delta, m.flags
  FROM unnest(%(ids)s::text[], %(ts)s::timestamptz[]) AS i(event_id, ts)
 CROSS JOIN LATERAL (SELECT event_id, revision, delta, flags FROM normalized_measurements
                      WHERE event_id = i.event_id AND "timestamp" = i.ts LIMIT 1) AS m
"""

# Status fields follow the batch with the later sent_at: with two batches in flight the one
# built first may commit last, and must not put back its older backlog and skew. A sent_at
# older than the stored one by more than _CLOCK_STEP is not such a batch (the agent gives up on
# a request after 30 s by default) but the gateway's clock stepped back, and wins too;
# otherwise a clock corrected backwards would freeze the status until it caught up again.
# Counters add up; last_contact_at only moves forward.
_CLOCK_STEP = dt.timedelta(minutes=5)
_GATEWAY_STATUS = """
UPDATE gateways
   SET last_contact_at = GREATEST(last_contact_at, %(now)s),
       last_sent_at = CASE WHEN {later} THEN %(sent_at)s ELSE last_sent_at END,
       clock_skew_ms = CASE WHEN {later} THEN %(skew)s ELSE clock_skew_ms END,
       backlog_records = CASE WHEN {later} THEN %(backlog_records)s ELSE backlog_records END,
       backlog_oldest_received_at = CASE WHEN {later} THEN %(backlog_oldest)s
                                         ELSE backlog_oldest_received_at END,
       rejected_records = rejected_records + %(rejected)s,
       last_rejection_reason = CASE WHEN %(rejected)s > 0 AND (last_rejected_at IS NULL
                                                              OR last_rejected_at <= %(now)s)
                                    THEN %(last_reason)s ELSE last_rejection_reason END,
       last_rejected_at = CASE WHEN %(rejected)s > 0 THEN GREATEST(last_rejected_at, %(now)s)
                               ELSE last_rejected_at END
 WHERE id = %(gw)s
""".format(later="(last_sent_at IS NULL OR last_sent_at <= %(sent_at)s "
                 "OR last_sent_at > %(sent_at)s + %(clock_step)s)")


# --- array literals ------------------------------------------------------------------------
# Why literals: psycopg2 renders a Python list as ARRAY[e1, e2, ...], which the server must
# parse as thousands of expressions; one literal per column goes through array_in and is
# several times cheaper per batch. Each column gets the cheapest encoding its values allow.

def pg_array(values: Iterable) -> str:
    """The general literal ('{"a",NULL,7,t}'): str/int/bool/None elements, strings escaped."""
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif v is True:
            parts.append("t")
        elif v is False:
            parts.append("f")
        elif isinstance(v, str):
            parts.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(str(v))
    return "{" + ",".join(parts) + "}"


def _array_of_ints(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _array_of_bools(values: list[bool]) -> str:
    return "{" + ",".join(["t" if v else "f" for v in values]) + "}"


def _array_of_tokens(values: list[Optional[str]]) -> str:
    """Elements that never need quoting: validated canonical timestamps, decimals, lowercase hex
    ids, UUIDs, and the fixed metric/unit names: none is empty or the word NULL, none holds a
    quote, backslash, comma, brace or space. None is NULL."""
    return "{" + ",".join(["NULL" if v is None else v for v in values]) + "}"


def _array_of_texts(values: list[Optional[str]]) -> str:
    """Arbitrary text, quoted and escaped, None as NULL.

    The common case, no None, escapes the whole column at once: elements are joined with NUL,
    which validated text never contains (PostgreSQL text cannot hold it), and the NULs become
    the '","' separators afterwards. Should a NUL ever get this far, the count below no longer
    matches and the element-wise encoder keeps it inside its element, where PostgreSQL refuses
    it rather than splitting the value in two.
    """
    if not values:
        return "{}"
    if None not in values:
        joined = "\x00".join(values)
        if joined.count("\x00") == len(values) - 1:
            if "\\" in joined or '"' in joined:
                joined = joined.replace("\\", "\\\\").replace('"', '\\"')
            return '{"' + joined.replace("\x00", '","') + '"}'
    elif values.count(None) == len(values):
        return "{" + ",".join(["NULL"] * len(values)) + "}"
    return pg_array(values)


# --- outcomes ------------------------------------------------------------------------------

_JSON_STRING = json.JSONEncoder(ensure_ascii=False).encode


def _render_raw(index: int, seq: Optional[int], outcome: str, reason: Optional[str],
                detail: Optional[str]) -> str:
    head = '{"index":%d,"seq":%s,"outcome":"%s"' % (index, "null" if seq is None else seq, outcome)
    if reason:
        return head + ',"reason":%s,"detail":%s}' % (_JSON_STRING(reason), _JSON_STRING(detail))
    return head + "}"


def _render_measurement(index: int, event_id: Optional[str], revision: Optional[int],
                        outcome: str, reason: Optional[str], detail: Optional[str]) -> str:
    # event_id is None or 64 lowercase hex digits (validated), so it needs no escaping.
    head = '{"index":%d,"event_id":%s,"revision":%s,"outcome":"%s"' % (
        index, "null" if event_id is None else '"' + event_id + '"',
        "null" if revision is None else revision, outcome)
    if reason:
        return head + ',"reason":%s,"detail":%s}' % (_JSON_STRING(reason), _JSON_STRING(detail))
    return head + "}"


class Outcomes:
    """One outcome per record, in request order, rendered straight to the response JSON.

    Why not dicts + json.dumps: two dicts per event and their encoding were ~10% of the
    server's CPU per batch. `as_dicts()` gives the same data as plain values (tests, tools).
    """

    __slots__ = ("raw", "measurements", "protocol_version")

    def __init__(self, raw: list[str], measurements: list[str],
                 protocol_version: str = PROTOCOL_VERSION):
        self.raw = raw
        self.measurements = measurements
        self.protocol_version = protocol_version  # the request's: "1" or "2", no escaping needed

    def response_json(self) -> bytes:
        return ('{"protocol_version":"%s","raw_events":[%s],"measurements":[%s]}' % (
            self.protocol_version, ",".join(self.raw), ",".join(self.measurements))
                ).encode("utf-8")

    def as_dicts(self) -> dict:
        return {"raw_events": [json.loads(o) for o in self.raw],
                "measurements": [json.loads(o) for o in self.measurements]}


def _ms(delta: dt.timedelta) -> int:
    return int(delta / dt.timedelta(milliseconds=1))


def store_batch(engine: Engine, batch: Batch, gateway_pk: int) -> Outcomes:
    """Commit the batch's valid records in one transaction; return per-record outcomes."""
    partitions.ensure_for_batch(engine, [m.timestamp for m in batch.measurements],
                                [r.received_at for r in batch.raw_events])
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        conn = engine.raw_connection()
        try:
            try:
                result = _store(conn, batch, gateway_pk)
                conn.commit()
                return result
            except psycopg2.Error as exc:
                conn.rollback()
                if exc.pgcode in _RETRY_CODES and attempt < _MAX_ATTEMPTS:
                    log.warning("ingest retry %d after %s", attempt, exc.pgcode)
                    time.sleep(0.01 * attempt)
                    continue
                if not caused_by_content(exc):
                    raise
                log.error("the batch's statements failed (%s %s); finding the records that "
                          "cause it", exc.pgcode, str(exc).strip()[:200])
                batch = _without_unstorable(conn, batch, gateway_pk)
                result = _store(conn, batch, gateway_pk)
                conn.commit()
                return result
        finally:
            conn.close()
    raise AssertionError("unreachable")


# --- records the database refuses ------------------------------------------------------------
# Validation lets through only what the tables can hold, so this should never run. Should one
# record still make a statement fail (a check the validation lacks, a trigger, an extension),
# that failure says so in its SQLSTATE class; then the records that fail alone are found by
# halving, each probe under a savepoint that is rolled back, and rejected as NOT_STORABLE with
# the database's message; the rest of the batch is stored as usual. Without it such a record
# answered 500 for its batch on every retry. Outages (connection, resources, serialization)
# still fail the request: the agent retries those.
NOT_STORABLE = "not_storable"
_CONTENT_CLASSES = ("22", "23", "54", "P0", "XX")  # data, integrity, program limit, raised, internal


def caused_by_content(exc: psycopg2.Error) -> bool:
    return (exc.pgcode or "")[:2] in _CONTENT_CLASSES


def _without_unstorable(conn, batch: Batch, gateway_pk: int) -> Batch:
    """The batch minus the records that fail on their own (added to its rejections)."""
    with conn.cursor() as cur:
        bad_raw = _failing(cur, batch.raw_events,
                           lambda rows: _insert_raw(cur, dataclasses.replace(
                               batch, raw_events=rows, measurements=[]), gateway_pk))
        bad_m = _failing(cur, batch.measurements,
                         lambda rows: _upsert_measurements(cur, dataclasses.replace(
                             batch, raw_events=[], measurements=rows), gateway_pk))
    conn.rollback()  # nothing of the probes stays
    out = dataclasses.replace(
        batch, raw_events=[r for r in batch.raw_events if r.index not in bad_raw],
        measurements=[m for m in batch.measurements if m.index not in bad_m],
        rejected_raw=list(batch.rejected_raw), rejected_measurements=list(batch.rejected_measurements))
    for r in batch.raw_events:
        if r.index in bad_raw:
            out.rejected_raw.append((r.index, r.seq, NOT_STORABLE, bad_raw[r.index]))
    for m in batch.measurements:
        if m.index in bad_m:
            out.rejected_measurements.append((m.index, m.event_id, m.revision, NOT_STORABLE,
                                              bad_m[m.index]))
    return out


def _failing(cur, records: list, write) -> dict[int, str]:
    """Index -> the database's message, for each record whose write fails on its own."""
    failing: dict[int, str] = {}
    pending = [records] if records else []
    while pending:
        rows = pending.pop()
        cur.execute("SAVEPOINT isolate")
        try:
            write(rows)
            error = None
        except psycopg2.Error as exc:
            if not caused_by_content(exc):
                raise
            error = f"the database refused this record: {str(exc).strip().splitlines()[0][:300]}"
        cur.execute("ROLLBACK TO SAVEPOINT isolate")
        if error is None:
            continue
        if len(rows) == 1:
            failing[rows[0].index] = error
        else:
            pending += [rows[:len(rows) // 2], rows[len(rows) // 2:]]
    return failing


def _insert_raw(cur, batch: Batch, gateway_pk: int) -> list[str]:
    """Insert the batch's raw events; the rendered outcome of each valid one, by request index."""
    raws = batch.raw_events
    # The first occurrence of a seq in the batch is the one inserted; later ones are duplicates.
    first: dict[int, RawRecord] = {}
    for r in raws:
        first.setdefault(r.seq, r)
    # In seq order (the lock order), a few MiB of payload per statement: the statement's text
    # holds the payloads two or three times over while it is built, so one statement for a
    # batch of large payloads cost several times the batch in memory.
    rows = sorted(first.values(), key=lambda r: r.seq)
    stored: set[int] = set()
    for chunk in _chunks_of_payload(rows, RAW_CHUNK_BYTES):
        stored.update(_insert_raw_rows(cur, batch, gateway_pk, chunk))
    return [_render_raw(r.index, r.seq,
                        "stored" if r.seq in stored and first[r.seq] is r else "duplicate",
                        None, None)
            for r in raws]


RAW_CHUNK_BYTES = 1024 * 1024


def _chunks_of_payload(rows: list[RawRecord], limit: int):
    chunk: list[RawRecord] = []
    size = 0
    for r in rows:
        if chunk and size + len(r.payload_base64) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(r)
        size += len(r.payload_base64)
    if chunk:
        yield chunk


def _insert_raw_rows(cur, batch: Batch, gateway_pk: int, rows: list[RawRecord]) -> set[int]:
    """Insert these raw events (in seq order); the seqs that were new."""
    cur.execute(_INSERT_RAW, {
        "gw": gateway_pk, "buffer_id": batch.buffer_id,
        "seq": _array_of_ints([r.seq for r in rows]),
        "topic": _array_of_texts([r.topic for r in rows]),
        "payload": _array_of_texts([r.payload_base64 for r in rows]),  # "" is a payload
        "is_json": _array_of_bools([r.payload_is_json for r in rows]),
        "qos": _array_of_ints([r.qos for r in rows]),
        "retained": _array_of_bools([r.retained for r in rows]),
        "dup": _array_of_bools([r.dup for r in rows]),
        "received_at": _array_of_tokens([r.received_at for r in rows]),
        "decode_error": _array_of_texts([r.decode_error for r in rows]),
    })
    return {row[0] for row in cur.fetchall()}


def _upsert_measurements(cur, batch: Batch, gateway_pk: int) -> list[str]:
    """Upsert the batch's measurements; the rendered outcome of each valid one."""
    ms = batch.measurements
    # Per event_id the highest revision in the batch (the first of equals) is the candidate.
    best: dict[str, MeasurementRecord] = {}
    for m in ms:
        held = best.get(m.event_id)
        if held is None or m.revision > held.revision:
            best[m.event_id] = m
    rows = list(best.values())  # the statement sorts them into lock order
    cur.execute(_UPSERT_MEASUREMENTS, {
        "gw": gateway_pk, "event_id": _array_of_tokens([m.event_id for m in rows]),
        "device_id": _array_of_texts([m.device_id for m in rows]),
        "metric_type": _array_of_tokens([m.metric_type for m in rows]),
        "ts": _array_of_tokens([m.timestamp for m in rows]),
        "value": _array_of_tokens([m.value_text for m in rows]),
        "unit": _array_of_tokens([m.unit for m in rows]),
        "delta": _array_of_tokens([m.delta_text for m in rows]),
        "flags": _array_of_texts([",".join(m.flags) for m in rows]),
        "revision": _array_of_ints([m.revision for m in rows]),
        "raw_buffer_id": _array_of_tokens([m.raw_buffer_id for m in rows]),
        "raw_seq": _array_of_ints([m.raw_seq for m in rows]),
        "delta_from": _array_of_tokens([m.delta_from for m in rows]),
    })
    written = {row[0] for row in cur.fetchall()}
    existing: dict[str, tuple] = {}
    if len(written) < len(best):
        unwritten = [m for e, m in best.items() if e not in written]
        cur.execute(_EXISTING, {"ids": _array_of_tokens([m.event_id for m in unwritten]),
                                "ts": _array_of_tokens([m.timestamp for m in unwritten])})
        existing = {row[0]: row[1:] for row in cur.fetchall()}
    out = []
    for m in ms:
        eid = m.event_id
        if eid in written and best[eid] is m:
            outcome = "stored"
        else:
            held = existing.get(eid)
            held_revision = best[eid].revision if held is None else held[0]
            outcome = "superseded" if held_revision > m.revision else "duplicate"
            if (outcome == "duplicate" and held is not None and best[eid] is m
                    and (_text_or_none(held[1]) != m.delta_text or list(held[2]) != m.flags)):
                log.warning("gateway %s sent event_id %s revision %d with content that "
                            "differs from the stored one (agent bug); kept the first",
                            batch.gateway_id, eid, m.revision)
        out.append(_render_measurement(m.index, eid, m.revision, outcome, None, None))
    return out


def _text_or_none(value: Any) -> Optional[str]:
    return None if value is None else decimal_text(value)


def _store(conn, batch: Batch, gateway_pk: int) -> Outcomes:
    now = dt.datetime.now(dt.timezone.utc)
    raw_out: list[Optional[str]] = [None] * batch.raw_count
    m_out: list[Optional[str]] = [None] * batch.measurement_count
    for index, seq, reason, detail in batch.rejected_raw:
        raw_out[index] = _render_raw(index, seq, "rejected", reason, detail)
    for index, eid, rev, reason, detail in batch.rejected_measurements:
        m_out[index] = _render_measurement(index, eid, rev, "rejected", reason, detail)

    with conn.cursor() as cur:
        if batch.raw_events:
            for r, rendered in zip(batch.raw_events, _insert_raw(cur, batch, gateway_pk)):
                raw_out[r.index] = rendered
            operator_events.apply(cur, batch.gateway_id, gateway_pk, batch.buffer_id,
                                  batch.raw_events)
        if batch.measurements:
            for m, rendered in zip(batch.measurements,
                                   _upsert_measurements(cur, batch, gateway_pk)):
                m_out[m.index] = rendered

        backlog = batch.backlog
        rejections = ([reason for _, _, reason, _ in batch.rejected_raw]
                      + [reason for _, _, _, reason, _ in batch.rejected_measurements])
        cur.execute(_GATEWAY_STATUS, {
            "gw": gateway_pk, "now": now, "sent_at": batch.sent_at,
            "skew": _ms(batch.sent_at - now), "clock_step": _CLOCK_STEP,
            "backlog_records": backlog.records if backlog else None,
            "backlog_oldest": backlog.oldest_received_at if backlog else None,
            "rejected": len(rejections), "last_reason": rejections[-1] if rejections else None,
        })
    return Outcomes(raw_out, m_out,  # type: ignore[arg-type]  # every index filled above
                    batch.protocol_version)
