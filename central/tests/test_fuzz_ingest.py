"""Structure-aware fuzzing of POST /api/v1/ingest (issue #16, item 1): zero 5xx.

Batches start valid (helpers.events) and hypothesis mutates them where a gateway, a buggy
meter or anyone publishing to a site's broker could: any envelope or record field replaced,
removed or duplicated, by JSON of any type, numbers spelled every way, strings with NUL, escaped
lone surrogates, control and non-ASCII characters, values nested hundreds or thousands of levels
deep, and payloads (base64 of JSON nested deep with surrogates, random bytes, sizes at the
limit); bodies gzipped or not, truncated, or with bytes flipped. Every answer must be < 500;
a 200 must give one outcome per record, in order, with a reason for each rejection.
Against the real app and PostgreSQL; brief in every suite run, long with CENTRAL_FUZZ_SECONDS
(central/tests/fuzz.sh).
"""

from __future__ import annotations

import base64
import gzip

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from central import accounts
from central.app import create_app
from central.jsonout import RawNumber, dumps
from central.tests.conftest import make_settings
from central.tests.fuzzing import ROUND, Tally, budget_seconds, run_for
from central.tests.helpers import batch, events, headers, new_buffer

LIMITS = dict(max_body_bytes=1024 * 1024, max_decompressed_bytes=2 * 1024 * 1024,
              max_records=50, max_payload_bytes=4096)
OUTCOMES = {"stored", "duplicate", "superseded", "rejected"}

# JSON fragments written verbatim (RawNumber is "text already JSON").
ESCAPES = ['"\\ud800"', '"\\udc00"', '"a\\ud83d"', '"\\ud83d\\ude00"', '"\\u0000"', '"a\\u0000b"',
           '"\\\\ud800"', '"\\ud800\\u0041"', '"\\u001f"', '"\\/"', '"\\b\\f\\n\\r\\t"']
NUMBERS = ["0", "-0", "1", "-1", "1.0", "1.50", "1e3", "1E+3", "1.5e-7", "0.0000001",
           "9223372036854775807", "9223372036854775808", "2147483648", "1" * 41, "1" * 5000,
           "0." + "0" * 40 + "1", "1e999999999", "-1e-999999999", "123456789.123456789"]


def _deep(depth: int, leaf: str, kind: str) -> str:
    if kind == "array":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


def json_fragments() -> st.SearchStrategy:
    scalar = st.one_of(
        st.none(), st.booleans(), st.text(max_size=30),
        st.sampled_from(ESCAPES + NUMBERS).map(RawNumber),
        st.integers(min_value=-2**80, max_value=2**80).map(lambda n: RawNumber(str(n))),
        st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: RawNumber(str(d))
                                                                 if "E" not in str(d) else "x"),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=200, max_size=2000),
    )
    deep = st.builds(_deep, st.sampled_from([2, 100, 600, 900, 990, 1100]),
                     st.sampled_from(ESCAPES + ["1", "null", "[]"]),
                     st.sampled_from(["array", "object"])).map(RawNumber)
    nested = st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12)
    return st.one_of(scalar, deep, nested)


def payloads(limit: int) -> st.SearchStrategy:
    json_payload = st.builds(
        lambda depth, leaf, kind: _deep(depth, leaf, kind).encode(),
        st.integers(0, 2000), st.sampled_from(ESCAPES + ['"x"', "1e99999", "-0", "1" * 1200]),
        st.sampled_from(["array", "object"]))
    return st.one_of(
        st.binary(max_size=64), json_payload,
        st.sampled_from([limit - 1, limit, limit + 1, limit + 2, limit + 3]).map(lambda n: b"x" * n),
        st.sampled_from([b"\xef\xbb\xbf{}", b"\xed\xa0\x80", b'{"a":NaN}', b'{"a":1,"a":2}',
                         b'"\\u0000"', b"[1e309]", b"{}\n"]))


FIELDS = {
    "envelope": ["protocol_version", "gateway_id", "buffer_id", "sent_at", "backlog",
                 "raw_events", "measurements", "extra"],
    "raw": ["seq", "topic", "payload", "qos", "retained", "dup", "received_at", "decode_error",
            "extra"],
    "measurement": ["event_id", "device_id", "metric_type", "timestamp", "value", "unit", "delta",
                    "flags", "revision", "raw", "delta_from", "extra"],
}


@st.composite
def request_bodies(draw) -> tuple[bytes, bool, int, int]:
    """(body as sent, gzip?, raw records, measurements) of one mutated batch."""
    n = draw(st.integers(0, 4))
    start = draw(st.integers(1, 10**6))
    raws, ms = events(n, start=start, buffer_id=new_buffer())
    raws = [dict(r) for r in raws]
    for r in raws:
        if draw(st.booleans()):
            payload = draw(payloads(LIMITS["max_payload_bytes"]))
            r["payload"] = base64.b64encode(payload).decode()
    env = batch(raws=raws, ms=ms, buffer_id=new_buffer())
    fragments = json_fragments()
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.sampled_from(["envelope", "raw", "measurement", "record"]))
        if where == "record":  # a whole record replaced by any JSON
            name = draw(st.sampled_from(["raw_events", "measurements"]))
            if isinstance(env.get(name), list) and env[name]:
                env[name][draw(st.integers(0, len(env[name]) - 1))] = draw(fragments)
            continue
        if where == "envelope":
            target = env
        else:
            name = "raw_events" if where == "raw" else "measurements"
            items = env.get(name)
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                continue
            target = items[draw(st.integers(0, len(items) - 1))]
            if not isinstance(target, dict):
                continue
        field = draw(st.sampled_from(FIELDS[where]))
        action = draw(st.sampled_from(["replace", "replace", "delete"]))
        if action == "delete":
            target.pop(field, None)
        else:
            target[field] = draw(fragments)
    text = dumps(env)
    if draw(st.integers(0, 9)) == 0:  # a duplicated key: the later one wins
        text = text.replace('"measurements":', '"measurements":[],"measurements":', 1)
    data = text.encode("utf-8", "surrogatepass")
    raw_count = len(env["raw_events"]) if isinstance(env.get("raw_events"), list) else -1
    m_count = len(env["measurements"]) if isinstance(env.get("measurements"), list) else -1
    mangle = draw(st.integers(0, 19))
    if mangle < 2 and data:  # the counts above no longer say what the body holds
        raw_count = m_count = -1
        if mangle == 0:
            data = data[:draw(st.integers(0, len(data) - 1))]
        else:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    zipped = draw(st.booleans())
    if zipped:
        data = gzip.compress(data, compresslevel=1)
    return data, zipped, raw_count, m_count


@pytest.fixture(scope="module")
def fuzz_app(migrated):
    app = create_app(make_settings(**LIMITS))
    yield app
    app.state.engine.dispose()


def check_answer(r, raw_count: int, m_count: int) -> None:
    assert r.status_code < 500, r.text[:500]
    if r.status_code != 200:
        assert r.json()["error"], r.text[:300]
        return
    out = r.json()
    for key, count in (("raw_events", raw_count), ("measurements", m_count)):
        items = out[key]
        if count >= 0:
            assert len(items) == count
        assert [o["index"] for o in items] == list(range(len(items)))
        for o in items:
            assert o["outcome"] in OUTCOMES
            assert (o["outcome"] == "rejected") == ("reason" in o)


def test_fuzz_ingest(fuzz_app, engine):
    token = accounts.create(engine, "gateway", "gw1")
    tally = Tally("ingest fuzz")
    client = TestClient(fuzz_app, raise_server_exceptions=False)

    @ROUND
    @given(request_bodies())
    def one_batch(case):
        data, zipped, raw_count, m_count = case
        r = client.post("/api/v1/ingest", content=data, headers=headers(token, zipped))
        tally.add(r.status_code)
        if r.status_code == 200:
            for o in r.json()["raw_events"] + r.json()["measurements"]:
                tally.add(o.get("reason", o["outcome"]))
        check_answer(r, raw_count, m_count)

    with client:
        run_for(budget_seconds(), one_batch)
    print(tally.report())
    assert tally.counts[200] > 0
    assert not any(isinstance(k, int) and k >= 500 for k in tally.counts)
