"""GET /api/v1/consumption and /api/v1/flag_counts against hand-computed buckets; one raw event;
the dashboard fields of gateways, devices and measurements.

Every series is uploaded through the ingest API, as a gateway would."""

from __future__ import annotations

import base64
import datetime as dt
import json

from central.tests.helpers import batch, body, headers, measurement, raw_event

BUFFER2 = "0b6bd1f4-64a0-4c4e-8f00-2d1f6f0d7c11"


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def upload(client, token, ms=(), raws=(), gateway="gw1", **over):
    r = client.post("/api/v1/ingest", content=body(batch(gateway=gateway, ms=ms, raws=raws, **over)),
                    headers=headers(token))
    assert r.status_code == 200, r.text
    return r.json()


def consumption(client, viewer, **params):
    params.setdefault("device_id", "m1")
    r = client.get("/api/v1/consumption", headers=auth(viewer), params=params)
    assert r.status_code == 200, r.text
    return r


def m(ts, value, delta=None, flags=(), device="m1", **over):
    return measurement(device=device, ts=ts, value=value, delta=delta, flags=sorted(flags), **over)


# m1's energy series over four UTC days. Day 2 is a gap; day 3 has a suspicious jump and a
# counter reset; the reading at 03-04T00:00 sits exactly on a bucket boundary.
# A reading at 03-01T03:00 arrives late (out_of_order) and the agent re-sends the 06:00 reading
# as revision 2 with its delta recomputed from 10 to 6; the stale revision 1 arrives after it.
SERIES = [
    m("2024-03-01T00:00:00.000Z", "100", flags=["first_reading"]),
    m("2024-03-01T12:00:00.000Z", "125.5", "15.5"),
    m("2024-03-01T23:59:59.999Z", "130", "4.5"),
    m("2024-03-03T00:00:00.000Z", "20000", "19870", flags=["suspicious_jump"]),
    m("2024-03-03T01:00:00.000Z", "5", flags=["counter_reset"]),
    m("2024-03-03T02:00:00.000Z", "7.25", "2.25"),
    m("2024-03-04T00:00:00.000Z", "8", "0.75"),
]
LATE = m("2024-03-01T03:00:00.000Z", "104", "4", flags=["out_of_order"])
SIX_REV2 = m("2024-03-01T06:00:00.000Z", "110", "6", revision=2)
SIX_REV1 = m("2024-03-01T06:00:00.000Z", "110", "10", revision=1)
NOISE = [  # other device, other metric, outside the range: never counted for m1 energy
    m("2024-03-01T01:00:00.000Z", "1", flags=["first_reading"], device="m2"),
    m("2024-03-01T02:00:00.000Z", "3", "2", device="m2"),
    measurement(device="m1", metric="power", ts="2024-03-01T02:00:00.000Z", value="7"),
    m("2024-02-29T23:59:59.999Z", "99", "1"),
    m("2024-03-05T00:00:00.000Z", "9", "1"),
]


def seed_series(client, gw):
    upload(client, gw, SERIES + NOISE + [LATE, SIX_REV2])
    out = upload(client, gw, [SIX_REV1])
    assert out["measurements"][0]["outcome"] == "superseded"


def test_consumption_per_utc_day_by_hand(client, gw, viewer):
    seed_series(client, gw)
    r = consumption(client, viewer, **{"from": "2024-03-01T00:00:00Z", "to": "2024-03-05T00:00:00Z",
                                       "bucket": "day"})
    out = r.json()
    got = [(b["start"], b["readings"], b["consumption"], b["null_deltas"], b["flagged"],
            b["counter_resets"], b["suspicious_jumps"], b["suspicious_jump_delta"])
           for b in out["buckets"]]
    assert got == [
        # 4 + 6 (revision 2, not 10) + 15.5 + 4.5; the first reading has no delta
        ("2024-03-01T00:00:00.000Z", 5, 30, 1, 2, 0, 0, None),
        ("2024-03-02T00:00:00.000Z", 0, None, 0, 0, 0, 0, None),  # the gap
        ("2024-03-03T00:00:00.000Z", 3, 19872.25, 1, 2, 1, 1, 19870),
        ("2024-03-04T00:00:00.000Z", 1, 0.75, 0, 0, 0, 0, None),
    ]
    assert [b["end"] for b in out["buckets"]][-1] == "2024-03-05T00:00:00.000Z"
    # #14 added the energy classes and glitch/gap counts; the fields before them are unchanged
    assert out["total"] == {"consumption": 19903, "suspicious_jump_delta": 19870, "readings": 9,
                            "null_deltas": 2, "flagged": 4, "counter_resets": 1,
                            "suspicious_jumps": 1, "trusted": 33, "flagged_energy": 19870,
                            "estimated": None, "glitches": 0, "gaps": 0}
    assert out["suspicious_jumps_included"] is True
    # exact decimal text, never through a float
    assert '"consumption":19872.25,' in r.text and '"consumption":30,' in r.text


def test_consumption_widens_to_whole_buckets_and_hours(client, gw, viewer):
    seed_series(client, gw)
    out = consumption(client, viewer, **{"from": "2024-03-01T10:00:00Z",
                                         "to": "2024-03-04T00:00:00.001Z"}).json()
    assert (out["from"], out["to"]) == ("2024-03-01T00:00:00.000Z", "2024-03-05T00:00:00.000Z")
    assert [b["consumption"] for b in out["buckets"]] == [30, None, 19872.25, 0.75]
    hours = consumption(client, viewer, **{"from": "2024-03-03T00:00:00Z",
                                           "to": "2024-03-03T03:00:00Z", "bucket": "hour"}).json()
    assert [(b["start"][11:16], b["readings"], b["consumption"], b["counter_resets"])
            for b in hours["buckets"]] == [("00:00", 1, 19870, 0), ("01:00", 1, None, 1),
                                           ("02:00", 1, 2.25, 0)]


def test_consumption_exact_for_long_decimals(client, gw, viewer):
    a, b = "0.000000000000000000000000000001", "1234567890123456789012345678.9"
    upload(client, gw, [m("2024-03-01T01:00:00.000Z", "1", a), m("2024-03-01T02:00:00.000Z", "2", b)])
    r = consumption(client, viewer, **{"from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z"})
    assert '"consumption":1234567890123456789012345678.900000000000000000000000000001' in r.text


def test_consumption_total_exact_beyond_28_digits(client, gw, viewer):
    # Each delta in its own hour bucket: the total adds the buckets' sums, and must not round
    # them (Python's default decimal context keeps 28 significant digits).
    big = "123456789012345678901234567890123456789.5"
    upload(client, gw, [m("2024-03-01T00:30:00.000Z", "1", flags=["first_reading"]),
                        m("2024-03-01T01:30:00.000Z", "2", big),
                        m("2024-03-01T02:30:00.000Z", "3", "0.25")])
    r = consumption(client, viewer, **{"from": "2024-03-01T00:00:00Z",
                                       "to": "2024-03-01T03:00:00Z", "bucket": "hour"})
    assert '"consumption":123456789012345678901234567890123456789.5,' in r.text
    assert '"total":{"consumption":123456789012345678901234567890123456789.75,' in r.text


def test_day_buckets_follow_the_zone_across_dst(client, gw, viewer):
    # Europe/Berlin falls back on 2026-10-25 at 01:00Z (03:00 CEST -> 02:00 CET): that local day
    # is 25 hours long.
    upload(client, gw, [
        m("2026-10-24T21:30:00.000Z", "1", flags=["first_reading"]),  # 23:30 local on the 24th
        m("2026-10-24T22:00:00.000Z", "2", "1"),    # 00:00 local on the 25th
        m("2026-10-25T22:30:00.000Z", "3", "1"),    # 23:30 CET on the 25th (hour 25 of the day)
        m("2026-10-25T23:30:00.000Z", "4", "2"),    # 00:30 local on the 26th
    ])
    out = consumption(client, viewer, **{"from": "2026-10-24T00:00:00+02:00",
                                         "to": "2026-10-27T00:00:00+01:00",
                                         "tz": "Europe/Berlin"}).json()
    assert out["tz"] == "Europe/Berlin"
    assert [(b["start"], b["end"], b["readings"], b["consumption"]) for b in out["buckets"]] == [
        ("2026-10-23T22:00:00.000Z", "2026-10-24T22:00:00.000Z", 1, None),
        ("2026-10-24T22:00:00.000Z", "2026-10-25T23:00:00.000Z", 2, 2),
        ("2026-10-25T23:00:00.000Z", "2026-10-26T23:00:00.000Z", 1, 2),
    ]
    utc = consumption(client, viewer, **{"from": "2026-10-24T00:00:00Z",
                                         "to": "2026-10-27T00:00:00Z"}).json()
    assert [b["consumption"] for b in utc["buckets"]] == [1, 3, None]  # same data, UTC days
    # the repeated local hour 02:00-03:00 is two buckets, one real hour each
    hours = consumption(client, viewer, **{"from": "2026-10-25T00:00:00Z",
                                           "to": "2026-10-25T02:00:00Z", "bucket": "hour",
                                           "tz": "Europe/Berlin"}).json()
    assert [(b["start"], b["end"]) for b in hours["buckets"]] == [
        ("2026-10-25T00:00:00.000Z", "2026-10-25T01:00:00.000Z"),
        ("2026-10-25T01:00:00.000Z", "2026-10-25T02:00:00.000Z")]
    # spring forward: 2026-03-29 is 23 hours long
    spring = consumption(client, viewer, **{"from": "2026-03-29T00:00:00+01:00",
                                            "to": "2026-03-29T12:00:00+02:00",
                                            "tz": "Europe/Berlin"}).json()
    assert [(b["start"], b["end"]) for b in spring["buckets"]] == [
        ("2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z")]
    # a half-hour zone: local hours start at :30 UTC
    kolkata = consumption(client, viewer, **{"from": "2024-01-01T10:45:00+05:30",
                                             "to": "2024-01-01T12:00:00+05:30", "bucket": "hour",
                                             "tz": "Asia/Kolkata"}).json()
    assert [b["start"] for b in kolkata["buckets"]] == ["2024-01-01T04:30:00.000Z",
                                                         "2024-01-01T05:30:00.000Z"]


def test_consumption_bad_queries(client, gw, viewer):
    base = {"device_id": "m1", "from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z"}
    for tz in ("Mars/Olympus", "+01:00", "UTC+3", "../../etc/passwd", "/etc/localtime", ""):
        r = client.get("/api/v1/consumption", headers=auth(viewer), params={**base, "tz": tz})
        assert r.status_code == 400, tz
        assert r.json()["error"] == "invalid_time_zone" and "IANA" in r.json()["detail"]
    for params in ({"bucket": "week"}, {"from": None}, {"to": "2024-02-01T00:00:00Z"},
                   {"from": "2024-03-01"}, {"to": "2030-01-01T00:00:00Z", "bucket": "hour"}):
        q = {k: v for k, v in {**base, **params}.items() if v is not None}
        r = client.get("/api/v1/consumption", headers=auth(viewer), params=q)
        assert r.status_code == 422, params
    assert client.get("/api/v1/consumption", params=base).status_code == 401
    assert client.get("/api/v1/consumption", headers=auth(gw), params=base).status_code == 403


def test_flag_counts_per_bucket_gateway_and_device(client, gw, gw2, viewer):
    seed_series(client, gw)
    upload(client, gw2, [m("2024-03-03T05:00:00.000Z", "1", flags=["first_reading"], device="x"),
                         m("2024-03-03T06:00:00.000Z", "0.5", flags=["counter_reset"], device="x"),
                         m("2024-03-03T07:00:00.000Z", "0.75", "0.25", device="x")],
           gateway="gw2", buffer_id=BUFFER2)
    params = {"from": "2024-03-01T00:00:00Z", "to": "2024-03-04T00:00:00Z"}
    out = client.get("/api/v1/flag_counts", headers=auth(viewer), params=params).json()
    assert [(b["start"][:10], b["readings"], b["flagged"], b["flags"]) for b in out["buckets"]] == [
        ("2024-03-01", 8, 3, {"first_reading": 2, "out_of_order": 1}),  # m1 5+1 power, m2 2
        ("2024-03-02", 0, 0, {}),
        ("2024-03-03", 6, 4, {"counter_reset": 2, "first_reading": 1, "suspicious_jump": 1}),
    ]
    assert out["total"]["flags"] == {"counter_reset": 2, "first_reading": 3, "out_of_order": 1,
                                     "suspicious_jump": 1}
    only_gw2 = client.get("/api/v1/flag_counts", headers=auth(viewer),
                          params={**params, "gateway_id": "gw2"}).json()
    assert [b["flags"] for b in only_gw2["buckets"]] == [{}, {}, {"counter_reset": 1,
                                                                  "first_reading": 1}]
    m2 = client.get("/api/v1/flag_counts", headers=auth(viewer),
                    params={**params, "device_id": "m2", "bucket": "hour", "tz": "UTC"}).json()
    assert len(m2["buckets"]) == 72 and m2["total"] == {"readings": 2, "flagged": 1,
                                                        "flags": {"first_reading": 1}}
    bad = client.get("/api/v1/flag_counts", headers=auth(viewer), params={**params, "tz": "Nowhere"})
    assert bad.status_code == 400


def test_raw_event_behind_a_measurement(client, gw, viewer):
    payload = b'{"id":"m1","kWh":1.50}'
    binary = bytes(range(256))
    upload(client, gw, [m("2024-03-01T00:00:00.000Z", "1.5", flags=["first_reading"], seq=7)],
           raws=[raw_event(7, payload, topic="site/m1/energy"),
                 raw_event(8, binary, decode_error="not JSON")])
    (item,) = client.get("/api/v1/measurements", headers=auth(viewer)).json()["items"]
    r = client.get("/api/v1/raw_event", headers=auth(viewer),
                   params={"gateway_id": item["gateway_id"], **item["raw"]})
    assert r.status_code == 200, r.text
    raw = r.json()
    assert raw["payload_text"] == payload.decode() and raw["payload_is_json"] is True
    assert base64.b64decode(raw["payload_base64"]) == payload
    assert raw["topic"] == "site/m1/energy" and raw["seq"] == 7 and raw["qos"] == 1
    other = client.get("/api/v1/raw_event", headers=auth(viewer),
                       params={"gateway_id": "gw1", "buffer_id": item["raw"]["buffer_id"].upper(),
                               "seq": 8}).json()
    assert other["payload_text"] is None and base64.b64decode(other["payload_base64"]) == binary
    assert other["decode_error"] == "not JSON" and other["payload_is_json"] is False
    missing = client.get("/api/v1/raw_event", headers=auth(viewer),
                         params={"gateway_id": "gw1", "buffer_id": item["raw"]["buffer_id"],
                                 "seq": 9})
    assert missing.status_code == 404 and "may not have sent it yet" in missing.json()["detail"]
    wrong_gateway = client.get("/api/v1/raw_event", headers=auth(viewer),
                               params={"gateway_id": "gw2", **item["raw"]})
    assert wrong_gateway.status_code == 404
    bad = client.get("/api/v1/raw_event", headers=auth(viewer),
                     params={"gateway_id": "gw1", "buffer_id": "nope", "seq": 7})
    assert bad.status_code == 422
    assert client.get("/api/v1/raw_event", headers=auth(gw),
                      params={"gateway_id": "gw1", **item["raw"]}).status_code == 403


def test_gateways_count_rejected_records(client, gw, viewer):
    good = m("2024-03-01T00:00:00.000Z", "1", flags=["first_reading"])
    bad = {**m("2024-03-01T01:00:00.000Z", "2", "1"), "unit": "Wh"}
    upload(client, gw, [good, bad, {**bad, "unit": "MWh"}])
    upload(client, gw, [], raws=[raw_event(1, "not base64!")])
    upload(client, gw, [])  # a clean heartbeat keeps the count and the last reason
    (item,) = client.get("/api/v1/gateways", headers=auth(viewer)).json()["items"]
    assert item["rejected_records"] == 3
    assert item["last_rejection_reason"] == "invalid_base64"
    assert item["last_rejected_at"] is not None


def test_devices_usual_interval_and_overdue(client, gw, viewer):
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def stamp(t):
        return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    # "quiet": every 15 minutes until 2 hours ago (8 intervals silent); "live": every 15 minutes
    # until 5 minutes ago; "lone": a single reading, no interval known.
    quiet = [m(stamp(now - dt.timedelta(hours=2, minutes=15 * i)), str(20 - i), device="quiet")
             for i in range(12)]
    live = [m(stamp(now - dt.timedelta(minutes=5 + 15 * i)), str(20 - i), device="live")
            for i in range(5)]
    lone = [m(stamp(now - dt.timedelta(days=1)), "1", device="lone")]
    upload(client, gw, quiet + live + lone)
    items = {i["device_id"]: i for i in client.get("/api/v1/devices", headers=auth(viewer)).json()["items"]}
    assert items["quiet"]["usual_interval_seconds"] == 900.0 and items["quiet"]["overdue"] is True
    assert items["live"]["usual_interval_seconds"] == 900.0 and items["live"]["overdue"] is False
    assert items["lone"]["usual_interval_seconds"] is None and items["lone"]["overdue"] is False


def test_measurements_flagged_and_gateway_filters(client, gw, gw2, viewer):
    seed_series(client, gw)
    upload(client, gw2, [m("2024-03-03T05:00:00.000Z", "1", flags=["first_reading"], device="x")],
           gateway="gw2", buffer_id=BUFFER2)
    flagged = client.get("/api/v1/measurements", headers=auth(viewer),
                         params={"flagged": "true"}).json()["items"]
    assert [(i["device_id"], i["timestamp"][:13], i["flags"]) for i in flagged] == [
        ("m1", "2024-03-01T00", ["first_reading"]), ("m2", "2024-03-01T01", ["first_reading"]),
        ("m1", "2024-03-01T03", ["out_of_order"]), ("m1", "2024-03-03T00", ["suspicious_jump"]),
        ("m1", "2024-03-03T01", ["counter_reset"]), ("x", "2024-03-03T05", ["first_reading"])]
    by_gw2 = client.get("/api/v1/measurements", headers=auth(viewer),
                        params={"gateway_id": "gw2"}).json()["items"]
    assert [i["device_id"] for i in by_gw2] == ["x"]
    assert json.loads(client.get("/api/v1/measurements", headers=auth(viewer),
                                 params={"gateway_id": "nobody"}).text)["items"] == []
