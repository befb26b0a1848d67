#!/usr/bin/python3
"""One meter's UTC day with a glitch to 0 and a corrupt spike, from MQTT to the central.

  glitch_day.py publish   publishes the day over MQTT at QoS 1 (QUICKSTART_MQTT_PORT) and writes
                          the summary scripts/quickstart.sh waits on (QUICKSTART_TRUTH)
  glitch_day.py check     asserts against the central's consumption API (QUICKSTART_CENTRAL_URL,
                          QUICKSTART_VIEWER_TOKEN) and PostgreSQL (DATABASE_URL)

Run by tests/e2e/glitch_day_test.sh through scripts/quickstart.sh --publish / --then. The day is
yesterday (UTC), so the dashboard's last days show it: 24 hourly seed-JSON readings of 1000 to
1021 kWh, with a 0 (a brown-out's read) after 1001 and a 99999.9 (a corrupt register, far above
the quickstart's jump_threshold of 10000) after 1011. Both come back within glitch_window, so both
must be flagged `glitch` with no delta, and the day's trusted total must be exactly 1021 - 1000.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
from mqtt_publisher import publish_all  # noqa: E402

DEVICE = "meter-glitch-e2e"
GLITCH_VALUES = (Decimal("0"), Decimal("99999.9"))


def the_day() -> dt.datetime:
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=1)


def readings(day: dt.datetime) -> list[tuple[dt.datetime, Decimal]]:
    values = [Decimal(1000 + k) for k in range(22)]
    values.insert(2, GLITCH_VALUES[0])
    values.insert(13, GLITCH_VALUES[1])
    return [(day + dt.timedelta(hours=hour), value) for hour, value in enumerate(values)]


def publish() -> int:
    messages = []
    for at, value in readings(the_day()):
        payload = json.dumps({"device_id": DEVICE, "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "metric_type": "energy", "value": float(value), "unit": "kWh"})
        messages.append((0.0, f"meters/{DEVICE}", payload.encode()))
    publisher = publish_all("127.0.0.1", int(os.environ["QUICKSTART_MQTT_PORT"]), "glitch-day",
                            messages)
    summary = {"published": publisher.published, "acknowledged": publisher.acknowledged,
               "distinct_readings": len(messages), "faults": {"glitch": 1, "spike": 1}}
    with open(os.environ["QUICKSTART_TRUTH"], "w") as out:
        json.dump(summary, out)
    print(f"glitch_day: published {publisher.published}, acknowledged {publisher.acknowledged}")
    return 0 if publisher.acknowledged == len(messages) else 1


def api(path: str, query: dict) -> dict:
    request = urllib.request.Request(
        f"{os.environ['QUICKSTART_CENTRAL_URL']}{path}?{urllib.parse.urlencode(query)}",
        headers={"Authorization": f"Bearer {os.environ['QUICKSTART_VIEWER_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read(), parse_float=Decimal)


def number(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def check() -> int:
    day = the_day()
    series = readings(day)
    real = [value for _, value in series if value not in GLITCH_VALUES]
    advance = real[-1] - real[0]
    body = api("/api/v1/consumption", {
        "device_id": DEVICE, "metric_type": "energy", "bucket": "day", "tz": "UTC",
        "from": day.isoformat(), "to": (day + dt.timedelta(days=1)).isoformat()})
    failures = []

    def expect(what: str, got, wanted) -> None:
        print(f"  {what}: {got} (expected {wanted})")
        if got != wanted:
            failures.append(what)

    [bucket] = body["buckets"]
    expect("bucket start", dt.datetime.fromisoformat(bucket["start"].replace("Z", "+00:00")), day)
    expect("bucket trusted (kWh)", number(bucket["trusted"]), advance)
    expect("bucket flagged_energy (kWh, none = 0)", number(bucket["flagged_energy"]) or 0, 0)
    expect("bucket estimated (kWh, none = 0)", number(bucket["estimated"]) or 0, 0)
    expect("bucket glitches", bucket["glitches"], 2)
    expect("bucket readings", bucket["readings"], len(series))
    expect("total trusted (kWh)", number(body["total"]["trusted"]), advance)

    rows = subprocess.run(
        ["psql", os.environ["DATABASE_URL"], "-AtF", "\t", "-c",
         "SELECT value, coalesce(delta::text, 'null'), array_to_string(flags, ',')"
         f" FROM normalized_measurements WHERE device_id = '{DEVICE}' ORDER BY timestamp"],
        check=True, capture_output=True, text=True).stdout.splitlines()
    stored = [line.split("\t") for line in rows]
    expect("readings in PostgreSQL", len(stored), len(series))
    for value, delta, flags in stored:
        if Decimal(value) in GLITCH_VALUES:
            expect(f"reading {value}: delta, flags", (delta, "glitch" in flags.split(",")),
                   ("null", True))
    expect("sum of the stored deltas (kWh)",
           sum((Decimal(d) for _, d, _ in stored if d != "null"), Decimal(0)), advance)
    print(f"glitch_day: {'FAILED: ' + ', '.join(failures) if failures else 'passed'}"
          f" ({DEVICE}, {day.date()} UTC: trusted {advance} kWh = {real[-1]} - {real[0]})")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["publish"]:
        sys.exit(publish())
    if sys.argv[1:] == ["check"]:
        sys.exit(check())
    print("usage: glitch_day.py publish|check", file=sys.stderr)
    sys.exit(2)
