"""Read side: gateways, devices, measurements, one raw event (viewer tokens only) and /healthz.

Responses are rendered with central.jsonout so value/delta stay exact JSON numbers in canonical
text, the same spelling the gateways uploaded.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any, Optional

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from central.auth import require, require_in
from central.canonical import FLAGS, decimal_text, format_timestamp
from central.errors import ApiError
from central.jsonout import RawJson, RawNumber, dumps, json_string
from central.read_guard import cursor_time, decode_cursor, encode_cursor

router = APIRouter()
UTC = dt.timezone.utc
# A series is overdue ("gone silent") after this many of its usual intervals without a reading.
SILENT_AFTER_INTERVALS = 3


def _now() -> dt.datetime:
    """The clock that silent_seconds, overdue and seconds_since_contact are measured against
    (a seam: the byte-for-byte response test freezes it)."""
    return dt.datetime.now(UTC)


def _viewer(request: Request, authorization: Optional[str]) -> None:
    require(request.app.state.engine, authorization, "viewer")


def _viewer_in(conn, authorization: Optional[str]) -> None:
    """_viewer on the request's own connection (one checkout, one ping, for the fast reads)."""
    require_in(conn, authorization, "viewer")


def _json(value: Any) -> Response:
    return Response(dumps(value).encode("utf-8"), media_type="application/json")


def _ts(value: Optional[dt.datetime]) -> Optional[str]:
    return None if value is None else format_timestamp(value)


def _num(value) -> Optional[RawNumber]:
    return None if value is None else RawNumber(decimal_text(value))


def _seconds(delta: Optional[dt.timedelta]) -> Optional[float]:
    return None if delta is None else round(delta.total_seconds(), 3)


@router.get("/healthz", tags=["health"], summary="Liveness and database reachability")
def healthz(request: Request) -> Response:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not healthy", details stay in the log
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/api/v1/gateways", tags=["read"], summary="Gateways: last contact, backlog, clock skew")
def list_gateways(request: Request, authorization: Optional[str] = Header(None)) -> Response:
    with request.app.state.engine.connect() as conn:
        _viewer_in(conn, authorization)
        now = _now()
        rows = conn.execute(sa.text(
            "SELECT name, created_at, revoked_at, last_contact_at, last_sent_at, clock_skew_ms, "
            "backlog_records, backlog_oldest_received_at, rejected_records, last_rejected_at, "
            "last_rejection_reason FROM gateways ORDER BY name")).mappings().all()
    items = []
    for r in rows:
        lag = None
        if r["backlog_oldest_received_at"] is not None and r["last_sent_at"] is not None:
            lag = r["last_sent_at"] - r["backlog_oldest_received_at"]
        items.append({
            "gateway_id": r["name"],
            "created_at": _ts(r["created_at"]),
            "revoked": r["revoked_at"] is not None,
            "last_contact_at": _ts(r["last_contact_at"]),
            "seconds_since_contact": _seconds(now - r["last_contact_at"]) if r["last_contact_at"] else None,
            "last_sent_at": _ts(r["last_sent_at"]),
            "clock_skew_seconds": None if r["clock_skew_ms"] is None else r["clock_skew_ms"] / 1000,
            "backlog_records": r["backlog_records"],
            "backlog_oldest_received_at": _ts(r["backlog_oldest_received_at"]),
            "backlog_lag_seconds": _seconds(lag),
            "rejected_records": r["rejected_records"],
            "last_rejected_at": _ts(r["last_rejected_at"]),
            "last_rejection_reason": r["last_rejection_reason"],
        })
    return _json({"items": items})


def _parse_time(value: Optional[str], name: str) -> Optional[dt.datetime]:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_query", f"{name} must be an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ApiError(422, "invalid_query", f"{name} needs an offset or Z")
    return parsed


# One device of the listing, keys in the order of the response (test_read_bytes holds it to the
# bytes the generic encoder wrote): strings through the encoder's own escaping, the value as
# canonical decimal text, the seconds as the floats json writes (repr).
_DEVICE_JSON = ('{{"device_id":{},"metric_type":{},"last_timestamp":"{}","last_value":{},'
                '"unit":{},"last_ingested_at":"{}","gateway_id":{},"silent_seconds":{},'
                '"usual_interval_seconds":{},"overdue":{}}}').format


@router.get("/api/v1/devices", tags=["read"], summary="Devices: last reading, silent for how long")
def list_devices(request: Request, authorization: Optional[str] = Header(None),
                 limit: int = Query(500, ge=1, le=5000),
                 cursor: Optional[str] = Query(None)) -> Response:
    params: dict[str, Any] = {"limit": limit}
    where = ""
    # Each series' latest reading comes from series_latest (migration 0009, one row per series,
    # kept by the database at ingest), not from a scan of every reading, and with it the
    # timestamps of its last 11 readings (migration 0010); with read_rollups off, both from the
    # readings themselves (the same answer, for comparison). The usual interval is the median
    # gap between those 11 timestamps (10 gaps). From the readings, each series' 11 are found
    # through the (device_id, metric_type, timestamp) index: first among the 32 days before
    # the latest reading (one or two monthly partitions, pruned while the query runs), and only
    # when those hold fewer than 11, among all of them (the same 11 timestamps either way).
    if request.app.state.settings.read_rollups:
        latest = """
              SELECT s.device_id, s.metric_type, s."timestamp", s.value, s.unit, s.ingested_at,
                     g.name AS gateway, s.recent AS t
                FROM series_latest s JOIN gateways g ON g.id = s.gateway_id
               {where}
               ORDER BY s.device_id, s.metric_type
               LIMIT :limit"""
        where_columns = "(s.device_id, s.metric_type)"
    else:
        latest = """
              SELECT last.*, recent.t FROM (
                SELECT DISTINCT ON (device_id, metric_type)
                       device_id, metric_type, "timestamp", value, unit, ingested_at,
                       g.name AS gateway
                  FROM normalized_measurements m JOIN gateways g ON g.id = m.gateway_id
                 {where}
                 ORDER BY device_id, metric_type, "timestamp" DESC
                 LIMIT :limit) last
              LEFT JOIN LATERAL (
                SELECT CASE WHEN cardinality(near.t) = 11 THEN near.t ELSE ARRAY(
                         SELECT n."timestamp" FROM normalized_measurements n
                          WHERE n.device_id = last.device_id
                            AND n.metric_type = last.metric_type
                            AND n."timestamp" <= last."timestamp"
                          ORDER BY n."timestamp" DESC LIMIT 11) END AS t
                  FROM (SELECT ARRAY(
                         SELECT n."timestamp" FROM normalized_measurements n
                          WHERE n.device_id = last.device_id
                            AND n.metric_type = last.metric_type
                            AND n."timestamp" <= last."timestamp"
                            AND n."timestamp" > last."timestamp" - interval '32 days'
                          ORDER BY n."timestamp" DESC LIMIT 11) AS t
                        OFFSET 0) near) recent ON true  -- OFFSET 0: near.t computed once
            """
        where_columns = "(device_id, metric_type)"
    with request.app.state.engine.connect() as conn:
        _viewer_in(conn, authorization)
        if cursor:
            params["d"], params["m"] = decode_cursor(cursor, 2)
            where = f"WHERE {where_columns} > (:d, :m)"
        rows = conn.execute(sa.text(f"""
            WITH latest AS ({latest.format(where=where)})
            SELECT latest.device_id, latest.metric_type, latest."timestamp",
                   trim_scale(latest.value)::text, latest.unit, latest.ingested_at,
                   latest.gateway, usual.seconds
              FROM latest
              LEFT JOIN LATERAL (
                SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS seconds
                  FROM (SELECT extract(epoch FROM t - lag(t) OVER (ORDER BY t)) AS gap
                          FROM unnest(latest.t) AS t) gaps
                 WHERE gap > 0) usual ON true
             ORDER BY latest.device_id, latest.metric_type"""), params).all()
    now = _now()
    items = []
    for device_id, metric_type, timestamp, value, unit, ingested_at, gateway, usual in rows:
        silent = now - timestamp
        items.append(_DEVICE_JSON(
            json_string(device_id), json_string(metric_type), format_timestamp(timestamp), value,
            json_string(unit), format_timestamp(ingested_at), json_string(gateway),
            repr(_seconds(silent)), "null" if usual is None else repr(round(float(usual), 3)),
            "true" if usual is not None and silent.total_seconds()
            > SILENT_AFTER_INTERVALS * float(usual) else "false"))
    next_cursor = (encode_cursor(rows[-1][0], rows[-1][1]) if len(rows) == limit else None)
    return _json({"items": RawJson("[" + ",".join(items) + "]"), "next_cursor": next_cursor})


@router.get("/api/v1/measurements", tags=["read"], summary="Measurements, filtered and paged")
def list_measurements(request: Request, authorization: Optional[str] = Header(None),
                      device_id: Optional[str] = Query(None),
                      metric_type: Optional[str] = Query(None),
                      from_: Optional[str] = Query(None, alias="from",
                                                   description="inclusive, RFC 3339"),
                      to: Optional[str] = Query(None, description="exclusive, RFC 3339"),
                      flag: Optional[str] = Query(None, description="only measurements with this flag"),
                      flagged: bool = Query(False, description="only measurements with any flag"),
                      gateway_id: Optional[str] = Query(None,
                                                        description="the gateway that delivered it first"),
                      limit: int = Query(1000, ge=1, le=10000),
                      cursor: Optional[str] = Query(None)) -> Response:
    _viewer(request, authorization)
    clauses, params = [], {"limit": limit}
    if device_id is not None:
        clauses.append("m.device_id = :device_id")
        params["device_id"] = device_id
    if metric_type is not None:
        clauses.append("m.metric_type = :metric_type")
        params["metric_type"] = metric_type
    start, end = _parse_time(from_, "from"), _parse_time(to, "to")
    if start is not None:
        clauses.append('m."timestamp" >= :start')
        params["start"] = start
    if end is not None:
        clauses.append('m."timestamp" < :end')
        params["end"] = end
    if gateway_id is not None:
        clauses.append("g.name = :gateway_id")
        params["gateway_id"] = gateway_id
    if flagged:
        clauses.append("cardinality(m.flags) > 0")
    if flag is not None:
        if flag not in FLAGS:
            raise ApiError(422, "invalid_query", f"unknown flag {flag[:64]!r}")
        clauses.append("m.flags @> ARRAY[CAST(:flag AS text)]")
        params["flag"] = flag
    if cursor:
        ts_text, eid = decode_cursor(cursor, 2)
        clauses.append('(m."timestamp", m.event_id) > (:cts, :ceid)')
        params["cts"], params["ceid"] = cursor_time(ts_text), eid
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(sa.text(f"""
            SELECT m.event_id, m.device_id, m.metric_type, m."timestamp", m.value, m.unit, m.delta,
                   m.flags, m.revision, g.name AS gateway, m.raw_buffer_id, m.raw_seq,
                   m.ingested_at, m.updated_at, m.delta_from
              FROM normalized_measurements m JOIN gateways g ON g.id = m.gateway_id
             {where}
             ORDER BY m."timestamp", m.event_id
             LIMIT :limit"""), params).mappings().all()
    items = [{
        "event_id": r["event_id"], "device_id": r["device_id"], "metric_type": r["metric_type"],
        "timestamp": _ts(r["timestamp"]), "value": _num(r["value"]), "unit": r["unit"],
        "delta": _num(r["delta"]), "delta_from": _ts(r["delta_from"]), "flags": list(r["flags"]),
        "revision": r["revision"],
        "gateway_id": r["gateway"], "raw": {"buffer_id": str(r["raw_buffer_id"]), "seq": r["raw_seq"]},
        "ingested_at": _ts(r["ingested_at"]), "updated_at": _ts(r["updated_at"]),
    } for r in rows]
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(last["timestamp"].isoformat(), last["event_id"])
    return _json({"items": items, "next_cursor": next_cursor})


@router.get("/api/v1/raw_event", tags=["read"],
            summary="One raw event by its identity (gateway_id, buffer_id, seq)")
def get_raw_event(request: Request, authorization: Optional[str] = Header(None),
                  gateway_id: str = Query(..., description="the gateway that uploaded it"),
                  buffer_id: str = Query(..., description="the gateway buffer's UUID"),
                  seq: int = Query(..., ge=1, le=2**63 - 1)) -> Response:
    """The audit trail behind a measurement: a measurement's `gateway_id` and `raw`
    (`buffer_id`, `seq`) name the raw MQTT message it was decoded from. The payload comes back
    exactly as received (base64), and as text when it is UTF-8."""
    _viewer(request, authorization)
    try:
        buffer = str(uuid.UUID(buffer_id))
    except ValueError:
        raise ApiError(422, "invalid_query", "buffer_id must be a UUID") from None
    # raw_event_ids (migration 0008) says which month's partition holds the identity.
    with request.app.state.engine.connect() as conn:
        row = conn.execute(sa.text("""
            SELECT g.name AS gateway, r.buffer_id::text AS buffer_id, r.seq, r.topic, r.payload,
                   r.payload_json IS NOT NULL AS is_json, r.qos, r.retained, r.dup,
                   r.received_at, r.decode_error, r.ingested_at
              FROM raw_event_ids k JOIN gateways g ON g.id = k.gateway_id
              JOIN raw_events r ON r.gateway_id = k.gateway_id AND r.buffer_id = k.buffer_id
                               AND r.seq = k.seq AND r.received_at = k.received_at
             WHERE g.name = :gateway AND k.buffer_id = CAST(:buffer AS uuid) AND k.seq = :seq"""),
            {"gateway": gateway_id, "buffer": buffer, "seq": seq}).mappings().first()
    if row is None:
        raise ApiError(404, "not_found",
                       f"no raw event ({gateway_id[:128]!r}, {buffer}, {seq}) was uploaded: the "
                       "gateway may not have sent it yet, or the central rejected it")
    payload = bytes(row["payload"])
    try:
        text: Optional[str] = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return _json({
        "gateway_id": row["gateway"], "buffer_id": row["buffer_id"], "seq": row["seq"],
        "topic": row["topic"], "payload_base64": base64.b64encode(payload).decode("ascii"),
        "payload_text": text, "payload_is_json": row["is_json"], "qos": row["qos"],
        "retained": row["retained"], "dup": row["dup"], "received_at": _ts(row["received_at"]),
        "decode_error": row["decode_error"], "ingested_at": _ts(row["ingested_at"]),
    })
