"""central/ingest_json.py, the bounded reader (issue #16, item 2): the same batch as Python's
json module for every body both accept, nothing built that the checks do not look at."""

from __future__ import annotations

import dataclasses
import gzip
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central import ingest_validate as validate
from central.errors import ApiError
from central.ingest_body import _DECODER, decode_body, full_parse_is_cheap
from central.ingest_json import SKIPPED, read_envelope
from central.settings import Settings
from central.tests.fuzzing import ROUND
from central.jsonout import dumps
from central.tests.helpers import batch, events, headers, measurement, raw_event
from central.tests.test_fuzz_ingest import LIMITS, request_bodies

SETTINGS = Settings(database_url="postgresql://unused/x_test", **LIMITS)
BOUNDED = (SETTINGS.max_records, SETTINGS.max_payload_bytes)


def _outcome(decoded):
    """What the checks make of a decoded body: the batch, or the whole-request error."""
    try:
        validate.check_protocol_version(decoded)
        b = validate.parse_envelope(decoded, SETTINGS, "gw1")
    except ApiError as exc:
        return ("error", exc.status, exc.error)
    return ("batch", [dataclasses.astuple(r) for r in b.raw_events],
            [dataclasses.astuple(m) for m in b.measurements],
            [(i, echo, reason) for i, echo, reason, _ in b.rejected_raw],
            [(i, e, r, reason) for i, e, r, reason, _ in b.rejected_measurements])


def _both(data: bytes):
    try:
        full = ("ok", _DECODER.decode(data.decode("utf-8")))
    except RecursionError:
        return None  # deeper than Python's decoder goes: only the bounded reader reads it
    except (ValueError, UnicodeDecodeError):
        full = ("invalid",)
    try:
        bounded = ("ok", read_envelope(data, *BOUNDED))
    except ApiError as exc:
        assert exc.status == 400 and exc.error in ("invalid_json", "invalid_utf8")
        bounded = ("invalid",)
    return full, bounded


@ROUND
@given(request_bodies())
def test_bounded_reader_gives_the_same_batch(case):
    data, zipped, _, _ = case
    if zipped:
        data = gzip.decompress(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return  # refused before either reader runs
    both = _both(data)
    if both is None:
        return
    full, bounded = both
    assert full[0] == bounded[0], (full, bounded)
    if full[0] == "ok":
        assert _outcome(full[1]) == _outcome(bounded[1])


def test_bounded_reader_walking_every_record_gives_the_same_batch():
    """The same comparison with small records walked too, not handed to Python's decoder."""
    import central.ingest_json as reader
    saved = reader.RECORD_DECODE_VALUES
    reader.RECORD_DECODE_VALUES = -1
    try:
        test_bounded_reader_gives_the_same_batch()
    finally:
        reader.RECORD_DECODE_VALUES = saved


@pytest.mark.parametrize("text", [b"", b" ", b"{", b"}", b"[1,]", b'{"a":1,}', b'{"a" 1}', b"01",
                                  b"[01]", b"-", b"1.", b".5", b"1e", b"NaN", b"[Infinity]",
                                  b'"\\x"', b'"a\x01"', b"\xef\xbb\xbf{}", b"{} {}", b"[] x",
                                  b'{"a":[1 2]}', b'{"a":{"b"}}', b"tru", b"nul", b'{1:2}',
                                  b'{"raw_events":[{"seq":1,}]}', b'{"raw_events":[1,]}'])
def test_not_json_is_refused_like_the_json_module(text):
    with pytest.raises(ValueError):
        _DECODER.decode(text.decode("utf-8"))
    with pytest.raises(ApiError) as exc:
        read_envelope(text, *BOUNDED)
    assert exc.value.error == "invalid_json"


def test_nothing_is_built_for_values_no_check_reads():
    """[0,0,...] in an unknown member, [[],...] in a record field, 100 records over the limit:
    the old parse built ~60-120 bytes per value (a 4 MiB body of zeros took ~230 MiB)."""
    size = 2 * 1024 * 1024
    zeros = ",".join(["0"] * (size // 2))
    lists = ",".join(["[]"] * (size // 3))
    records = ",".join(["{}"] * (SETTINGS.max_records + 100))
    text = ('{"protocol_version":"1","x":[%s],"raw_events":[{"seq":1,"topic":[%s]}],'
            '"measurements":[%s]}' % (zeros, lists, records)).encode()
    del zeros, lists
    assert not full_parse_is_cheap(text)
    tracemalloc.start()
    try:
        decoded = read_envelope(text, *BOUNDED)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
    assert decoded["raw_events"] == [{"seq": "1", "topic": SKIPPED}]
    assert decoded["measurements"].over and len(decoded["measurements"]) == SETTINGS.max_records


def test_long_strings_are_cut_not_built():
    topic = "a" * (8 * 1024 * 1024) + "\U0001F600"  # 4 bytes per character in a Python str
    text = dumps(batch(raws=[raw_event(1, topic=topic)])).encode()
    tracemalloc.start()
    try:
        decoded = read_envelope(text, *BOUNDED)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
    assert len(decoded["raw_events"][0]["topic"]) == 4097  # still too long for the check


def test_deep_value_in_a_record_rejects_that_record_only(client, gw):
    """Nested deeper than Python's decoder goes, inside one record's field: that record is
    rejected (wrong_type); before, the whole batch was a 400 invalid_json, sent again forever."""
    raws, ms = events(2)
    raws[1]["topic"] = "DEEP"
    text = dumps(batch(raws=raws, ms=ms)).replace('"DEEP"', "[" * 990 + "]" * 990)
    r = client.post("/api/v1/ingest", content=text.encode(), headers=headers(gw))
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert [o["outcome"] for o in out["raw_events"]] == ["stored", "rejected"]
    assert out["raw_events"][1]["reason"] == "wrong_type"
    assert [o["outcome"] for o in out["measurements"]] == ["stored", "stored"]


def test_too_deep_anywhere_is_invalid_json():
    with pytest.raises(ApiError) as exc:
        read_envelope(b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}", *BOUNDED)
    assert exc.value.error == "invalid_json"
    assert read_envelope(b'{"x":' + b"[" * 998 + b"]" * 998 + b"}", *BOUNDED) == {}


def test_exact_numbers_and_strings_through_the_bounded_reader():
    m = measurement(device="d\\\"\u00e9\U0001F600", value="10172.887")
    text = dumps(batch(ms=[m])).encode()
    full = _DECODER.decode(text.decode())
    bounded = read_envelope(text, *BOUNDED)
    assert bounded == full
    assert bounded["measurements"][0]["value"] == "10172.887"
    assert decode_body(gzip.compress(text), "gzip", 1 << 20, bounded=BOUNDED) == full


def test_flags_beyond_those_kept_still_decide_the_reason():
    base = measurement()
    for extra, reason in (('"bogus"', "unknown_flag"), ("1", "wrong_type"),
                          ('"dst_gap"', "flags_not_sorted")):
        flags = ",".join(['"dst_gap"'] * 70 + [extra])
        text = dumps(batch(ms=[base])).replace('"flags":[]', '"flags":[%s]' % flags).encode()
        b = validate.parse_envelope(read_envelope(text, *BOUNDED), SETTINGS, "gw1")
        assert b.rejected_measurements[0][3] == reason
        b = validate.parse_envelope(_DECODER.decode(text.decode()), SETTINGS, "gw1")
        assert b.rejected_measurements[0][3] == reason


def test_raw_events_are_stored_a_few_mib_per_statement(client, gw, engine):
    """Payloads of 2.4 MiB in all go in three statements (1 MiB of payload text each); outcomes
    and rows are as for one statement, a repeated seq still a duplicate of its first."""
    from central.ingest_store import RAW_CHUNK_BYTES
    from central.tests.helpers import body, snapshot
    payloads = [bytes([65 + i]) * (200 * 1024) for i in range(12)]
    raws = [raw_event(i + 1, p) for i, p in enumerate(payloads)] + [raw_event(3, b"again")]
    assert sum(len(r["payload"]) for r in raws) > 2 * RAW_CHUNK_BYTES
    r = client.post("/api/v1/ingest", content=body(batch(raws=raws)), headers=headers(gw))
    assert [o["outcome"] for o in r.json()["raw_events"]] == ["stored"] * 12 + ["duplicate"]
    rows = snapshot(engine)["raw"]
    assert [row[2] for row in rows] == list(range(1, 13))
    assert [bytes(row[4]) for row in rows] == payloads
