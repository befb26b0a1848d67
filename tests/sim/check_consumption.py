#!/usr/bin/python3
"""Checks the central's consumption API against the simulator's truth, end to end.

For every fault-free meter the API's total consumption must equal exactly its register's last
minus first value (the agent's deltas, uploaded, summed by PostgreSQL in NUMERIC). Meters with
faults are listed beside (API total, register delta, true energy) but not judged: what the
series rules make of glitches and resets is their own tests' business.

Run by scripts/quickstart.sh --then (tests/sim/quickstart_test.sh), which sets
QUICKSTART_CENTRAL_URL, QUICKSTART_VIEWER_TOKEN and QUICKSTART_TRUTH.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import urllib.parse
import urllib.request
from decimal import Decimal


def consumption_total(base: str, token: str, device_id: str, start: dt.datetime,
                      end: dt.datetime) -> Decimal | None:
    query = urllib.parse.urlencode({
        "device_id": device_id, "metric_type": "energy", "bucket": "day", "tz": "UTC",
        "from": start.isoformat(), "to": end.isoformat()})
    request = urllib.request.Request(f"{base}/api/v1/consumption?{query}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read(), parse_float=Decimal)
    total = body["total"]["consumption"]
    return None if total is None else Decimal(str(total))


def main() -> int:
    base = os.environ["QUICKSTART_CENTRAL_URL"]
    token = os.environ["QUICKSTART_VIEWER_TOKEN"]
    with open(os.environ["QUICKSTART_TRUTH"]) as source:
        truth = json.load(source)
    start = dt.datetime.fromisoformat(truth["options"]["start"].replace("Z", "+00:00"))
    # Readings stamped on receipt carry today's time; skewed clocks up to 15 minutes either way.
    start -= dt.timedelta(days=1)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    failures = checked = 0
    for meter in truth["meters"]:
        energy = meter["energy_kwh"]
        if energy["first_register"] is None:
            continue
        total = consumption_total(base, token, meter["device_id"], start, end)
        delta = Decimal(energy["register_delta"])
        if meter["fault_free"]:
            checked += 1
            verdict = "ok" if total == delta else "WRONG"
            failures += total != delta
        else:
            verdict = "faults: " + (", ".join(f"{k} {v}" for k, v in meter["faults"].items())
                                    or "none drawn")
        print(f"  {meter['device_id']:<28} API {total} kWh, last - first {delta}, "
              f"true {energy['true_energy']}  {verdict}")
    print(f"check_consumption: {checked - failures} of {checked} fault-free meters: API total "
          "== last - first register")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
