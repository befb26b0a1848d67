"""POST /api/v1/ingest through FastAPI's TestClient: outcomes, idempotency, revisions."""

from __future__ import annotations

import json
import random

import sqlalchemy as sa

from central.tests.helpers import (BUFFER, batch, body, events, gz, headers, measurement, new_buffer,
                                   raw_event, data_rows, snapshot)


def post(client, token, env, gzip_body=False):
    data = body(env)
    return client.post("/api/v1/ingest", content=gz(data) if gzip_body else data,
                       headers=headers(token, gzip_body))


def outcomes(resp, key):
    return [o["outcome"] for o in resp.json()[key]]


def test_stores_a_batch_and_reports_each_record(client, gw, engine):
    raws, ms = events(3)
    r = post(client, gw, batch(raws=raws, ms=ms))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["protocol_version"] == "1"
    assert out["raw_events"] == [{"index": i, "seq": i + 1, "outcome": "stored"} for i in range(3)]
    assert [(o["index"], o["event_id"], o["revision"], o["outcome"]) for o in out["measurements"]] == \
        [(i, m["event_id"], 1, "stored") for i, m in enumerate(ms)]
    snap = snapshot(engine)
    assert len(snap["raw"]) == 3 and len(snap["measurements"]) == 3
    assert snap["measurements"][0][1] == "gw1"


def test_values_are_exact_numeric(client, gw, engine):
    big = "1234567890123456789012345678901234567890"
    tiny = "0." + "0" * 39 + "1"
    ms = [measurement(value=big, device="a"), measurement(value=tiny, device="b", delta=tiny),
          measurement(value="-2.5", metric="power", device="c")]
    assert outcomes(post(client, gw, batch(ms=ms)), "measurements") == ["stored"] * 3
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text(
            "SELECT device_id, value::text FROM normalized_measurements")).all())
    assert got == {"a": big, "b": tiny, "c": "-2.5"}


def test_raw_payload_bytes_and_jsonb(client, gw, engine):
    raws = [raw_event(1, b'{"device":"m1","value":1.50}'), raw_event(2, b"\x00\xffnot json"),
            raw_event(3, b'{"s":"\\u0000"}'), raw_event(4, b"[1e999999]"), raw_event(5, b"")]
    assert outcomes(post(client, gw, batch(raws=raws)), "raw_events") == ["stored"] * 5
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT seq, payload, payload_json FROM raw_events ORDER BY seq")).all()
    assert bytes(rows[0].payload) == b'{"device":"m1","value":1.50}'
    assert rows[0].payload_json == {"device": "m1", "value": 1.5}
    assert bytes(rows[1].payload) == b"\x00\xffnot json" and rows[1].payload_json is None
    assert rows[2].payload_json is None and rows[3].payload_json is None
    assert bytes(rows[4].payload) == b"" and rows[4].payload_json is None


def test_replay_is_idempotent(client, gw, engine):
    raws, ms = events(20)
    env = batch(raws=raws, ms=ms)
    assert outcomes(post(client, gw, env), "measurements") == ["stored"] * 20
    first = data_rows(engine)
    again = post(client, gw, env)
    assert outcomes(again, "raw_events") == ["duplicate"] * 20
    assert outcomes(again, "measurements") == ["duplicate"] * 20
    assert data_rows(engine) == first


def test_reordered_and_resplit_batches_give_the_same_rows(client, gw, engine):
    raws, ms = events(60)
    post(client, gw, batch(raws=raws, ms=ms))
    reference = data_rows(engine)
    rng = random.Random(4)
    for trial in range(3):
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE raw_events, normalized_measurements"))
        pairs = list(zip(raws, ms))
        rng.shuffle(pairs)
        cuts = sorted(rng.sample(range(1, 60), 4))
        chunks = [pairs[a:b] for a, b in zip([0] + cuts, cuts + [60])]
        # overlapping resend: each chunk also carries the first item of the next
        for i, chunk in enumerate(chunks):
            extra = chunks[i + 1][:1] if i + 1 < len(chunks) else []
            part = chunk + extra
            r = post(client, gw, batch(raws=[p[0] for p in part], ms=[p[1] for p in part]),
                     gzip_body=bool(trial % 2))
            assert r.status_code == 200
        assert data_rows(engine) == reference


def test_revision_only_moves_forward(client, gw, engine):
    base = dict(device="m1", ts="2024-01-01T10:00:00.000Z", value="5")
    r1 = measurement(**base, revision=1, flags=["first_reading"])
    r2 = measurement(**base, revision=2, delta="1", flags=["out_of_order"])
    r3 = measurement(**base, revision=3, delta="2", flags=[])
    assert outcomes(post(client, gw, batch(ms=[r2])), "measurements") == ["stored"]
    assert outcomes(post(client, gw, batch(ms=[r1])), "measurements") == ["superseded"]
    assert outcomes(post(client, gw, batch(ms=[r2])), "measurements") == ["duplicate"]
    assert outcomes(post(client, gw, batch(ms=[r3])), "measurements") == ["stored"]
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT revision, delta::text, flags FROM normalized_measurements")).one()
    assert tuple(row) == (3, "2", [])


def test_revisions_within_one_batch(client, gw, engine):
    base = dict(device="m1", ts="2024-01-01T10:00:00.000Z", value="5")
    ms = [measurement(**base, revision=1, flags=["first_reading"]),
          measurement(**base, revision=3, delta="2"), measurement(**base, revision=2, delta="1"),
          measurement(**base, revision=3, delta="2")]
    assert outcomes(post(client, gw, batch(ms=ms)), "measurements") == \
        ["superseded", "stored", "superseded", "duplicate"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT revision FROM normalized_measurements")).scalar() == 3


def test_same_seq_twice_in_one_batch(client, gw, engine):
    r = post(client, gw, batch(raws=[raw_event(7), raw_event(7, b"other")]))
    assert outcomes(r, "raw_events") == ["stored", "duplicate"]
    with engine.connect() as conn:
        assert bytes(conn.execute(sa.text("SELECT payload FROM raw_events")).scalar()) == b'{"v":1}'


def test_reading_heard_through_two_gateways_is_one_row(client, gw, gw2, engine):
    m = measurement(device="shared", value="42")
    b1, b2 = new_buffer(), new_buffer()
    r1 = post(client, gw2, batch(gateway="gw2", buffer_id=b2, raws=[raw_event(3)],
                                 ms=[dict(m, raw={"buffer_id": b2, "seq": 3})]))
    r2 = post(client, gw, batch(gateway="gw1", buffer_id=b1, raws=[raw_event(9)],
                                ms=[dict(m, raw={"buffer_id": b1, "seq": 9})]))
    assert outcomes(r1, "measurements") == ["stored"] and outcomes(r2, "measurements") == ["duplicate"]
    snap = snapshot(engine)
    assert len(snap["raw"]) == 2  # each gateway's raw event is kept for audit
    assert [(row[1], row[10], row[11]) for row in snap["measurements"]] == [("gw2", b2, 3)]


def test_same_seq_different_buffers_or_gateways_are_distinct(client, gw, gw2, engine):
    post(client, gw, batch(raws=[raw_event(1)]))
    post(client, gw, batch(raws=[raw_event(1)], buffer_id=new_buffer()))
    post(client, gw2, batch(gateway="gw2", raws=[raw_event(1)]))
    assert len(snapshot(engine)["raw"]) == 3


def test_buffer_id_case_is_one_identity(client, gw, engine):
    post(client, gw, batch(raws=[raw_event(1)], buffer_id=BUFFER.upper()))
    r = post(client, gw, batch(raws=[raw_event(1)], buffer_id=BUFFER))
    assert outcomes(r, "raw_events") == ["duplicate"]


def test_empty_batch_is_a_heartbeat(client, gw, engine):
    r = post(client, gw, batch(backlog={"records": 12, "oldest_received_at": "2024-01-01T08:00:00.000Z"}))
    assert r.status_code == 200 and r.json() == {"protocol_version": "1", "raw_events": [],
                                                 "measurements": []}
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT last_contact_at, backlog_records FROM gateways")).one()
    assert row.last_contact_at is not None and row.backlog_records == 12


def test_gzip_body(client, gw, engine):
    raws, ms = events(5)
    r = post(client, gw, batch(raws=raws, ms=ms), gzip_body=True)
    assert r.status_code == 200 and outcomes(r, "measurements") == ["stored"] * 5


def test_unknown_fields_are_ignored(client, gw, engine):
    env = batch(ms=[dict(measurement(), future_field={"x": 1})], extension="ignored")
    assert outcomes(post(client, gw, env), "measurements") == ["stored"]


def test_response_is_json_utf8(client, gw):
    m = measurement(device="compteur-\u00e9")
    r = post(client, gw, batch(ms=[m]))
    assert r.headers["content-type"].startswith("application/json")
    assert json.loads(r.content.decode("utf-8"))["measurements"][0]["outcome"] == "stored"


def test_awkward_strings_survive_bulk_encoding(client, gw, engine):
    """The bulk statements pass each column as one array literal; quoting must be exact."""
    names = ['a"b', "back\\slash", "{brace}", "com,ma", "NULL", "tab\tnew\nline", "emoji-\u26a1",
             "'quote", " lead", "trail ", "\\\"mix\\\"", "ARRAY[1]"]
    ms = [measurement(device=n, value=str(i)) for i, n in enumerate(names)]
    raws = [raw_event(i + 1, n.encode(), topic=n, decode_error=n) for i, n in enumerate(names)]
    raws.append(raw_event(99, b'{"k":"va\\\\l\\"ue","n":[1,{"x":null}]}'))
    r = post(client, gw, batch(raws=raws, ms=ms))
    assert outcomes(r, "measurements") == ["stored"] * len(names)
    with engine.connect() as conn:
        devices = [row[0] for row in conn.execute(sa.text(
            "SELECT device_id FROM normalized_measurements ORDER BY value"))]
        topics = conn.execute(sa.text(
            "SELECT topic, decode_error, payload FROM raw_events WHERE seq < 99 ORDER BY seq")).all()
        pj = conn.execute(sa.text("SELECT payload_json FROM raw_events WHERE seq = 99")).scalar()
    assert devices == names
    assert [(t, d, bytes(p).decode()) for t, d, p in topics] == [(n, n, n) for n in names]
    assert pj == {"k": 'va\\l"ue', "n": [1, {"x": None}]}


def test_same_revision_different_content_keeps_first_and_logs(client, gw, engine, caplog):
    base = dict(device="m1", ts="2024-01-01T10:00:00.000Z", value="5", revision=2)
    post(client, gw, batch(ms=[measurement(**base, delta="1")]))
    with caplog.at_level("WARNING", logger="central.ingest"):
        r = post(client, gw, batch(ms=[measurement(**base, delta="2")]))
    assert outcomes(r, "measurements") == ["duplicate"]
    assert any("differs from the stored one" in rec.getMessage() for rec in caplog.records)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT delta::text FROM normalized_measurements")).scalar() == "1"


def test_payloads_that_jsonb_might_refuse_never_fail_the_batch(client, gw, engine):
    cases = [(b'"\\ud83d\\ude00"', True), (b'"\\ud800"', False), (b"[" * 900 + b"]" * 900, True),
             (b"[" * 5000 + b"]" * 5000, False), (b"[1e9999]", True), (b"[1e-9999]", True),
             (b"[" + b"9" * 999 + b"]", True), (b"[" + b"9" * 1001 + b"]", False),
             (b'{"a":1,"a":2}', True), (b"\xef\xbb\xbf{}", False), (b"{}\n", True)]
    raws = [raw_event(i + 1, p) for i, (p, _) in enumerate(cases)]
    r = post(client, gw, batch(raws=raws))
    assert outcomes(r, "raw_events") == ["stored"] * len(cases)
    with engine.connect() as conn:
        got = [row[0] for row in conn.execute(sa.text(
            "SELECT payload_json IS NOT NULL FROM raw_events ORDER BY seq"))]
    assert got == [expected for _, expected in cases]
