"""Storing a validated batch: bulk, idempotent, revision-ordered, all in one transaction.

Why it is shaped this way:
* One INSERT ... SELECT FROM unnest(arrays) per table, not one statement per row: a batch of
  1,000 events is two round trips, which is what makes >= 10k events/s possible.
* Raw events: ON CONFLICT DO NOTHING on (gateway, buffer_id, seq); RETURNING tells which rows are
  new ("stored"); the others were already there ("duplicate").
* Measurements: ON CONFLICT (event_id) DO UPDATE ... WHERE stored.revision < incoming.revision.
  PostgreSQL decides this per row under the row lock, so revision ordering holds however uploads
  interleave; a conflicting row is locked even when the WHERE is false, so the follow-up SELECT
  that tells "duplicate" from "superseded" sees the state our transaction will commit against.
  The first delivering gateway and raw reference are never overwritten: a reading heard
  through two gateways is one row, owned by whichever delivered it first.
* Rows are inserted in key order so concurrent batches with overlapping keys lock in the same
  order and cannot deadlock; a deadlock or serialization failure is retried anyway.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import psycopg2
import psycopg2.errorcodes
from sqlalchemy.engine import Engine

from central.ingest_validate import Batch, MeasurementRecord, RawRecord

log = logging.getLogger("central.ingest")

_RETRY_CODES = {psycopg2.errorcodes.DEADLOCK_DETECTED, psycopg2.errorcodes.SERIALIZATION_FAILURE}
_MAX_ATTEMPTS = 5

_INSERT_RAW = """
INSERT INTO raw_events (gateway_id, buffer_id, seq, topic, payload, payload_json, qos, retained,
                        dup, received_at, decode_error)
SELECT %(gw)s, %(buffer_id)s::uuid, u.seq, u.topic, decode(u.payload, 'hex'), u.pj::jsonb, u.qos,
       u.retained, u.dup, u.received_at, u.decode_error
  FROM unnest(%(seq)s::bigint[], %(topic)s::text[], %(payload)s::text[], %(pj)s::text[],
              %(qos)s::smallint[], %(retained)s::boolean[], %(dup)s::boolean[],
              %(received_at)s::timestamptz[], %(decode_error)s::text[])
       AS u(seq, topic, payload, pj, qos, retained, dup, received_at, decode_error)
 ORDER BY u.seq
ON CONFLICT (gateway_id, buffer_id, seq) DO NOTHING
RETURNING seq
"""

_UPSERT_MEASUREMENTS = """
INSERT INTO normalized_measurements AS m (event_id, gateway_id, device_id, metric_type,
       "timestamp", value, unit, delta, flags, revision, raw_buffer_id, raw_seq)
SELECT u.event_id, %(gw)s, u.device_id, u.metric_type, u.ts, u.value, u.unit, u.delta,
       string_to_array(u.flags, ','), u.revision, u.raw_buffer_id::uuid, u.raw_seq
  FROM unnest(%(event_id)s::text[], %(device_id)s::text[], %(metric_type)s::text[],
              %(ts)s::timestamptz[], %(value)s::numeric[], %(unit)s::text[], %(delta)s::numeric[],
              %(flags)s::text[], %(revision)s::integer[], %(raw_buffer_id)s::text[],
              %(raw_seq)s::bigint[])
       AS u(event_id, device_id, metric_type, ts, value, unit, delta, flags, revision,
            raw_buffer_id, raw_seq)
 ORDER BY u.event_id
ON CONFLICT (event_id) DO UPDATE
   SET delta = EXCLUDED.delta, flags = EXCLUDED.flags, revision = EXCLUDED.revision,
       updated_at = now()
 WHERE m.revision < EXCLUDED.revision
RETURNING event_id
"""

_EXISTING = """
SELECT event_id, revision, delta, flags FROM normalized_measurements
 WHERE event_id = ANY(%(ids)s::text[])
"""

_GATEWAY_STATUS = """
UPDATE gateways
   SET last_contact_at = %(now)s, last_sent_at = %(sent_at)s, clock_skew_ms = %(skew)s,
       backlog_records = %(backlog_records)s, backlog_oldest_received_at = %(backlog_oldest)s,
       rejected_records = rejected_records + %(rejected)s,
       last_rejected_at = CASE WHEN %(rejected)s > 0 THEN %(now)s ELSE last_rejected_at END,
       last_rejection_reason = COALESCE(%(last_reason)s, last_rejection_reason)
 WHERE id = %(gw)s
"""


def pg_array(values: list) -> str:
    """A PostgreSQL array literal ('{"a",NULL}') for one text parameter.

    Why: psycopg2 renders a Python list as ARRAY[e1, e2, ...], which the server must parse as
    thousands of expressions; one literal per column goes through array_in and is several times
    cheaper per batch. Elements are str/int/bool/Decimal/None; strings are quoted and escaped.
    """
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


def _ms(delta: dt.timedelta) -> int:
    return int(delta / dt.timedelta(milliseconds=1))


def _outcome_raw(index: int, seq: Any, outcome: str, reason: str | None = None,
                 detail: str | None = None) -> dict:
    out = {"index": index, "seq": seq, "outcome": outcome}
    if reason:
        out["reason"] = reason
        out["detail"] = detail
    return out


def _outcome_m(index: int, event_id: Any, revision: Any, outcome: str, reason: str | None = None,
               detail: str | None = None) -> dict:
    out = {"index": index, "event_id": event_id, "revision": revision, "outcome": outcome}
    if reason:
        out["reason"] = reason
        out["detail"] = detail
    return out


def store_batch(engine: Engine, batch: Batch, gateway_pk: int) -> dict:
    """Commit the batch's valid records in one transaction; return per-record outcomes."""
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
                raise
        finally:
            conn.close()
    raise AssertionError("unreachable")


def _store(conn, batch: Batch, gateway_pk: int) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    raw_out: list[dict | None] = [None] * batch.raw_count
    m_out: list[dict | None] = [None] * batch.measurement_count
    for index, seq, reason, detail in batch.rejected_raw:
        raw_out[index] = _outcome_raw(index, seq, "rejected", reason, detail)
    for index, eid, rev, reason, detail in batch.rejected_measurements:
        m_out[index] = _outcome_m(index, eid, rev, "rejected", reason, detail)

    with conn.cursor() as cur:
        # --- raw events: the first occurrence of a seq in the batch is the one inserted.
        first: dict[int, RawRecord] = {}
        for r in batch.raw_events:
            first.setdefault(r.seq, r)
        stored_seqs: set[int] = set()
        if first:
            rows = sorted(first.values(), key=lambda r: r.seq)
            cur.execute(_INSERT_RAW, {
                "gw": gateway_pk, "buffer_id": batch.buffer_id,
                "seq": pg_array([r.seq for r in rows]), "topic": pg_array([r.topic for r in rows]),
                "payload": pg_array([r.payload.hex() for r in rows]),
                "pj": pg_array([r.payload_json for r in rows]),
                "qos": pg_array([r.qos for r in rows]),
                "retained": pg_array([r.retained for r in rows]),
                "dup": pg_array([r.dup for r in rows]),
                "received_at": pg_array([r.received_at for r in rows]),
                "decode_error": pg_array([r.decode_error for r in rows]),
            })
            stored_seqs = {row[0] for row in cur.fetchall()}
        for r in batch.raw_events:
            outcome = "stored" if r.seq in stored_seqs and first[r.seq] is r else "duplicate"
            raw_out[r.index] = _outcome_raw(r.index, r.seq, outcome)

        # --- measurements: per event_id the highest revision in the batch is the candidate.
        best: dict[str, MeasurementRecord] = {}
        for m in batch.measurements:
            held = best.get(m.event_id)
            if held is None or m.revision > held.revision:
                best[m.event_id] = m
        written: set[str] = set()
        if best:
            rows_m = sorted(best.values(), key=lambda m: m.event_id)
            cur.execute(_UPSERT_MEASUREMENTS, {
                "gw": gateway_pk, "event_id": pg_array([m.event_id for m in rows_m]),
                "device_id": pg_array([m.device_id for m in rows_m]),
                "metric_type": pg_array([m.metric_type for m in rows_m]),
                "ts": pg_array([m.timestamp for m in rows_m]),
                "value": pg_array([m.value_text for m in rows_m]),
                "unit": pg_array([m.unit for m in rows_m]),
                "delta": pg_array([m.delta_text for m in rows_m]),
                "flags": pg_array([",".join(m.flags) for m in rows_m]),
                "revision": pg_array([m.revision for m in rows_m]),
                "raw_buffer_id": pg_array([m.raw_buffer_id for m in rows_m]),
                "raw_seq": pg_array([m.raw_seq for m in rows_m]),
            })
            written = {row[0] for row in cur.fetchall()}
        existing: dict[str, tuple] = {}
        unwritten = [eid for eid in best if eid not in written]
        if unwritten:
            cur.execute(_EXISTING, {"ids": pg_array(unwritten)})
            existing = {row[0]: row[1:] for row in cur.fetchall()}
        for m in batch.measurements:
            candidate = best[m.event_id]
            if m is candidate and m.event_id in written:
                outcome = "stored"
            else:
                held_rev, held_delta, held_flags = (
                    existing[m.event_id] if m.event_id in existing
                    else (candidate.revision, candidate.delta, candidate.flags))
                outcome = "superseded" if held_rev > m.revision else "duplicate"
                if (outcome == "duplicate" and m is candidate and m.event_id in existing
                        and (held_delta != m.delta or list(held_flags) != m.flags)):
                    log.warning("gateway %s sent event_id %s revision %d with content that "
                                "differs from the stored one (agent bug); kept the first",
                                batch.gateway_id, m.event_id, m.revision)
            m_out[m.index] = _outcome_m(m.index, m.event_id, m.revision, outcome)

        backlog = batch.backlog
        rejections = ([reason for _, _, reason, _ in batch.rejected_raw]
                      + [reason for _, _, _, reason, _ in batch.rejected_measurements])
        cur.execute(_GATEWAY_STATUS, {
            "gw": gateway_pk, "now": now, "sent_at": batch.sent_at,
            "skew": _ms(batch.sent_at - now),
            "backlog_records": backlog.records if backlog else None,
            "backlog_oldest": backlog.oldest_received_at if backlog else None,
            "rejected": len(rejections), "last_reason": rejections[-1] if rejections else None,
        })
    return {"raw_events": raw_out, "measurements": m_out}
