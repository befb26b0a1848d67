"""central/ingest_validate.py: the whole-batch fast path accepts exactly the batches the
record-by-record checks accept, with the same records; anything else goes record by record."""

from __future__ import annotations

import base64
import json
import random
import uuid

import pytest

import central.ingest_validate as validate
from central.canonical import event_id
from central.ingest_body import decode_body
from central.tests.conftest import make_settings

SETTINGS = make_settings()
BUFFER = str(uuid.uuid4())
FLAG_CHOICES = ["clock_unsynced", "counter_reset", "dst_gap", "first_reading", "leap_second",
                "out_of_order", "suspicious_jump"]
# Protocol "2" flags: unknown flags in a "1" batch, valid in a "2" batch.
V2_FLAG_CHOICES = ["gap", "glitch", "implausible_rate"]
NUM = "num"  # (NUM, text): written into the JSON as a number with exactly this text


def _timestamp(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(["2024-01-01T00:00:00.000Z", "2024-02-29T23:59:59.999Z",
                           "2023-12-31T12:30:00.123Z", "2024-04-30T00:00:00.000Z"])
    return (f"{rng.choice(['2024', '2023', '0000', '0001', '9999'])}-"
            f"{rng.choice(['01', '02', '04', '12', '13', '00'])}-"
            f"{rng.choice(['01', '28', '29', '30', '31', '32', '00'])}"
            f"{rng.choice(['T', 'T', 't', ' '])}{rng.choice(['00', '23', '24'])}:"
            f"{rng.choice(['00', '59', '60'])}:{rng.choice(['00', '59', '60'])}"
            f"{rng.choice(['.000', '.999', '', '.12', '.1234'])}"
            f"{rng.choice(['Z', 'Z', 'z', '+00:00'])}")


def _decimal(rng: random.Random) -> str:
    return rng.choice(["1.5", "2", "0", "-2.25", "1" * 40, "-" + "9" * 40, "1" * 41,
                       "0." + "0" * 39 + "1", "0." + "0" * 40 + "1", "1.50", "-0", "1e3",
                       "1E+3", "-0.0", "100.001", "1" + "0" * 40])


ODD_VALUES = [None, True, False, (NUM, "1"), (NUM, "1.0"), "1", "", [], {}, ["x"], "x" * 300,
              "a\u0000b", "a\udc00", "\u00e9", "NULL", 'q"uote', "energy", "kWh", "kW", "power",
              "2024-01-01T00:00:00.000Z,2024-01-01T00:00:00.000Z", (NUM, "-0"), (NUM, "2")]


def _mutate(rng: random.Random, record: dict) -> dict:
    record = dict(record)
    key = rng.choice(list(record) + ["raw"])
    roll = rng.random()
    if roll < 0.15:
        record.pop(key, None)
    elif roll < 0.5:
        record[key] = rng.choice(ODD_VALUES)
    elif roll < 0.7:
        record[key] = _timestamp(rng)
    elif roll < 0.85:
        record[key] = (NUM, _decimal(rng))
    elif key == "flags":
        record[key] = rng.sample(FLAG_CHOICES + ["bogus"], rng.randint(0, 3))
    elif key == "raw":
        record[key] = rng.choice([{"buffer_id": BUFFER.upper(), "seq": (NUM, "5")},
                                  {"buffer_id": "x", "seq": (NUM, "1")}, {"seq": (NUM, "1")},
                                  {"buffer_id": BUFFER, "seq": (NUM, "0")}, "raw"])
    else:
        record[key] = (NUM, str(rng.choice([0, 1, 2, 3, -1, 2**31, 2**31 - 1, 2**63, 10**25])))
    return record


def _measurement(rng: random.Random, i: int, odd: float, v2: float = 0) -> dict:
    device = rng.choice(["m1", "m2", "compteur-\u00e9", "site A | meter 7"])
    ts = _timestamp(rng) if rng.random() < odd else "2024-01-01T00:00:00.000Z"
    value = _decimal(rng) if rng.random() < odd else rng.choice(["1.5", "2", "0.001", "-3"])
    metric = rng.choice(["energy", "power"])
    flags = sorted(rng.sample(FLAG_CHOICES + (V2_FLAG_CHOICES if rng.random() < v2 else []),
                              rng.randint(0, 2)))
    delta = None if rng.random() < 0.5 or set(flags) & {"first_reading", "counter_reset",
                                                         "glitch"} \
        else (NUM, "0.5")
    extra = {}
    if rng.random() < v2:  # ignored in a "1" batch (an unknown field), checked in a "2" batch
        extra["delta_from"] = rng.choice([None, "2023-12-31T23:00:00.000Z", ts,
                                          "2024-01-02T00:00:00.000Z", _timestamp(rng), (NUM, "1")])
    return {**extra, "event_id": event_id(device, ts, metric, value), "device_id": device,
            "metric_type": metric, "timestamp": ts, "value": (NUM, value),
            "unit": "kWh" if metric == "energy" else "kW", "delta": delta, "flags": flags,
            "revision": (NUM, str(rng.choice([1, 2, 7]))),
            "raw": {"buffer_id": rng.choice([BUFFER, BUFFER.upper()]), "seq": (NUM, str(i + 1))}}


def _raw_event(rng: random.Random, i: int) -> dict:
    payload = rng.choice([b'{"a":1}', b"", b"\x00\xff", b"[1e99999]", b"1", "\u00e9".encode(),
                          b'{"s":"\\u0000"}'])
    return {"seq": (NUM, str(i + 1)), "topic": rng.choice(["t/1", "t/\u00e9"]),
            "payload": base64.b64encode(payload).decode(), "qos": (NUM, rng.choice("012")),
            "retained": False, "dup": rng.random() < 0.5,
            "received_at": "2024-01-01T00:00:00.000Z", "decode_error": rng.choice([None, "", "x"])}


def _text(value) -> str:
    return value[1] if isinstance(value, tuple) else value


def _rehash(record: dict) -> dict:
    """The event_id of the record's (possibly odd) fields, so that only they can be wrong."""
    try:
        record["event_id"] = event_id(*(_text(record[k]) for k in
                                        ("device_id", "timestamp", "metric_type", "value")))
    except (KeyError, TypeError, UnicodeEncodeError):  # no id to compute: it stays wrong
        pass
    return record


def _json(value) -> str:
    if isinstance(value, tuple) and value[0] == NUM:
        return value[1]
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value)


def _body(raws: list, ms: list, version: str = "1") -> dict:
    text = ('{"protocol_version":"%s","gateway_id":"gw1","buffer_id":"%s",'
            '"sent_at":"2024-01-01T00:00:00.000Z","raw_events":[%s],"measurements":[%s]}'
            % (version, BUFFER, ",".join(map(_json, raws)), ",".join(map(_json, ms))))
    return decode_body(text.encode("utf-8"), None, 1 << 26)


def _record_by_record(monkeypatch, body) -> validate.Batch:
    with monkeypatch.context() as m:
        m.setattr(validate, "_raw_events_if_all_valid", lambda *args: None)
        m.setattr(validate, "_measurements_if_all_valid", lambda *args: None)
        return validate.parse_envelope(body, SETTINGS, "gw1")


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_agrees_with_record_by_record(monkeypatch, seed):
    rng = random.Random(seed)
    fast_taken = 0
    for _ in range(60):
        odd = rng.choice([0, 0.02, 0.1])  # odd, often still valid values (long decimals, Feb 29)
        mutation_rate = rng.choice([0, 0, 0.02, 0.3])
        # Protocol "2" records (new flags, delta_from) in either version: the cache of valid
        # flag lists is shared, so a "1" batch after a "2" one must still refuse the new flags.
        version, v2 = rng.choice([("1", 0), ("1", 0.1), ("2", 0), ("2", 0.3)])
        ms = [_measurement(rng, i, odd, v2) for i in range(rng.randint(0, 40))]
        raws = [_raw_event(rng, i) for i in range(rng.randint(0, 40))]
        ms = [(_rehash if rng.random() < 0.5 else dict)(_mutate(rng, m))
              if rng.random() < mutation_rate else m for m in ms]
        raws = [_mutate(rng, r) if rng.random() < mutation_rate else r for r in raws]
        body = _body(raws, ms, version)
        fast = validate.parse_envelope(body, SETTINGS, "gw1")
        slow = _record_by_record(monkeypatch, body)
        assert fast == slow
        if validate._measurements_if_all_valid(body["measurements"], SETTINGS,
                                               version) is not None:
            assert not slow.rejected_measurements  # it accepts only what all records pass
            fast_taken += 1
        if validate._raw_events_if_all_valid(body["raw_events"], SETTINGS) is not None:
            assert not slow.rejected_raw
            fast_taken += 1
    assert fast_taken > 30  # the fast path was exercised, not just the fallback


@pytest.mark.parametrize("field,bad", [
    ("timestamp", "2024-01-01T00:00:00.000Z,2024-01-01T00:00:00.000Z"),  # the join separator
    ("timestamp", "2023-02-29T00:00:00.000Z"), ("timestamp", "2024-04-31T00:00:00.000Z"),
    ("value", (NUM, "-0")), ("value", (NUM, "1" * 41)), ("value", (NUM, "1.50")),
    ("delta", (NUM, "-0")), ("device_id", "a\u0000"), ("device_id", ""), ("metric_type", "volt"),
    ("device_id", "\u00e9\udc00"), ("unit", "Wh"), ("revision", (NUM, str(2**31))),
    ("event_id", "F" * 64), ("flags", ["dst_gap", "clock_unsynced"]), ("delta", "1"),
])
def test_one_bad_measurement_among_good_ones_goes_record_by_record(field, bad):
    rng = random.Random(1)
    ms = [_measurement(rng, i, 0) for i in range(5)]
    ms[3][field] = bad
    if field != "event_id":
        _rehash(ms[3])  # so that the field itself is what is wrong
    batch = validate.parse_envelope(_body([], ms), SETTINGS, "gw1")
    assert [r[0] for r in batch.rejected_measurements] == [3]
    assert [m.index for m in batch.measurements] == [0, 1, 2, 4]


def test_long_values_within_the_limits_are_accepted_by_either_path():
    rng = random.Random(2)
    ms = [_measurement(rng, i, 0) for i in range(3)]
    long_value = "-" + "9" * 40  # 41 characters, 40 digits: valid, beyond the fast path's test
    ms[1].update(value=(NUM, long_value),
                 event_id=event_id(ms[1]["device_id"], ms[1]["timestamp"], ms[1]["metric_type"],
                                   long_value))
    batch = validate.parse_envelope(_body([], ms), SETTINGS, "gw1")
    assert not batch.rejected_measurements and batch.measurements[1].value_text == long_value
