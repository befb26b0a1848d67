"""docs/PROTOCOL.md stays true: its example request gives its example response, the vectors'
invalid readings are rejected when sent as records, and the documented reasons and limits exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqlalchemy as sa

from central import accounts
from central.canonical import event_id
from central.settings import Settings
from central.tests.helpers import batch, headers, measurement, raw_event

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs/PROTOCOL.md").read_text(encoding="utf-8")
VECTORS = json.loads((REPO / "tests/vectors/event_id.json").read_text(encoding="utf-8"))


def _block(marker: str) -> str:
    after = DOC.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```json\n", 1)[1].split("```", 1)[0]


def test_example_request_gives_example_response(client, engine):
    token = accounts.create(engine, "gateway", "gw-berlin-01")
    request_text = _block("example-request")
    earlier = batch(gateway="gw-berlin-01", raws=[raw_event(40)],
                    ms=[measurement(device="m1", ts="2024-01-01T09:00:00.000Z", value="1.5",
                                    flags=["first_reading"], seq=40)])
    from central.tests.helpers import body
    assert client.post("/api/v1/ingest", content=body(earlier), headers=headers(token)).status_code == 200
    r = client.post("/api/v1/ingest", content=request_text.encode(), headers=headers(token))
    assert r.status_code == 200
    assert r.json() == json.loads(_block("example-response"))
    with engine.connect() as conn:
        delta = conn.execute(sa.text("SELECT delta::text FROM normalized_measurements "
                                     "WHERE \"timestamp\" = '2024-01-01T09:15:00Z'")).scalar()
    assert delta == "0.25"


def test_documented_event_ids_are_right():
    for device, ts, value, eid in [("m1", "2024-01-01T09:15:00.000Z", "1.75",
                                    "2d2efb36671167cd7ef02bc78b1f10a728a8fdaf632ae4e5f67aecd6f2353856")]:
        assert event_id(device, ts, "energy", value) == eid


def test_every_invalid_vector_is_rejected_as_a_record(client, engine):
    """The central never canonicalizes, but an agent that forwarded an invalid reading as sent
    must get it rejected, never stored."""
    token = accounts.create(engine, "gateway", "gw1")
    parts = []
    for entry in VECTORS["invalid"]:
        i = entry["input"]
        value = i["value"]
        as_number = re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", value)
        rec = {"event_id": event_id(i["device_id"], i["timestamp"], i["metric_type"], value),
               "device_id": i["device_id"], "metric_type": i["metric_type"],
               "timestamp": i["timestamp"], "value": "@@" + value + "@@" if as_number else value,
               "unit": i["unit"], "delta": None, "flags": [], "revision": 1,
               "raw": {"buffer_id": "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90", "seq": 1}}
        parts.append(rec)
    text = json.dumps(batch(ms=parts)).replace('"@@', "").replace('@@"', "")
    r = client.post("/api/v1/ingest", content=text.encode(), headers=headers(token))
    assert r.status_code == 200, r.text[:300]
    out = r.json()["measurements"]
    assert len(out) == len(VECTORS["invalid"]) >= 20
    assert {o["outcome"] for o in out} == {"rejected"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM normalized_measurements")).scalar() == 0


def test_documented_reasons_match_the_code():
    section = DOC.split("#### Rejection reasons", 1)[1].split("### ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", section.split("\n|---", 1)[1]))
    code = ""
    for name in ("ingest_validate.py", "canonical.py"):
        code += (REPO / "central" / name).read_text()
    produced = set(re.findall(r'RecordError\("([a-z_]+)"', code))
    produced |= {f"non_canonical_{f}" for f in ("timestamp", "value", "delta", "received_at")}
    produced |= {f"{f}_out_of_range" for f in ("value", "delta")}
    assert produced <= documented, produced - documented


def test_documented_limits_match_settings():
    s = Settings(database_url="postgresql://x@y/z")
    assert s.max_body_bytes == 16 * 2**20 and "| 16 MiB |" in DOC
    assert s.max_decompressed_bytes == 16 * 2**20 and "| 16 MiB (the agent's largest" in DOC
    assert s.max_records == 10_000 and "| 10,000 |" in DOC
    assert s.max_payload_bytes == 256 * 1024 and "| 256 KiB |" in DOC
