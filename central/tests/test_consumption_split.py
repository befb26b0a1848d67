"""Energy classes per bucket: trusted, flagged and estimated energy, gap deltas spread pro rata
to time over (delta_from, timestamp] with exact decimals (central/consumption_split.py and
GET /api/v1/consumption)."""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import random

from central.consumption_split import GapDelta, estimated_per_bucket, spread
from central.tests.helpers import batch, body, headers, measurement

D = decimal.Decimal
UTC = dt.timezone.utc


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def hours(first: str, n: int):
    start = t(first)
    return [(start + dt.timedelta(hours=i), start + dt.timedelta(hours=i + 1)) for i in range(n)]


def test_equal_hours_get_equal_shares_and_the_last_the_remainder():
    gap = GapDelta(t("2024-01-01T03:00:00"), t("2024-01-01T00:00:00"), D("1"))
    assert estimated_per_bucket([gap], hours("2024-01-01T00:00:00", 4)) == [
        D("0.333333333"), D("0.333333333"), D("0.333333334"), None]


def test_pro_rata_to_time_from_a_point_inside_a_bucket():
    gap = GapDelta(t("2024-01-01T00:30:00"), t("2023-12-31T22:00:00"), D("5"))
    # 2.5 hours: 2/2.5, 0.5/2.5 ... by hour [22, 23), [23, 00), [00, 01)
    assert estimated_per_bucket([gap], hours("2023-12-31T22:00:00", 3)) == [D("2"), D("2"), D("1")]


def test_without_delta_from_the_whole_delta_stays_in_its_own_bucket():
    buckets = hours("2024-01-01T00:00:00", 3)
    for delta_from in (None, t("2024-01-01T01:30:00")):  # null, or equal to the timestamp
        gap = GapDelta(t("2024-01-01T01:30:00"), delta_from, D("7.5"))
        assert estimated_per_bucket([gap], buckets) == [None, D("7.5"), None]


def test_a_reading_on_a_bucket_boundary_leaves_the_next_bucket_empty():
    gap = GapDelta(t("2024-01-01T02:00:00"), t("2024-01-01T00:00:00"), D("4"))
    assert estimated_per_bucket([gap], hours("2024-01-01T00:00:00", 3)) == [D("2"), D("2"), None]


def test_shares_of_part_of_the_interval_are_those_of_the_whole():
    gap = GapDelta(t("2024-01-05T07:13:00.123"), t("2024-01-01T00:00:00.001"), D("100.001"))
    whole = hours("2023-12-31T23:00:00", 5 * 24 + 10)
    by_whole = estimated_per_bucket([gap], whole)
    assert sum(x for x in by_whole if x is not None) == D("100.001")
    part = whole[30:50]
    assert estimated_per_bucket([gap], part) == by_whole[30:50]


def test_random_gaps_sum_exactly_and_stay_pro_rata():
    rng = random.Random(14)
    for _ in range(300):
        start = t("2024-01-01T00:00:00") + dt.timedelta(milliseconds=rng.randrange(10**8))
        length = dt.timedelta(milliseconds=rng.randrange(1, 10**9))
        delta = D(rng.choice(["1", "0.001", "12345.678", "-3.5", "99999999999999.999999",
                              "0." + "0" * 30 + "7", str(rng.randrange(1, 10**6))]))
        gap = GapDelta(start + length, start, delta)
        edges = sorted({start - dt.timedelta(hours=1), start + length + dt.timedelta(hours=1)} |
                       {start + length * rng.random() for _ in range(rng.randrange(0, 30))})
        buckets = list(zip(edges, edges[1:]))
        parts = spread(gap, buckets)
        assert sum(parts.values()) == delta  # conserved, exactly
        quantum = fractions.Fraction(1, 10**max(9, -delta.as_tuple().exponent))
        total_us = length // dt.timedelta(microseconds=1)
        for i, part in parts.items():
            s, e = buckets[i]
            overlap = (min(e, gap.timestamp) - max(s, start)) // dt.timedelta(microseconds=1)
            exact = fractions.Fraction(delta) * overlap / total_us
            assert abs(fractions.Fraction(part) - exact) <= 2 * quantum


# --- through the API ------------------------------------------------------------------------

def post(client, token, ms, version="2"):
    r = client.post("/api/v1/ingest", content=body(batch(ms=ms, protocol_version=version)),
                    headers=headers(token))
    assert r.status_code == 200, r.text
    assert {o["outcome"] for o in r.json()["measurements"]} == {"stored"}, r.text


def m(ts, value, delta=None, flags=(), **over):
    return measurement(device="m1", ts=f"2024-03-{ts}.000Z", value=value, delta=delta,
                       flags=sorted(flags), **over)


# Day 1: a first reading, trusted energy, a glitch (no delta), the return (trusted);
# silence until day 4 02:00, whose `gap` delta of 72 covers 72 hours from day 1 02:00;
# day 4 also holds a suspicious jump and an implausible rate; day 5 a gap with a jump (flagged).
SERIES = [
    m("01T00:00:00", "100", flags=["first_reading"]),
    m("01T01:00:00", "101", "1"),
    m("01T01:30:00", "0", flags=["glitch"]),
    m("01T02:00:00", "102", "1"),
    m("04T02:00:00", "174", "72", flags=["gap"], delta_from="2024-03-01T02:00:00.000Z"),
    m("04T03:00:00", "1174", "1000", flags=["suspicious_jump"],
      delta_from="2024-03-04T02:00:00.000Z"),
    m("04T04:00:00", "1274", "100", flags=["implausible_rate"],
      delta_from="2024-03-04T03:00:00.000Z"),
    m("05T12:00:00", "9274", "8000", flags=["gap", "suspicious_jump"],
      delta_from="2024-03-04T04:00:00.000Z"),
]


def days(client, viewer, first="2024-03-01T00:00:00Z", last="2024-03-06T00:00:00Z", **params):
    r = client.get("/api/v1/consumption", headers=headers(viewer),
                   params={"device_id": "m1", "from": first, "to": last, **params})
    assert r.status_code == 200, r.text
    return r.json()


def classes(out):
    return [(b["consumption"], b["trusted"], b["flagged_energy"], b["estimated"], b["glitches"],
             b["gaps"]) for b in out["buckets"]]


def test_energy_classes_per_day(client, gw, viewer):
    post(client, gw, SERIES)
    out = days(client, viewer)
    assert classes(out) == [
        (2, 2, None, 22, 1, 0),     # 22 of the gap's 72 hours are on day 1 (02:00 to 24:00)
        (None, None, None, 24, 0, 0),
        (None, None, None, 24, 0, 0),
        (1172, None, 1100, 2, 0, 1),  # the gap's last 2 hours; its delta still counts here
        (8000, None, 8000, None, 0, 1),  # gap + suspicious_jump: flagged, not spread
    ]
    total = out["total"]
    assert (total["consumption"], total["trusted"], total["flagged_energy"], total["estimated"]) \
        == (9174, 2, 9100, 72)
    # the fields before #14 keep their meaning: consumption counts the gap's delta where it lands
    assert total["consumption"] == total["trusted"] + total["flagged_energy"] + total["estimated"]


def test_a_range_that_sees_only_part_of_a_gap(client, gw, viewer):
    post(client, gw, SERIES)
    out = days(client, viewer, first="2024-03-02T00:00:00Z", last="2024-03-03T00:00:00Z",
               bucket="hour")
    assert [b["estimated"] for b in out["buckets"]] == [1] * 24
    assert out["total"]["estimated"] == 24 and out["total"]["consumption"] is None


def test_spreading_follows_local_days(client, gw, viewer):
    post(client, gw, SERIES)
    out = days(client, viewer, first="2024-03-01T00:00:00+01:00",
               last="2024-03-06T00:00:00+01:00", tz="Europe/Berlin")
    # local day 1 ends at 23:00 UTC: 21 gap hours; days 2 and 3 are 24; day 4 keeps 3
    assert [b["estimated"] for b in out["buckets"]] == [21, 24, 24, 3, None]


def test_protocol_1_gaps_have_no_interval_and_stay_in_their_bucket(client, gw, viewer):
    post(client, gw, [m("01T00:00:00", "100", flags=["first_reading"]),
                      m("04T02:00:00", "174", "74")], version="1")
    post(client, gw, [m("04T02:00:00", "174", "74", flags=["gap"], revision=2)])  # no delta_from
    assert [b["estimated"] for b in days(client, viewer)["buckets"]] == [None, None, None, 74, None]


def test_revisions_move_energy_between_classes(client, gw, viewer):
    post(client, gw, SERIES)
    # the agent decides again: the jump was real energy (trusted now), the gap is no gap
    post(client, gw, [m("04T03:00:00", "1174", "1000", revision=2,
                        delta_from="2024-03-04T02:00:00.000Z"),
                      m("04T02:00:00", "174", "72", revision=2,
                        delta_from="2024-03-01T02:00:00.000Z")])
    out = days(client, viewer)
    assert classes(out)[:4] == [
        (2, 2, None, None, 1, 0), (None, None, None, None, 0, 0),
        (None, None, None, None, 0, 0), (1172, 1072, 100, None, 0, 0)]
    # ... and back: a higher revision makes the 72 a gap again
    post(client, gw, [m("04T02:00:00", "174", "72", flags=["gap"], revision=3,
                        delta_from="2024-03-01T02:00:00.000Z")])
    assert [b["estimated"] for b in days(client, viewer)["buckets"]] == [22, 24, 24, 2, None]
