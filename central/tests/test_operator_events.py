"""Operator events ($meter-agent/operator raw events) -> epochs: parsed as hostile input, stored
raw always, applied when valid (latest by (received_at, seq) wins), reported when not."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from central import operator_events
from central.tests.helpers import batch, body, headers, new_buffer, raw_event

TOPIC = "$meter-agent/operator"
AT = "2024-03-01T12:00:00.000Z"


def payload(device="m1", metric="energy", at=AT, new_initial="0", old_final="12345.6",
            withdrawn=False, recorded_at="2024-03-01T12:05:00.000Z", **over) -> bytes:
    obj = {"at": at, "device_id": device, "event": "meter_replaced",
           "identity": operator_events.identity(device, metric, at), "metric_type": metric,
           "new_initial": new_initial, "old_final": old_final, "recorded_at": recorded_at,
           "withdrawn": withdrawn}
    obj.update(over)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def op_event(seq, data: bytes, received_at="2024-03-01T12:05:00.000Z"):
    return raw_event(seq, data, topic=TOPIC, qos=0, received_at=received_at)


def post(client, token, raws, buffer_id=None):
    env = batch(raws=raws, **({"buffer_id": buffer_id} if buffer_id else {}))
    r = client.post("/api/v1/ingest", content=body(env), headers=headers(token))
    assert r.status_code == 200, r.text
    return [o["outcome"] for o in r.json()["raw_events"]]


def epochs(client, viewer, device="m1"):
    r = client.get("/api/v1/epochs", params={"device_id": device}, headers=headers(viewer))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def problems(client, viewer):
    return client.get("/api/v1/operator_event_problems", headers=headers(viewer)).json()["items"]


def test_identity_is_the_documented_hash():
    import hashlib
    assert operator_events.identity("m1", "energy", AT) == hashlib.sha256(
        b"meter_replaced\x00m1\x00energy\x00" + AT.encode()).hexdigest()


def test_a_replacement_is_stored_raw_and_as_an_epoch(client, gw, viewer, engine):
    assert post(client, gw, [op_event(1, payload()), raw_event(2)]) == ["stored", "stored"]
    (item,) = epochs(client, viewer)
    assert item["at"] == AT and item["metric_type"] == "energy"
    assert item["new_initial"] == 0 and item["old_final"] == 12345.6
    assert item["withdrawn"] is False and item["raw"]["seq"] == 1
    assert item["identity"] == operator_events.identity("m1", "energy", AT)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw_events")).scalar() == 2
    assert epochs(client, viewer, device="m2") == [] and problems(client, viewer) == []


def test_exact_decimals_in_either_json_form(client, gw, viewer):
    text = payload(new_initial="0.000000000000000000000000000001").replace(
        b'"old_final":"12345.6"', b'"old_final":12345.60000000000000000001')
    post(client, gw, [op_event(1, text)])
    r = client.get("/api/v1/epochs", params={"device_id": "m1"}, headers=headers(viewer))
    assert b'"new_initial":0.000000000000000000000000000001' in r.content
    assert b'"old_final":12345.60000000000000000001' in r.content


def test_latest_by_received_at_then_seq_wins_in_any_arrival_order(client, gw, viewer):
    for device, order in (("m1", (0, 1, 2)), ("m2", (2, 1, 0)), ("m3", (1, 2, 0))):
        records = [op_event(5, payload(device, new_initial="1"), "2024-03-01T12:05:00.000Z"),
                   op_event(3, payload(device, new_initial="2"), "2024-03-01T12:06:00.000Z"),
                   op_event(9, payload(device, new_initial="3"), "2024-03-01T12:06:00.000Z")]
        for i in order:  # each in its own batch (and buffer), in this order
            post(client, gw, [records[i]], buffer_id=new_buffer())
        (item,) = epochs(client, viewer, device)
        assert (item["new_initial"], item["raw"]["seq"]) == (3, 9), device


def test_a_withdrawal_is_kept_as_withdrawn_and_a_resend_changes_nothing(client, gw, viewer):
    post(client, gw, [op_event(1, payload())])
    withdrawal = op_event(2, payload(withdrawn=True, new_initial=None, old_final=None),
                          received_at="2024-03-01T13:00:00.000Z")
    assert post(client, gw, [withdrawal]) == ["stored"]
    (item,) = epochs(client, viewer)
    assert item["withdrawn"] is True and item["new_initial"] is None and item["raw"]["seq"] == 2
    assert post(client, gw, [op_event(1, payload())]) == ["duplicate"]  # the older record again
    assert epochs(client, viewer)[0]["withdrawn"] is True


def test_two_replacements_of_one_device_are_two_epochs(client, gw, viewer):
    post(client, gw, [op_event(1, payload()), op_event(2, payload(at="2024-06-01T00:00:00.000Z"))])
    assert [e["at"] for e in epochs(client, viewer)] == [AT, "2024-06-01T00:00:00.000Z"]


MALFORMED = [
    ("not-json", b"replace m1 please"),
    ("not-utf8", b"\xff\xfe{}"),
    ("array", b"[1,2]"),
    ("nan", b'{"at": NaN}'),
    ("deep", b"[" * 100000 + b"]" * 100000),
    ("missing-identity", payload().replace(b'"identity"', b'"identiti"')),
    ("wrong-identity", payload(identity="0" * 64)),
    ("identity-not-string", payload(identity=7)),
    ("other-event", payload(event="meter_installed")),
    ("bad-at", payload(at="2024-03-01 12:00")),
    ("at-second-60", payload(at="2024-03-01T12:00:60.000Z")),
    ("bad-recorded-at", payload(recorded_at=None)),
    ("non-canonical-decimal", payload(new_initial="1.50")),
    ("decimal-too-long", payload(new_initial="1" * 41)),
    ("decimal-object", payload(old_final={"v": 1})),
    ("withdrawn-string", payload(withdrawn="false")),
    ("device-nul", payload(device="m\u00001")),
    ("device-surrogate", payload(device="m1").replace(b'"m1"', b'"m\\ud800"')),
    ("device-empty", payload(device="")),
    ("device-long", payload(device="d" * 257)),
    ("metric-volt", payload(metric="volt")),
    ("metric-number", payload(metric_type=1)),
]


@pytest.mark.parametrize("name,data", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_operator_event_is_stored_raw_reported_and_not_applied(client, gw, viewer,
                                                                           engine, name, data):
    assert post(client, gw, [op_event(1, data), op_event(2, payload())]) == ["stored", "stored"]
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT payload FROM raw_events WHERE seq = 1")).scalar()
    assert bytes(stored) == data
    assert len(epochs(client, viewer)) == 1  # the good one beside it was applied
    (problem,) = problems(client, viewer)
    assert problem["seq"] == 1 and problem["gateway_id"] == "gw1" and problem["problem"]


def test_the_same_payload_on_another_topic_is_just_a_raw_event(client, gw, viewer):
    post(client, gw, [raw_event(1, payload(), topic="meter-agent/operator")])
    assert epochs(client, viewer) == [] and problems(client, viewer) == []


def test_epochs_need_a_viewer_token(client, gw):
    r = client.get("/api/v1/epochs", params={"device_id": "m1"}, headers=headers(gw))
    assert r.status_code == 403


def _fuzzed(rng) -> bytes:
    """A valid payload with random damage: bytes flipped, cut, fields swapped for odd values."""
    data = payload(device=rng.choice(["m1", "m\u00e9", "x" * 256]),
                   new_initial=rng.choice(["0", None, "12.5"]))
    roll = rng.random()
    if roll < 0.3:
        obj = json.loads(data)
        key = rng.choice(sorted(obj))
        obj[key] = rng.choice([None, True, 0, -1, 1.5, "", [], {}, "x" * 300, "\u0000", "1e3",
                               "2024-03-01T12:00:00.000Z", "meter_replaced", "energy"])
        return json.dumps(obj).encode()
    if roll < 0.5:
        return data[:rng.randrange(len(data))]
    if roll < 0.8:
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        return bytes(damaged)
    return data


def test_fuzzed_payloads_are_applied_or_reported_never_an_error(client, gw, viewer, engine):
    import random
    rng = random.Random(16)
    blobs = [_fuzzed(rng) for _ in range(300)]
    parsed = {}
    for seq, blob in enumerate(blobs, start=1):
        try:
            parsed[seq] = operator_events.parse(blob)
        except operator_events.OperatorEventProblem:
            pass  # any other exception fails the test
    assert 20 < len(parsed) < 280  # both kinds were exercised
    assert post(client, gw, [op_event(seq, blob) for seq, blob in enumerate(blobs, start=1)]) \
        == ["stored"] * len(blobs)
    reported = {p["seq"] for p in client.get("/api/v1/operator_event_problems",
                                             params={"limit": 1000},
                                             headers=headers(viewer)).json()["items"]}
    assert reported == set(range(1, len(blobs) + 1)) - set(parsed)
    with engine.connect() as conn:
        identities = set(conn.execute(sa.text("SELECT identity FROM epochs")).scalars())
    assert identities == {e.identity for e in parsed.values()}
