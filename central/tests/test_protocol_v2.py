"""Protocol "2" on /api/v1/ingest: the new flags, delta_from, answers in the request's version."""

from __future__ import annotations

import sqlalchemy as sa

from central.canonical import FLAGS_SINCE_V2, FLAGS_V1
from central.tests.helpers import batch, body, headers, measurement

NEW_FLAGS = ["device_restarted", "gap", "glitch", "implausible_rate", "meter_replaced",
             "period_reset", "rollback", "scale_rounded"]


def post(client, token, env):
    return client.post("/api/v1/ingest", content=body(env), headers=headers(token))


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT \"timestamp\", delta::text, delta_from, flags, revision "
            "FROM normalized_measurements ORDER BY \"timestamp\"")).all()


def test_the_eight_new_flags_are_the_version_2_ones():
    assert sorted(FLAGS_SINCE_V2) == NEW_FLAGS and not FLAGS_SINCE_V2 & FLAGS_V1


def _with_each_new_flag():
    ms = []
    for hour, flag in enumerate(NEW_FLAGS):
        delta = None if flag in ("glitch", "rollback") else "1"
        ms.append(measurement(ts=f"2024-01-01T{hour:02d}:00:00.000Z", value=str(hour + 10),
                              flags=[flag], delta=delta, seq=hour + 1))
    return ms


def test_version_1_rejects_each_new_flag_as_unknown(client, gw, engine):
    ms = _with_each_new_flag() + [measurement(ts="2024-01-02T00:00:00.000Z", value="99",
                                              flags=["suspicious_jump"], delta="5")]
    r = post(client, gw, batch(ms=ms))
    assert r.status_code == 200 and r.json()["protocol_version"] == "1"
    out = r.json()["measurements"]
    assert [(o["outcome"], o.get("reason")) for o in out] == \
        [("rejected", "unknown_flag")] * len(NEW_FLAGS) + [("stored", None)]
    assert "version 2" in out[0]["detail"]
    assert len(rows(engine)) == 1


def test_version_1_still_refuses_them_after_a_version_2_batch_accepted_them(client, gw, engine):
    """The validator caches the flag lists it has seen valid; that cache must not let a "1"
    batch through with a list a "2" batch made known."""
    two = [measurement(ts="2024-01-01T00:00:00.000Z", value="1", flags=["gap"], delta="1")]
    assert post(client, gw, batch(ms=two, protocol_version="2")).json()["measurements"][0][
        "outcome"] == "stored"
    one = [measurement(ts="2024-01-01T01:00:00.000Z", value="2", flags=["gap"], delta="1")]
    out = post(client, gw, batch(ms=one)).json()["measurements"]
    assert out[0]["outcome"] == "rejected" and out[0]["reason"] == "unknown_flag"


def test_version_2_stores_each_new_flag_and_answers_in_version_2(client, gw, engine):
    r = post(client, gw, batch(ms=_with_each_new_flag(), protocol_version="2"))
    assert r.status_code == 200 and r.json()["protocol_version"] == "2"
    assert [o["outcome"] for o in r.json()["measurements"]] == ["stored"] * len(NEW_FLAGS)
    assert [list(row.flags) for row in rows(engine)] == [[f] for f in NEW_FLAGS]


def test_glitch_and_rollback_need_a_null_delta(client, gw, engine):
    ms = [measurement(ts="2024-01-01T00:00:00.000Z", value="1", flags=["glitch"], delta="1"),
          measurement(ts="2024-01-01T01:00:00.000Z", value="2", flags=["rollback"], delta="1"),
          measurement(ts="2024-01-01T02:00:00.000Z", value="3", flags=["glitch"])]
    out = post(client, gw, batch(ms=ms, protocol_version="2")).json()["measurements"]
    assert [(o["outcome"], o.get("reason")) for o in out] == \
        [("rejected", "delta_not_null")] * 2 + [("stored", None)]


def test_delta_from_is_validated_and_stored_in_version_2(client, gw, engine):
    ts = "2024-01-03T00:00:00.000Z"
    ms = [measurement(ts=ts, value="10", flags=["gap"], delta="6",
                      delta_from="2024-01-01T00:00:00.000Z", seq=1),
          measurement(ts="2024-01-03T01:00:00.000Z", value="11", delta="1", delta_from=None,
                      seq=2),
          measurement(ts="2024-01-03T02:00:00.000Z", value="12", delta="1", seq=3),  # absent
          measurement(ts="2024-01-03T03:00:00.000Z", value="13", delta="1",
                      delta_from="2024-01-03T01:00:00Z", seq=4),
          measurement(ts="2024-01-03T04:00:00.000Z", value="14", delta=None,
                      flags=["counter_reset"], delta_from="2024-01-03T02:00:00.000Z", seq=5),
          measurement(ts="2024-01-03T05:00:00.000Z", value="15", delta="1",
                      delta_from="2024-01-03T06:00:00.000Z", seq=6),
          measurement(ts="2024-01-03T07:00:00.000Z", value="16", delta="1", delta_from=7, seq=7),
          measurement(ts="2024-01-03T08:00:00.000Z", value="17", delta="1",
                      delta_from="2024-01-03T08:00:00.000Z", seq=8)]  # equal: allowed
    out = post(client, gw, batch(ms=ms, protocol_version="2")).json()["measurements"]
    assert [(o["outcome"], o.get("reason")) for o in out] == [
        ("stored", None), ("stored", None), ("stored", None),
        ("rejected", "non_canonical_delta_from"), ("rejected", "delta_from_without_delta"),
        ("rejected", "delta_from_after_timestamp"), ("rejected", "wrong_type"),
        ("stored", None)]
    got = {r.timestamp.isoformat(): r.delta_from for r in rows(engine)}
    assert got["2024-01-03T00:00:00+00:00"].isoformat() == "2024-01-01T00:00:00+00:00"
    assert got["2024-01-03T01:00:00+00:00"] is None and got["2024-01-03T02:00:00+00:00"] is None


def test_delta_from_is_an_unknown_field_in_version_1(client, gw, engine):
    """Ignored as unknown fields are: not validated, not stored."""
    ms = [measurement(value="10", delta="1", delta_from="not a time")]
    out = post(client, gw, batch(ms=ms)).json()["measurements"]
    assert out[0]["outcome"] == "stored" and rows(engine)[0].delta_from is None


def test_a_revision_carries_delta_from(client, gw, engine):
    base = dict(ts="2024-01-03T00:00:00.000Z", value="10")
    post(client, gw, batch(ms=[measurement(**base, delta="6", flags=["gap"],
                                           delta_from="2024-01-01T00:00:00.000Z")],
                           protocol_version="2"))
    post(client, gw, batch(ms=[measurement(**base, delta="1", revision=2,
                                           delta_from="2024-01-02T23:00:00.000Z")],
                           protocol_version="2"))
    (row,) = rows(engine)
    assert (row.delta, list(row.flags), row.revision) == ("1", [], 2)
    assert row.delta_from.isoformat() == "2024-01-02T23:00:00+00:00"


def test_measurements_api_returns_delta_from(client, gw, engine, viewer):
    post(client, gw, batch(ms=[measurement(ts="2024-01-03T00:00:00.000Z", value="10", delta="6",
                                           flags=["gap"], delta_from="2024-01-01T00:00:00.000Z")],
                           protocol_version="2"))
    items = client.get("/api/v1/measurements", headers=headers(viewer)).json()["items"]
    assert items[0]["delta_from"] == "2024-01-01T00:00:00.000Z"


def test_errors_after_the_version_is_read_answer_in_it(client, gw):
    r = post(client, gw, batch(protocol_version="2", sent_at="yesterday"))
    assert r.status_code == 422 and r.json()["protocol_version"] == "2"
    r = post(client, gw, batch(protocol_version="3"))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_protocol_version"
    assert '"1" or "2"' in r.json()["detail"]
