"""central/ingest_store.py: two batches of one gateway in flight at once (the agent keeps two),
the gateway status under commits in either order, the array encodings and the rendered outcomes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random

import pytest
import sqlalchemy as sa

from central.ingest_store import (Outcomes, _array_of_texts, _render_measurement, _render_raw,
                                  pg_array)
from central.tests.helpers import (batch, body, data_rows, headers, measurement, poster,
                                   raw_event, run_parallel)


def post(client, token, env):
    return client.post("/api/v1/ingest", content=body(env), headers=headers(token))


def gateway_status(engine, name="gw1"):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT last_contact_at, last_sent_at, clock_skew_ms, backlog_records, "
            "backlog_oldest_received_at, rejected_records, last_rejection_reason "
            "FROM gateways WHERE name = :n"), {"n": name}).mappings().one()


def ts(minute: int, second: int = 0) -> str:
    return f"2024-03-01T10:{minute:02d}:{second:02d}.000Z"


# --- two batches of one gateway in flight --------------------------------------------------

READINGS = [dict(device=f"m{i % 4}", ts=f"2024-02-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
                 value=str(i)) for i in range(240)]


def _overlapping_pair(rng: random.Random, round_: int):
    """Two batches sharing raw seqs and event_ids. Each reading gets a revision in each batch
    (1-4, delta and flags derived from it), so the same event_id arrives with different
    revisions and, on ties, identical content. Returns both envelopes and the expected final
    (revision, delta, flags) per event_id and the set of raw seqs."""
    first, second = rng.sample(range(240), 170), rng.sample(range(240), 170)
    envs, expected = [], {}
    for pick in (first, second):
        ms, raws = [], []
        for i in pick:
            rev = rng.randint(1, 4)
            m = measurement(**READINGS[i], revision=rev, delta=str(rev),
                            flags=["out_of_order"] if rev % 2 else [], seq=i + 1)
            ms.append(m)
            raws.append(raw_event(round_ * 1000 + i + 1, f"payload {i}".encode()))
            best = expected.get(m["event_id"])
            if best is None or rev > best[0]:
                expected[m["event_id"]] = (rev, str(rev), ["out_of_order"] if rev % 2 else [])
        rng.shuffle(ms)
        envs.append(batch(raws=sorted(raws, key=lambda r: r["seq"]), ms=ms))
    seqs = {round_ * 1000 + i + 1 for i in set(first) | set(second)}
    return envs, expected, seqs


def test_two_overlapping_batches_in_flight_end_correct(live, gw, engine):
    """Overlapping raw seqs and event_ids, different revisions of the same event_id in the two
    batches, sent at the same moment, 12 times: the rows are those of the highest revisions,
    every raw event is stored once, and the outcomes agree with the rows."""
    rng = random.Random(5)
    seqs_all = set()
    for round_ in range(12):
        envs, expected, seqs = _overlapping_pair(rng, round_)
        results = run_parallel([poster(live.url, gw, body(env)) for env in envs])
        assert [r.status_code for r in results] == [200, 200], [r.text[:200] for r in results]
        stored_raw = [o["seq"] for r in results for o in r.json()["raw_events"]
                      if o["outcome"] == "stored"]
        assert sorted(stored_raw) == sorted(seqs)  # each raw event stored by exactly one batch
        for env, r in zip(envs, results):
            for m, o in zip(env["measurements"], r.json()["measurements"]):
                assert (o["event_id"], o["revision"]) == (m["event_id"], m["revision"])
                # below the final revision a record was stored, then overtaken, or superseded;
                # at it, stored by one batch and a duplicate for the other
                if m["revision"] < expected[m["event_id"]][0]:
                    assert o["outcome"] in ("stored", "superseded"), o
                else:
                    assert o["outcome"] in ("stored", "duplicate"), o
        with engine.connect() as conn:
            rows = {r[0]: (r[1], r[2], list(r[3])) for r in conn.execute(sa.text(
                "SELECT event_id, revision, delta::text, flags FROM normalized_measurements"))}
        assert rows == expected
        seqs_all |= seqs
        with engine.begin() as conn:  # the next round sends the same readings again
            conn.execute(sa.text("TRUNCATE normalized_measurements"))
    assert {r[2] for r in data_rows(engine)["raw"]} == seqs_all


def test_overlapping_batches_in_flight_give_the_rows_of_sending_them_one_by_one(live, gw,
                                                                                 engine, client):
    rng = random.Random(9)
    envs, _, _ = _overlapping_pair(rng, 0)
    for env in envs:
        assert post(client, gw, env).status_code == 200
    one_by_one = data_rows(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE raw_events, normalized_measurements"))
    for _ in range(3):
        assert [r.status_code for r in run_parallel([poster(live.url, gw, body(env)) for env in envs])] == [200, 200]
    assert data_rows(engine) == one_by_one


# --- gateway status: the later sent_at wins, whatever the commit order ----------------------

def test_status_follows_the_later_sent_at_not_the_later_commit(client, gw, engine):
    later = batch(sent_at=ts(30), backlog={"records": 0, "oldest_received_at": None})
    earlier = batch(sent_at=ts(29, 50),
                    backlog={"records": 1000, "oldest_received_at": ts(20)},
                    ms=[dict(measurement(), unit="Wh")])  # one rejected record
    assert post(client, gw, later).status_code == 200
    first = gateway_status(engine)
    assert post(client, gw, earlier).status_code == 200  # built first, committed last
    status = gateway_status(engine)
    assert status["last_sent_at"] == dt.datetime(2024, 3, 1, 10, 30, tzinfo=dt.timezone.utc)
    assert status["backlog_records"] == 0 and status["backlog_oldest_received_at"] is None
    assert status["clock_skew_ms"] == first["clock_skew_ms"]
    assert status["last_contact_at"] >= first["last_contact_at"]
    # what the earlier batch says about itself still counts
    assert status["rejected_records"] == 1 and status["last_rejection_reason"] == "wrong_unit"


def heartbeat(sent_at: str, records: int) -> dict:
    return batch(sent_at=sent_at, backlog={"records": records, "oldest_received_at": None})


def test_status_takes_a_gateway_clock_stepped_back(client, gw, engine):
    """A sent_at more than 5 minutes older than the stored one is a clock correction, not a
    batch overtaken in flight: it wins, or the status would freeze until the clock caught up."""
    assert post(client, gw, heartbeat(ts(40), 5)).status_code == 200
    assert post(client, gw, heartbeat(ts(34, 59), 7)).status_code == 200
    status = gateway_status(engine)
    assert status["last_sent_at"] == dt.datetime(2024, 3, 1, 10, 34, 59, tzinfo=dt.timezone.utc)
    assert status["backlog_records"] == 7
    assert post(client, gw, heartbeat(ts(35), 3)).status_code == 200
    assert gateway_status(engine)["backlog_records"] == 3


def test_status_equal_sent_at_takes_the_later_commit(client, gw, engine):
    for records in (4, 2):
        assert post(client, gw, heartbeat(ts(50), records)).status_code == 200
    assert gateway_status(engine)["backlog_records"] == 2


# --- encodings -----------------------------------------------------------------------------

def test_payload_bytes_are_what_python_decoded(client, gw, engine):
    """The database decodes the base64 text itself: it must get the bytes validation got,
    including for payloads of every length mod 3 and padding bits that are not zero."""
    rng = random.Random(3)
    payloads = [bytes(rng.randrange(256) for _ in range(n)) for n in range(0, 13)]
    texts = [base64.b64encode(p).decode() for p in payloads] + ["YR==", "YWJ=", "+/+/", "NULL"]
    raws = [raw_event(i + 1, t) for i, t in enumerate(texts)]
    r = post(client, gw, batch(raws=raws))
    assert [o["outcome"] for o in r.json()["raw_events"]] == ["stored"] * len(texts)
    with engine.connect() as conn:
        got = [bytes(row[0]) for row in conn.execute(sa.text(
            "SELECT payload FROM raw_events ORDER BY seq"))]
    assert got == [base64.b64decode(t, validate=True) for t in texts]


def test_array_of_texts_keeps_a_nul_inside_its_element():
    """Validation never lets NUL through; should it ever, the column encoder must not split the
    value at it (the database then refuses the NUL instead of storing two wrong values)."""
    assert _array_of_texts(["a\x00b", "c"]) == pg_array(["a\x00b", "c"]) == '{"a\x00b","c"}'
    assert _array_of_texts(['q"', "b\\s", ""]) == pg_array(['q"', "b\\s", ""])
    assert _array_of_texts([None, "x", None]) == pg_array([None, "x", None])
    assert _array_of_texts([None, None]) == "{NULL,NULL}" and _array_of_texts([]) == "{}"


def test_rendered_outcomes_are_the_json_of_the_outcomes():
    detail = 'unknown flag "\'); DROP" é \\ \u2028 \x01'
    raw = [_render_raw(0, 41, "stored", None, None), _render_raw(1, None, "rejected",
                                                                   "wrong_type", detail)]
    ms = [_render_measurement(0, "f" * 64, 2, "superseded", None, None),
          _render_measurement(1, None, None, "rejected", "unknown_flag", detail)]
    text = Outcomes(raw, ms).response_json()
    assert json.loads(text) == {
        "protocol_version": "1",
        "raw_events": [{"index": 0, "seq": 41, "outcome": "stored"},
                       {"index": 1, "seq": None, "outcome": "rejected", "reason": "wrong_type",
                        "detail": detail}],
        "measurements": [{"index": 0, "event_id": "f" * 64, "revision": 2,
                          "outcome": "superseded"},
                         {"index": 1, "event_id": None, "revision": None, "outcome": "rejected",
                          "reason": "unknown_flag", "detail": detail}]}
    assert text == json.dumps(json.loads(text), ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize("count", [1, 3])
def test_replay_finds_the_stored_revisions(client, gw, engine, count):
    """The stored revision of every re-sent event_id is read back by primary key."""
    ms = [measurement(device=f"d{i}", revision=5) for i in range(count)]
    assert post(client, gw, batch(ms=ms)).status_code == 200
    older = [dict(m, revision=4) for m in ms] + [dict(m) for m in ms]
    r = post(client, gw, batch(ms=older))
    assert [o["outcome"] for o in r.json()["measurements"]] == \
        ["superseded"] * count + ["duplicate"] * count
