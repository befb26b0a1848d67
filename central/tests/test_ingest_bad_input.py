"""Table-driven malformed input: whole-request errors (4xx, nothing changes) and bad records
(rejected with a reason while the good records of the same batch are stored)."""

from __future__ import annotations

import base64
import gzip
import zlib

import pytest

from central import accounts
from central.canonical import event_id
from central.jsonout import RawNumber
from central.tests.conftest import make_settings
from central.tests.helpers import batch, body, events, headers, measurement, raw_event, snapshot

SMALL = dict(max_body_bytes=64 * 1024, max_decompressed_bytes=256 * 1024, max_records=50)


@pytest.fixture(scope="module")
def small_app(migrated):
    from central.app import create_app
    app = create_app(make_settings(**SMALL))
    yield app
    app.state.engine.dispose()


@pytest.fixture
def small_client(small_app, engine):
    from fastapi.testclient import TestClient
    with TestClient(small_app) as c:
        yield c


def good_env(**over):
    raws, ms = events(2)
    return batch(raws=raws, ms=ms, **over)


def ok_body(**over):
    return body(good_env(**over))


J = "application/json"


def req(data=None, token="gw", ctype=J, encoding=None, auth=None):
    """A request description resolved by the test: token names a fixture token."""
    return {"data": ok_body() if data is None else data, "token": token, "ctype": ctype,
            "encoding": encoding, "auth": auth}


BOMB = gzip.compress(b" " * (SMALL["max_decompressed_bytes"] * 40))  # ~10 MiB of spaces -> ~10 KiB


def _truncated_gzip():
    return gzip.compress(ok_body())[:-12]


REQUEST_CASES = [
    # name, request, status, error code
    ("no-authorization", req(token=None), 401, "unauthorized"),
    ("basic-auth-scheme", req(auth="Basic Z3cxOnB3"), 401, "unauthorized"),
    ("unknown-token", req(auth="Bearer mgw_" + "A" * 43), 401, "unauthorized"),
    ("empty-bearer", req(auth="Bearer "), 401, "unauthorized"),
    ("overlong-token", req(auth="Bearer " + "x" * 5000), 401, "unauthorized"),
    ("rotated-old-token", req(token="rotated_old"), 401, "unauthorized"),
    ("revoked-gateway", req(token="revoked_gw"), 401, "unauthorized"),
    ("viewer-token-uploads", req(token="viewer"), 403, "wrong_token_kind"),
    ("other-gateways-batch", req(data=ok_body(gateway_id="gw2")), 403, "gateway_mismatch"),
    ("sql-looking-gateway-id", req(data=ok_body(gateway_id="gw1'; DROP TABLE raw_events;--")),
     403, "gateway_mismatch"),
    ("not-json", req(data=b"hello"), 400, "invalid_json"),
    ("empty-body", req(data=b""), 400, "invalid_json"),
    ("truncated-json", req(data=ok_body()[:-5]), 400, "invalid_json"),
    ("invalid-utf8", req(data=b'{"protocol_version":"1","gateway_id":"gw\xff"}'), 400, "invalid_utf8"),
    ("top-level-array", req(data=b"[]"), 400, "invalid_json"),
    ("nan-literal", req(data=ok_body().replace(b'"measurements":[', b'"x":NaN,"measurements":[')),
     400, "invalid_json"),
    ("deep-nesting", req(data=b"[" * 200000 + b"]" * 200000), 413, "payload_too_large"),
    ("deep-nesting-small", req(data=b'{"a":' * 10000 + b"1" + b"}" * 10000), 400, "invalid_json"),
    ("wrong-content-type", req(ctype="text/plain"), 400, "unsupported_content_type"),
    ("missing-content-type", req(ctype=None), 400, "unsupported_content_type"),
    ("gzip-header-plain-body", req(encoding="gzip"), 400, "bad_gzip"),
    ("gzip-truncated", req(data=_truncated_gzip(), encoding="gzip"), 400, "bad_gzip"),
    ("gzip-trailing-garbage", req(data=gzip.compress(ok_body()) + b"junk", encoding="gzip"),
     400, "bad_gzip"),
    ("deflate-not-gzip", req(data=zlib.compress(ok_body()), encoding="gzip"), 400, "bad_gzip"),
    ("unsupported-encoding", req(encoding="br"), 400, "unsupported_content_encoding"),
    ("gzip-bomb", req(data=BOMB, encoding="gzip"), 413, "payload_too_large"),
    ("body-over-limit", req(data=b" " * (SMALL["max_body_bytes"] + 1) + ok_body()), 413,
     "payload_too_large"),
    ("protocol-version-3", req(data=ok_body(protocol_version="3")), 400,
     "unsupported_protocol_version"),
    ("protocol-version-number-2", req(data=ok_body(protocol_version="2").replace(
        b'"protocol_version":"2"', b'"protocol_version":2')), 400, "unsupported_protocol_version"),
    ("protocol-version-number", req(data=ok_body().replace(b'"protocol_version":"1"',
                                                            b'"protocol_version":1')),
     400, "unsupported_protocol_version"),
    ("protocol-version-missing", req(data=ok_body().replace(b'"protocol_version":"1",', b"")),
     400, "unsupported_protocol_version"),
    ("gateway-id-missing", req(data=ok_body().replace(b'"gateway_id":"gw1",', b"")), 422,
     "invalid_envelope"),
    ("gateway-id-number", req(data=ok_body().replace(b'"gateway_id":"gw1"', b'"gateway_id":1')),
     422, "invalid_envelope"),
    ("buffer-id-missing", req(data=body({k: v for k, v in good_env().items() if k != "buffer_id"})),
     422, "invalid_envelope"),
    ("buffer-id-not-uuid", req(data=ok_body(buffer_id="buffer-1")), 422, "invalid_envelope"),
    ("sent-at-not-canonical", req(data=ok_body(sent_at="2024-01-01T09:00:05Z")), 422,
     "invalid_envelope"),
    ("raw-events-not-array", req(data=ok_body(raw_events={"seq": 1})), 422, "invalid_envelope"),
    ("measurements-missing", req(data=body({k: v for k, v in good_env().items()
                                            if k != "measurements"})), 422, "invalid_envelope"),
    ("backlog-wrong-type", req(data=ok_body(backlog=[1])), 422, "invalid_envelope"),
    ("backlog-negative", req(data=ok_body(backlog={"records": -1})), 422, "invalid_envelope"),
    ("too-many-records", req(data=body(batch(ms=[measurement(value=str(i)) for i in range(51)]))),
     413, "too_many_records"),
]


@pytest.fixture
def tokens(engine):
    t = {"gw": accounts.create(engine, "gateway", "gw1"),
         "gw2": accounts.create(engine, "gateway", "gw2"),
         "viewer": accounts.create(engine, "viewer", "ops")}
    t["rotated_old"] = accounts.create(engine, "gateway", "gw3")
    accounts.rotate(engine, "gateway", "gw3")
    t["revoked_gw"] = accounts.create(engine, "gateway", "gw4")
    accounts.revoke(engine, "gateway", "gw4")
    return t


def test_request_case_count():
    assert len(REQUEST_CASES) + len(RECORD_CASES) >= 40
    assert len({c[0] for c in REQUEST_CASES}) == len(REQUEST_CASES)


@pytest.mark.parametrize("name,request_,status,error", REQUEST_CASES,
                         ids=[c[0] for c in REQUEST_CASES])
def test_whole_request_error_changes_nothing(small_client, engine, tokens, name, request_, status,
                                             error):
    # something already stored, so "changes nothing" is checked against a non-empty database
    seed = small_client.post("/api/v1/ingest", content=body(batch(raws=[raw_event(99)])),
                             headers=headers(tokens["gw"]))
    assert seed.status_code == 200
    before = snapshot(engine)
    h = {}
    if request_["auth"] is not None:
        h["Authorization"] = request_["auth"]
    elif request_["token"] is not None:
        h["Authorization"] = f"Bearer {tokens[request_['token']]}"
    if request_["ctype"]:
        h["Content-Type"] = request_["ctype"]
    if request_["encoding"]:
        h["Content-Encoding"] = request_["encoding"]
    r = small_client.post("/api/v1/ingest", content=request_["data"], headers=h)
    assert r.status_code == status, r.text[:300]
    out = r.json()
    assert out["error"] == error and out["detail"], out
    if status == 413:
        assert isinstance(out["limit"], int) and str(out["limit"]) in out["detail"]
    if status == 401:
        assert r.headers.get("www-authenticate") == "Bearer"
    assert snapshot(engine) == before


# --- per-record errors -------------------------------------------------------------------------

def _m(**over):
    m = measurement(device="bad", ts="2024-06-01T00:00:00.000Z", value="3")
    m.update(over)
    return m


def _m_without(field):
    m = _m()
    del m[field]
    return m


def _m_refreshed(**fields):
    """A measurement whose event_id is recomputed from the (possibly odd) fields, so only the
    field under test is wrong."""
    m = _m()
    m.update(fields)
    m["event_id"] = event_id(m["device_id"], m["timestamp"], m["metric_type"], str(m["value"]))
    return m


SURROGATE = "\udc00"  # replaced by the JSON escape \udc00 in the request text
NUL = "NULMARK"       # replaced by the JSON escape \u0000

RECORD_CASES = [
    # name, kind, bad record, expected reason
    ("event-id-of-another-reading", "m", _m(event_id=measurement(value="4")["event_id"]),
     "event_id_mismatch"),
    ("event-id-uppercase", "m", _m(event_id=_m()["event_id"].upper()), "invalid_event_id"),
    ("event-id-short", "m", _m(event_id="abc"), "invalid_event_id"),
    ("event-id-number", "m", _m(event_id=RawNumber("12")), "wrong_type"),
    ("device-id-missing", "m", _m_without("device_id"), "missing_field"),
    ("device-id-number", "m", _m(device_id=RawNumber("7")), "wrong_type"),
    ("device-id-empty", "m", _m_refreshed(device_id=""), "invalid_string"),
    ("device-id-huge", "m", _m_refreshed(device_id="x" * 100_000), "too_long"),
    ("device-id-nul", "m", _m_refreshed(device_id="a" + NUL), "invalid_string"),
    ("device-id-lone-surrogate", "m", _m(device_id="a" + SURROGATE), "invalid_string"),
    ("value-trailing-zero", "m", _m_refreshed(value=RawNumber("3.0")), "non_canonical_value"),
    ("value-exponent", "m", _m_refreshed(value=RawNumber("3e0")), "non_canonical_value"),
    ("value-minus-zero", "m", _m_refreshed(value=RawNumber("-0")), "non_canonical_value"),
    ("value-as-string", "m", _m(value="3"), "wrong_type"),
    ("value-null", "m", _m(value=None), "wrong_type"),
    ("value-41-digits", "m", _m_refreshed(value=RawNumber("1" * 41)), "value_out_of_range"),
    ("value-step-too-fine", "m", _m_refreshed(value=RawNumber("0." + "0" * 40 + "1")),
     "value_out_of_range"),
    ("delta-non-canonical", "m", _m(delta=RawNumber("1.10")), "non_canonical_delta"),
    ("delta-as-string", "m", _m(delta="1"), "wrong_type"),
    ("delta-with-first-reading", "m", _m(delta=RawNumber("1"), flags=["first_reading"]),
     "delta_not_null"),
    ("unit-Wh", "m", _m(unit="Wh"), "wrong_unit"),
    ("unit-lowercase", "m", _m(unit="kwh"), "wrong_unit"),
    ("unit-of-other-metric", "m", _m(unit="kW"), "wrong_unit"),
    ("metric-unknown", "m", _m_refreshed(metric_type="voltage"), "unknown_metric_type"),
    ("flag-unknown", "m", _m(flags=["bogus"]), "unknown_flag"),
    ("flag-sql", "m", _m(flags=["'); DROP TABLE normalized_measurements;--"]), "unknown_flag"),
    ("flags-unsorted", "m", _m(flags=["out_of_order", "dst_gap"]), "flags_not_sorted"),
    ("flags-duplicated", "m", _m(flags=["dst_gap", "dst_gap"]), "flags_not_sorted"),
    ("flags-not-array", "m", _m(flags="dst_gap"), "wrong_type"),
    ("revision-zero", "m", _m(revision=0), "out_of_range"),
    ("revision-float", "m", _m(revision=RawNumber("1.0")), "wrong_type"),
    ("revision-string", "m", _m(revision="1"), "wrong_type"),
    ("revision-huge", "m", _m(revision=2**31), "out_of_range"),
    ("timestamp-no-millis", "m", _m_refreshed(timestamp="2024-06-01T00:00:00Z"),
     "non_canonical_timestamp"),
    ("timestamp-feb-30", "m", _m_refreshed(timestamp="2024-02-30T00:00:00.000Z"),
     "non_canonical_timestamp"),
    ("timestamp-offset", "m", _m_refreshed(timestamp="2024-06-01T02:00:00.000+02:00"),
     "non_canonical_timestamp"),
    ("raw-ref-missing", "m", _m_without("raw"), "missing_field"),
    ("raw-ref-bad-uuid", "m", _m(raw={"buffer_id": "x", "seq": 1}), "invalid_uuid"),
    ("measurement-not-object", "m", "just a string", "wrong_type"),
    ("seq-zero", "r", raw_event(0), "out_of_range"),
    ("seq-string", "r", dict(raw_event(5), seq="5"), "wrong_type"),
    ("seq-over-bigint", "r", raw_event(2**63), "out_of_range"),
    ("payload-not-base64", "r", raw_event(5, "not base64!"), "invalid_base64"),
    ("payload-no-padding", "r", raw_event(5, "YWI"), "invalid_base64"),
    ("payload-too-large", "r", raw_event(5, base64.b64encode(b"x" * 300_000).decode()),
     "too_long"),
    ("qos-3", "r", raw_event(5, qos=3), "out_of_range"),
    ("retained-string", "r", raw_event(5, retained="true"), "wrong_type"),
    ("dup-number", "r", raw_event(5, dup=0), "wrong_type"),
    ("received-at-bad", "r", raw_event(5, received_at="yesterday"), "non_canonical_received_at"),
    ("topic-huge", "r", raw_event(5, topic="t" * 5000), "too_long"),
    ("topic-missing", "r", {k: v for k, v in raw_event(5).items() if k != "topic"}, "missing_field"),
    ("decode-error-number", "r", raw_event(5, decode_error=RawNumber("1")), "wrong_type"),
    ("raw-not-object", "r", [1, 2], "wrong_type"),
]


@pytest.mark.parametrize("name,kind,bad,reason", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_bad_record_rejected_good_ones_stored(client, gw, engine, name, kind, bad, reason):
    good_raws = [raw_event(1), raw_event(2)]
    good_ms = [measurement(device="ok", value="1", seq=1), measurement(device="ok", value="2", seq=2)]
    if kind == "m":
        env = batch(raws=good_raws, ms=[good_ms[0], bad, good_ms[1]])
    else:
        env = batch(raws=[good_raws[0], bad, good_raws[1]], ms=good_ms)
    from central.jsonout import dumps
    text = dumps(env).replace(SURROGATE, "\\udc00").replace(NUL, "\\u0000")
    r = client.post("/api/v1/ingest", content=text.encode("utf-8"), headers=headers(gw))
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    key = "measurements" if kind == "m" else "raw_events"
    assert [o["outcome"] for o in out[key]] == ["stored", "rejected", "stored"]
    rejected = out[key][1]
    assert rejected["index"] == 1 and rejected["reason"] == reason and rejected["detail"]
    other = "raw_events" if kind == "m" else "measurements"
    assert [o["outcome"] for o in out[other]] == ["stored", "stored"]
    snap = snapshot(engine)
    assert [row[2] for row in snap["raw"]] == [1, 2]
    assert sorted(row[5] for row in snap["measurements"]) == ["1", "2"]


def test_sql_looking_strings_are_just_data(client, gw, engine):
    evil = "x'); DROP TABLE normalized_measurements;--"
    env = batch(raws=[raw_event(1, b"'; DELETE FROM raw_events;--", topic=evil, decode_error=evil)],
                ms=[measurement(device=evil)])
    r = client.post("/api/v1/ingest", content=body(env), headers=headers(gw))
    assert [o["outcome"] for o in r.json()["measurements"]] == ["stored"]
    snap = snapshot(engine)
    assert snap["measurements"][0][2] == evil and snap["raw"][0][3] == evil
