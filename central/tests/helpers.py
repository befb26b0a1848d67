"""Builders for ingest batches and database snapshots shared by the tests."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
from typing import Any, Iterable, Optional

import httpx
import sqlalchemy as sa

from central.canonical import event_id
from central.jsonout import RawNumber, dumps

BUFFER = "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90"
SENT_AT = "2024-01-01T09:00:05.123Z"


def raw_event(seq: Any, payload: Any = b'{"v":1}', **over: Any) -> dict:
    """payload as bytes (encoded here) or str (sent as is, for malformed base64 cases)."""
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    rec = {"seq": seq, "topic": f"site/meter/{seq}", "payload": text,
           "qos": 1, "retained": False, "dup": False, "received_at": "2024-01-01T09:00:00.000Z",
           "decode_error": None}
    rec.update(over)
    return rec


def measurement(device: str = "m1", ts: str = "2024-01-01T09:00:00.000Z", value: str = "1.5",
                metric: str = "energy", revision: int = 1, flags: Iterable[str] = (),
                delta: Optional[str] = None, seq: int = 1, buffer_id: str = BUFFER,
                **over: Any) -> dict:
    rec = {"event_id": event_id(device, ts, metric, value), "device_id": device,
           "metric_type": metric, "timestamp": ts, "value": RawNumber(value),
           "unit": "kWh" if metric == "energy" else "kW",
           "delta": None if delta is None else RawNumber(delta), "flags": list(flags),
           "revision": revision, "raw": {"buffer_id": buffer_id, "seq": seq}}
    rec.update(over)
    return rec


def batch(gateway: str = "gw1", raws: Iterable[dict] = (), ms: Iterable[dict] = (),
          buffer_id: str = BUFFER, **over: Any) -> dict:
    env = {"protocol_version": "1", "gateway_id": gateway, "buffer_id": buffer_id,
           "sent_at": SENT_AT, "raw_events": list(raws), "measurements": list(ms)}
    env.update(over)
    return env


def events(n: int, start: int = 1, device_prefix: str = "dev", buffer_id: str = BUFFER
           ) -> tuple[list[dict], list[dict]]:
    """n raw events + n measurements (one per raw), deterministic."""
    raws, ms = [], []
    for i in range(start, start + n):
        raws.append(raw_event(i, json.dumps({"device": f"{device_prefix}{i % 7}", "i": i}).encode()))
        minute, second = divmod(i, 60)
        ts = f"2024-01-01T{(minute // 60) % 24:02d}:{minute % 60:02d}:{second:02d}.000Z"
        ms.append(measurement(device=f"{device_prefix}{i % 7}", ts=ts, value=f"{i}.25", seq=i,
                              buffer_id=buffer_id))
    return raws, ms


def body(env: Any) -> bytes:
    """Exact JSON (numbers keep their text)."""
    return dumps(env).encode("utf-8")


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def headers(token: str, gzip_body: bool = False) -> dict:
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if gzip_body:
        h["Content-Encoding"] = "gzip"
    return h


def snapshot(engine) -> dict:
    """Every stored row (minus ingestion times) of the data tables and gateway status."""
    with engine.connect() as conn:
        raw = conn.execute(sa.text(
            "SELECT g.name, r.buffer_id::text, r.seq, r.topic, r.payload, r.payload_json::text, "
            "r.qos, r.retained, r.dup, r.received_at, r.decode_error FROM raw_events r "
            "JOIN gateways g ON g.id = r.gateway_id ORDER BY 1, 2, 3")).all()
        ms = conn.execute(sa.text(
            "SELECT m.event_id, g.name, m.device_id, m.metric_type, m.timestamp, m.value::text, "
            "m.unit, m.delta::text, m.flags, m.revision, m.raw_buffer_id::text, m.raw_seq "
            "FROM normalized_measurements m JOIN gateways g ON g.id = m.gateway_id "
            "ORDER BY 1")).all()
        gws = conn.execute(sa.text(
            "SELECT name, last_contact_at, last_sent_at, backlog_records FROM gateways "
            "ORDER BY name")).all()
    return {"raw": [tuple(r) for r in raw], "measurements": [tuple(r) for r in ms],
            "gateways": [tuple(r) for r in gws]}


def recent_pair(engine) -> tuple[list, list]:
    """Each series' stored 11 latest timestamps (series_latest.recent, migration 0010) and the
    same taken from the rows: equal when the triggers kept them in step."""
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT device_id, metric_type, recent FROM series_latest ORDER BY 1, 2")).all()
        rows = conn.execute(sa.text(
            "SELECT s.device_id, s.metric_type, ARRAY(SELECT m.\"timestamp\" "
            "FROM normalized_measurements m WHERE m.device_id = s.device_id "
            "AND m.metric_type = s.metric_type ORDER BY m.\"timestamp\" DESC LIMIT 11) "
            "FROM (SELECT DISTINCT device_id, metric_type FROM normalized_measurements) s "
            "ORDER BY 1, 2")).all()
    return [tuple(r) for r in stored], [tuple(r) for r in rows]


def data_rows(engine) -> dict:
    snap = snapshot(engine)
    return {"raw": snap["raw"], "measurements": snap["measurements"]}


def new_buffer() -> str:
    return str(uuid.uuid4())


def run_parallel(fns):
    """Start all functions at the same moment (barrier); return their results in order."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)
    errors: list = []

    def worker(i, fn):
        try:
            barrier.wait(10)
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def poster(url, token, data, gzip_body=False):
    """A function that POSTs `data` to the ingest endpoint (for run_parallel)."""
    def go():
        with httpx.Client(timeout=60) as c:
            return c.post(url + "/api/v1/ingest", content=gzip.compress(data) if gzip_body else data,
                          headers=headers(token, gzip_body))
    return go
