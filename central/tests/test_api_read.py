"""Read side: /healthz, /api/v1/gateways, /api/v1/devices, /api/v1/measurements, /docs."""

from __future__ import annotations

import json

from central.tests.helpers import batch, body, headers, measurement


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def upload(client, token, ms, **over):
    r = client.post("/api/v1/ingest", content=body(batch(ms=ms, **over)), headers=headers(token))
    assert r.status_code == 200
    return r


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    ingest = spec["paths"]["/api/v1/ingest"]["post"]
    props = ingest["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"protocol_version", "gateway_id", "buffer_id", "sent_at", "raw_events",
            "measurements"} <= set(props)
    assert {"200", "401", "403", "413", "422"} <= set(ingest["responses"])
    assert "/api/v1/measurements" in spec["paths"] and "/api/v1/devices" in spec["paths"]


def test_gateways_status(client, gw, viewer):
    upload(client, gw, [], sent_at="2024-01-01T09:00:05.123Z",
           backlog={"records": 40, "oldest_received_at": "2024-01-01T08:59:05.123Z"})
    r = client.get("/api/v1/gateways", headers=auth(viewer))
    (item,) = r.json()["items"]
    assert item["gateway_id"] == "gw1" and item["revoked"] is False
    assert item["backlog_records"] == 40 and item["backlog_lag_seconds"] == 60.0
    assert item["last_sent_at"] == "2024-01-01T09:00:05.123Z"
    assert item["clock_skew_seconds"] < -1000  # gateway clock years behind the test clock
    assert item["seconds_since_contact"] < 60


def test_devices_last_reading_and_paging(client, gw, viewer):
    ms = [measurement(device=f"d{i}", ts=f"2024-01-01T0{j}:00:00.000Z", value=f"{i}.{j}5")
          for i in range(3) for j in range(1, 4)]
    ms.append(measurement(device="d0", metric="power", value="-2"))
    upload(client, gw, ms)
    r = client.get("/api/v1/devices", headers=auth(viewer), params={"limit": 2})
    page1 = r.json()
    assert [(i["device_id"], i["metric_type"]) for i in page1["items"]] == \
        [("d0", "energy"), ("d0", "power")]
    assert page1["items"][0]["last_timestamp"] == "2024-01-01T03:00:00.000Z"
    assert page1["items"][0]["silent_seconds"] > 0
    page2 = client.get("/api/v1/devices", headers=auth(viewer),
                       params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert [i["device_id"] for i in page2["items"]] == ["d1", "d2"]
    assert '"last_value":2.35' in client.get("/api/v1/devices", headers=auth(viewer)).text


def test_measurements_filters_paging_exact_numbers(client, gw, viewer):
    big = "1234567890123456789012345678901234567.123"
    ms = [measurement(device="m1", ts=f"2024-01-01T00:00:{s:02d}.000Z", value=f"{s}.5",
                      flags=["out_of_order"] if s % 2 else []) for s in range(10)]
    ms.append(measurement(device="m2", value=big, delta="0.0000000001"))
    upload(client, gw, ms)
    seen = []
    cursor = None
    while True:
        params = {"device_id": "m1", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/measurements", headers=auth(viewer), params=params).json()
        seen += [i["timestamp"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"2024-01-01T00:00:{s:02d}.000Z" for s in range(10)]
    r = client.get("/api/v1/measurements", headers=auth(viewer),
                   params={"device_id": "m1", "flag": "out_of_order",
                           "from": "2024-01-01T00:00:03Z", "to": "2024-01-01T00:00:07.000Z"})
    assert [i["timestamp"][17:19] for i in r.json()["items"]] == ["03", "05"]
    text = client.get("/api/v1/measurements", headers=auth(viewer), params={"device_id": "m2"}).text
    assert f'"value":{big}' in text and '"delta":0.0000000001' in text
    item = json.loads(text)["items"][0]
    assert item["gateway_id"] == "gw1" and item["raw"]["seq"] == 1 and item["revision"] == 1


def test_measurements_bad_queries(client, viewer):
    for params in ({"flag": "bogus"}, {"from": "yesterday"}, {"to": "2024-01-01T00:00:00"},
                   {"cursor": "%%%"}, {"limit": 0}):
        r = client.get("/api/v1/measurements", headers=auth(viewer), params=params)
        assert r.status_code == 422, params
