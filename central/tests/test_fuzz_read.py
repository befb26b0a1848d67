"""Fuzzing the read API (issue #16, item 3): no query answers 5xx.

Every endpoint and parameter gets hostile and edge values: NUL and control characters, invalid
UTF-8, forged and truncated cursors, extreme limits and dates, every supported year's first and
last day in several zones, and NUL in static file paths. Hypothesis runs against the real app
on the real PostgreSQL (TestClient, server exceptions turned into 500 responses); the database
holds readings at both ends of the supported range and ids with newlines and non-ASCII text.
Brief in every suite run; long with CENTRAL_FUZZ_SECONDS (central/tests/fuzz.sh).
"""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from central import accounts
from central.app import create_app
from central.canonical import FLAGS
from central.tests.conftest import make_settings
from central.tests.fuzzing import ROUND, Tally, budget_seconds, run_for
from central.tests.helpers import BUFFER, batch, body, headers, measurement, raw_event

ZONES = ["UTC", "Europe/Berlin", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/St_Johns",
         "Asia/Kathmandu", "Australia/Lord_Howe", "America/Sao_Paulo"]
# Devices the listing must page through; one id holds a newline, which the protocol allows.
DEVICES = ["a", "line\nbreak", "line", "ümlaut-☃", "z\tz", "z" * 256]


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


FORGED_CURSORS = ["", "=", "====", "!!!", "\x00", _b64(b"x"), _b64(b"x\ny"), _b64(b"x\ny\nz"),
                  _b64(b"not a time\nabc"), _b64(b"0001-01-01T00:00:00+00:00\n"),
                  _b64(b"10000-01-01T00:00:00+00:00\nab"), _b64(b"-infinity\nab"),
                  _b64(b"2024-01-01T00:00:00+00:00\x00\nab"), _b64(b"\xff\xfe\nab"),
                  _b64(b"\x00\n\x00"), _b64(b"a\n\x00"), _b64(b"2024-13-45\nx"), "a" * 10000]
EDGE_TIMES = ([f"{y:04d}-01-01T00:00:00Z" for y in (1, 2, 1969, 1970, 2038, 9998, 9999)]
              + [f"{y:04d}-12-31T23:59:59.999999Z" for y in (1, 1970, 9999)]
              + ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0000-01-01T00:00:00Z",
                 "10000-01-01T00:00:00Z", "2024-01-01", "2024-01-01T00:00:00", "2024-02-30T00:00:00Z",
                 "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00-23:59", "infinity", "epoch",
                 "2024-01-01T00:00:00.0000000001Z", "2024-01-01 00:00:00Z", "+002024-01-01T00:00:00Z"])
NUMBERS = ["0", "1", "-1", "5000", "5001", "10000", "10001", "2147483647", "2147483648",
           "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e3", "1.5",
           "NaN", "Infinity", "1" * 5000, " 1", "0x10"]
WORDS = (["", "\x00", "a\x00b", "\x01\x02\x7f", "\n", "\r\n", "%", "%00", "'", "\"", "\\",
          "true", "false", "null", "hour", "day", "week", "energy", "power", "gw1", BUFFER,
          "../../etc/passwd", "posixrules", "Factory", "EST5EDT", "Etc/GMT+12", "/etc/localtime",
          "UTC\x00", "Europe/../UTC", "a" * 70, "ü"] + ZONES + sorted(FLAGS) + DEVICES
         + FORGED_CURSORS + EDGE_TIMES + NUMBERS)


def _raw_bytes():
    return st.binary(max_size=40)


VALUES = st.one_of(
    st.sampled_from(WORDS).map(lambda w: w.encode("utf-8", "surrogatepass")),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    _raw_bytes(),
    st.integers(min_value=-2**70, max_value=2**70).map(lambda n: str(n).encode()),
    st.tuples(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31), st.sampled_from(
        ["Z", "+14:00", "-12:00", "+05:45", ""])).map(
        lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T00:00:00{t[3]}".encode()),
)

ENDPOINTS = {
    "/healthz": [],
    "/api/v1/gateways": [],
    "/api/v1/devices": ["limit", "cursor"],
    "/api/v1/measurements": ["device_id", "metric_type", "from", "to", "flag", "flagged",
                             "gateway_id", "limit", "cursor"],
    "/api/v1/raw_event": ["gateway_id", "buffer_id", "seq"],
    "/api/v1/consumption": ["device_id", "metric_type", "from", "to", "bucket", "tz"],
    "/api/v1/flag_counts": ["from", "to", "bucket", "tz", "gateway_id", "device_id",
                            "metric_type"],
    "/device": ["device_id"],
    "/": [],
}


def _query(params: list[tuple[str, bytes]]) -> str:
    return "&".join(urllib.parse.quote(k, safe="") + "=" + urllib.parse.quote_from_bytes(v, safe="")
                    for k, v in params)


@pytest.fixture(scope="module")
def read_app(migrated, tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    (dist / "assets").mkdir()
    (dist / "assets" / "app.js").write_text("console.log(1)\n" * 200)
    (dist / "index.html").write_text("<!doctype html><title>t</title>")
    app = create_app(make_settings(web_dist=str(dist)))
    yield app
    app.state.engine.dispose()


@pytest.fixture
def populated(read_app, engine):
    """Readings at both ends of the supported range, odd device ids; returns viewer token and
    real cursors of every paged listing (to be truncated and mixed by the fuzzer)."""
    gw = accounts.create(engine, "gateway", "gw1")
    viewer = accounts.create(engine, "viewer", "ops")
    ms = []
    for i, device in enumerate(DEVICES):
        for j, ts in enumerate(["0001-01-01T00:00:00.000Z", "2024-03-31T01:30:00.000Z",
                                "9999-12-31T23:59:59.999Z"]):
            ms.append(measurement(device=device, ts=ts, value=f"{i}.{j}5", seq=1,
                                  flags=["first_reading"] if j == 0 else ["suspicious_jump"],
                                  delta=None if j == 0 else "1.5"))
    with TestClient(read_app) as client:
        r = client.post("/api/v1/ingest", content=body(batch(raws=[raw_event(1)], ms=ms)),
                        headers=headers(gw))
        assert r.status_code == 200
        assert {o["outcome"] for o in r.json()["measurements"]} == {"stored"}
        cursors = []
        for path in ("/api/v1/devices", "/api/v1/measurements"):
            page = client.get(path + "?limit=1", headers={"Authorization": f"Bearer {viewer}"})
            cursors.append(page.json()["next_cursor"])
    return viewer, cursors


def test_devices_listing_pages_through_every_id(read_app, populated):
    """A device_id with a newline broke the cursor (it was joined with newlines): every
    device after it vanished from the fleet page."""
    viewer, _ = populated
    seen, cursor = [], None
    with TestClient(read_app, raise_server_exceptions=False) as client:
        for _ in range(2 * len(DEVICES) + 2):
            query = "limit=1" + (f"&cursor={cursor}" if cursor else "")
            r = client.get(f"/api/v1/devices?{query}",
                           headers={"Authorization": f"Bearer {viewer}"})
            assert r.status_code == 200, r.text[:300]
            seen += [item["device_id"] for item in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    assert sorted(seen) == sorted(DEVICES)  # each once, none hidden behind another


def test_measurements_listing_pages_through_every_reading(read_app, populated):
    viewer, _ = populated
    seen, cursor = 0, None
    with TestClient(read_app, raise_server_exceptions=False) as client:
        while True:
            query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
            r = client.get(f"/api/v1/measurements?{query}",
                           headers={"Authorization": f"Bearer {viewer}"})
            assert r.status_code == 200, r.text[:300]
            seen += len(r.json()["items"])
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    assert seen == 3 * len(DEVICES)


@pytest.mark.parametrize("tz", ZONES[:4] if budget_seconds() < 60 else ZONES)
def test_first_and_last_day_of_every_supported_year(read_app, populated, tz):
    """Buckets at the first or last supported year answered 500. Every year 1..9999, its first
    and last day, hourly and daily, in this zone: never 5xx. (Day buckets over the whole
    range in one query would be > 10,000 buckets; each query asks for one or two days.)"""
    viewer, _ = populated
    auth = {"Authorization": f"Bearer {viewer}"}
    years = list(range(1, 10000))
    if budget_seconds() < 60:  # the brief pass: the edges and a few, not all 9,999 years
        years = [1, 2, 1970, 2024, 9998, 9999]
    combos = [(path, bucket, offset) for path in ("/api/v1/consumption?device_id=a&",
                                                  "/api/v1/flag_counts?")
              for bucket in ("day", "hour") for offset in ("Z", "+14:00", "-12:00")]
    with TestClient(read_app, raise_server_exceptions=False) as client:
        for year in years:
            last_end = f"{year + 1:04d}-01-01T00:00:00" if year < 9999 else "9999-12-31T23:59:59"
            for start, end in ((f"{year:04d}-01-01T00:00:00", f"{year:04d}-01-02T00:00:00"),
                               (f"{year:04d}-12-31T00:00:00", last_end)):
                # the brief pass asks every combination; the long one takes turns over years
                for path, bucket, offset in (combos if len(years) < 100
                                             else [combos[year % len(combos)]]):
                    q = _query([("from", (start + offset).encode()),
                                ("to", (end + offset).encode()),
                                ("bucket", bucket.encode()), ("tz", tz.encode())])
                    r = client.get(path + q, headers=auth)
                    assert r.status_code < 500, (path + q, r.text[:300])


def test_static_paths_with_nul_and_traversal(read_app):
    with TestClient(read_app, raise_server_exceptions=False) as client:
        for path in ["/assets/%00", "/assets/app.js%00", "/assets/a%00b", "/assets/%2e%2e/index.html",
                     "/assets/..%2f..%2fetc%2fpasswd", "/assets/%ff", "/assets/" + "a" * 5000,
                     "/assets/app.js/x", "/assets//", "/device?device_id=%00", "/%00"]:
            r = client.get(path)
            assert r.status_code < 500, (path, r.text[:300])
        assert client.get("/assets/app.js").status_code == 200


def test_fuzz_every_endpoint(read_app, populated):
    viewer, cursors = populated
    tally = Tally("read API fuzz")
    extra_words = [c.encode() for c in cursors if c] + [c[:n].encode() for c in cursors if c
                                                         for n in (1, 5, len(c) // 2, len(c) - 1)]
    values = st.one_of(VALUES, st.sampled_from(extra_words)) if extra_words else VALUES
    client = TestClient(read_app, raise_server_exceptions=False)

    @ROUND
    @given(path=st.sampled_from(sorted(ENDPOINTS)), data=st.data())
    def one_query(path, data):
        names = ENDPOINTS[path] + ["unknown", "limit"]
        params = data.draw(st.lists(st.tuples(st.sampled_from(names), values), max_size=6))
        auth = data.draw(st.sampled_from([f"Bearer {viewer}", None, "Bearer \x01", "Bearer x"]))
        h = {"Authorization": auth} if auth else {}
        r = client.get(path + "?" + _query(params), headers=h)
        tally.add(r.status_code)
        assert r.status_code < 500, (path, params, r.text[:300])

    with client:
        run_for(budget_seconds(), one_query)
    print(tally.report())
    assert not any(isinstance(k, int) and k >= 500 for k in tally.counts)


def test_nul_and_forged_cursors_are_4xx(read_app, populated):
    """Each of these was a 500: NUL reached psycopg2, a forged cursor's time reached SQL."""
    viewer, _ = populated
    auth = {"Authorization": f"Bearer {viewer}"}
    with TestClient(read_app, raise_server_exceptions=False) as client:
        for path in ["/api/v1/measurements?device_id=%00", "/api/v1/measurements?gateway_id=a%00",
                     "/api/v1/raw_event?gateway_id=%00&buffer_id=" + BUFFER + "&seq=1",
                     "/api/v1/consumption?device_id=%00&from=2024-01-01T00:00:00Z"
                     "&to=2024-01-02T00:00:00Z",
                     "/api/v1/measurements?cursor=" + _b64(b"not a time\nabc"),
                     "/api/v1/measurements?cursor=" + _b64(b'["not a time","abc"]'),
                     "/api/v1/measurements?cursor=" + _b64(b'["2024-01-01T00:00:00","abc"]'),
                     "/api/v1/devices?cursor=" + _b64(b'["a\\u0000","energy"]'),
                     "/api/v1/devices?cursor=" + _b64(b'["a",1]'),
                     "/api/v1/devices?cursor=" + _b64(b"[" * 5000)]:
            r = client.get(path, headers=auth)
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
