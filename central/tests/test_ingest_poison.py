"""Poison records (issue #16): no record content can make the central answer 5xx or hold back
the rest of its batch. Each case here was a 500 or a wrong answer before its fix."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from central.ingest_validate import jsonb_text
from central.tests.helpers import batch, body, headers, measurement, raw_event, snapshot


def _deep_surrogate_payload(depth: int) -> bytes:
    return b'{"a":' * depth + b'"\\ud800"' + b"}" * depth


def test_deeply_nested_payload_with_lone_surrogate_is_stored_as_bytes(app, gw, engine):
    """The surrogate check used to walk the payload's parsed JSON recursively: a few hundred
    levels raised RecursionError, answered 500 for the whole batch, forever."""
    payload = _deep_surrogate_payload(600)
    env = batch(raws=[raw_event(1), raw_event(2, payload), raw_event(3)],
                ms=[measurement(seq=1)])
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/api/v1/ingest", content=body(env), headers=headers(gw))
    assert r.status_code == 200, r.text[:300]
    assert [o["outcome"] for o in r.json()["raw_events"]] == ["stored"] * 3
    assert [o["outcome"] for o in r.json()["measurements"]] == ["stored"]
    stored = {row[2]: row for row in snapshot(engine)["raw"]}
    assert bytes(stored[2][4]) == payload  # the original bytes, never altered
    assert stored[2][5] is None  # no jsonb copy: jsonb cannot hold a lone surrogate
    assert stored[1][5] is not None


def test_jsonb_text_depth_and_surrogates_without_recursion():
    assert jsonb_text(_deep_surrogate_payload(100_000)) is None
    assert jsonb_text(b"[" * 100_000 + b"]" * 100_000) is None  # deeper than the limit
    assert jsonb_text(b"[" * 900 + b"1" + b"]" * 900) is not None
    assert jsonb_text(b"[" * 901 + b"1" + b"]" * 901) is None
    assert jsonb_text(b'["\\ud83d\\ude00"]') is not None  # a pair is one character
    assert jsonb_text(b'["\\ud83d"]') is None
    assert jsonb_text(b'["\\ude00"]') is None
    assert jsonb_text(b'["\\ud83d\\u0041"]') is None  # high surrogate followed by no low one
    assert jsonb_text(b'["\\\\ud83d"]') is not None  # an escaped backslash, then text "ud83d"
    assert jsonb_text(b'["\\\\\\ud83d"]') is None


def test_payload_decoded_size_limit_is_exact(client, gw, engine):
    """The base64 length check let a payload of up to 2 bytes over the limit through."""
    from central.settings import Settings
    limit = Settings().max_payload_bytes
    env = batch(raws=[raw_event(1, b"x" * limit), raw_event(2, b"x" * (limit + 1)),
                      raw_event(3, b"x" * (limit + 2)), raw_event(4, b"x" * (limit - 1))])
    r = client.post("/api/v1/ingest", content=body(env), headers=headers(gw))
    assert r.status_code == 200
    out = r.json()["raw_events"]
    assert [o["outcome"] for o in out] == ["stored", "rejected", "rejected", "stored"]
    assert out[1]["reason"] == out[2]["reason"] == "too_long"
    # the same through the record-by-record path (one other record is invalid there)
    env = batch(raws=[raw_event(5, b"x" * (limit + 1)), raw_event(0)])
    out = client.post("/api/v1/ingest", content=body(env), headers=headers(gw)).json()["raw_events"]
    assert [o.get("reason") for o in out] == ["too_long", "out_of_range"]


def test_event_id_sent_as_a_number_is_echoed_as_null(client, gw):
    """A 64-digit JSON number passed the id syntax check as text and was echoed as a string."""
    from central.jsonout import RawNumber
    m = measurement()
    m["event_id"] = RawNumber("1" * 64)
    r = client.post("/api/v1/ingest", content=body(batch(ms=[m])), headers=headers(gw))
    out = r.json()["measurements"][0]
    assert out["outcome"] == "rejected" and out["reason"] == "wrong_type"
    assert out["event_id"] is None


def test_unexpected_failure_on_one_record_rejects_that_record_only(app, gw, engine, monkeypatch):
    """Fault injection at our own seam: the record checks fail unexpectedly (not RecordError)
    for one raw event and one measurement. Before, that was a 500 for the whole batch."""
    import central.ingest_validate as iv
    real_raw, real_measurement = iv._raw_record, iv._measurement

    def raw_record(index, obj, *args):
        if obj.get("seq") == "2":  # the number's text
            raise ZeroDivisionError("injected")
        return real_raw(index, obj, *args)

    def one_measurement(index, obj, *args):
        if obj.get("device_id") == "boom":
            raise KeyError  # not a missing field: raised by a check, not by obj[name]
        return real_measurement(index, obj, *args)

    def whole_batch(items, settings, *more):
        raise RuntimeError("injected")

    monkeypatch.setattr(iv, "_raw_record", raw_record)
    monkeypatch.setattr(iv, "_measurement", one_measurement)
    monkeypatch.setattr(iv, "_raw_events_if_all_valid", whole_batch)
    monkeypatch.setattr(iv, "_measurements_if_all_valid", whole_batch)
    env = batch(raws=[raw_event(1), raw_event(2), raw_event(3)],
                ms=[measurement(device="boom"), measurement(device="ok", seq=3)])
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/api/v1/ingest", content=body(env), headers=headers(gw))
    assert r.status_code == 200, r.text[:300]
    raws, ms = r.json()["raw_events"], r.json()["measurements"]
    assert [o["outcome"] for o in raws] == ["stored", "rejected", "stored"]
    assert raws[1]["reason"] == "internal_error" and raws[1]["seq"] == 2
    assert "ZeroDivisionError" in raws[1]["detail"]
    assert [o["outcome"] for o in ms] == ["rejected", "stored"]
    assert [row[2] for row in snapshot(engine)["raw"]] == [1, 3]


def test_a_record_the_database_refuses_is_rejected_alone(app, gw, engine):
    """A real refusal by PostgreSQL for one raw event and one measurement (a trigger raising, as
    a check the validation lacks would): before, the batch answered 500 on every retry."""
    import sqlalchemy as sa
    with engine.begin() as conn:
        conn.execute(sa.text("""
            CREATE FUNCTION poison_test() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_TABLE_NAME LIKE 'raw_events%' THEN  -- a partition's name (0008)
                IF NEW.topic = 'poison' THEN RAISE EXCEPTION 'poisoned record'; END IF;
              ELSIF NEW.device_id = 'poison' THEN
                RAISE EXCEPTION 'poisoned record';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER poison_raw BEFORE INSERT ON raw_events
              FOR EACH ROW EXECUTE FUNCTION poison_test();
            CREATE TRIGGER poison_m BEFORE INSERT ON normalized_measurements
              FOR EACH ROW EXECUTE FUNCTION poison_test();"""))
    try:
        raws = [raw_event(i) for i in range(1, 8)]
        raws[4]["topic"] = "poison"
        ms = [measurement(device=f"d{i}", seq=i) for i in range(1, 6)]
        ms[1] = measurement(device="poison", seq=2)
        with TestClient(app, raise_server_exceptions=False) as client:
            r = client.post("/api/v1/ingest", content=body(batch(raws=raws, ms=ms)),
                            headers=headers(gw))
        assert r.status_code == 200, r.text[:300]
        out = r.json()
        assert [o["outcome"] for o in out["raw_events"]] == ["stored"] * 4 + ["rejected"] + ["stored"] * 2
        assert out["raw_events"][4]["reason"] == "not_storable"
        assert "poisoned record" in out["raw_events"][4]["detail"]
        assert [o["outcome"] for o in out["measurements"]] == ["stored", "rejected"] + ["stored"] * 3
        assert out["measurements"][1]["reason"] == "not_storable"
        snap = snapshot(engine)
        assert [row[2] for row in snap["raw"]] == [1, 2, 3, 4, 6, 7]
        assert len(snap["measurements"]) == 4
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER poison_raw ON raw_events; "
                                 "DROP TRIGGER poison_m ON normalized_measurements; "
                                 "DROP FUNCTION poison_test()"))
