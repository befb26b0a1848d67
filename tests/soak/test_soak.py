"""The soak's pure parts: its schedule and its truth (tests/soak/soak.py). The soak itself runs
in scripts/test.sh (3 minutes) and by hand (an hour)."""

from __future__ import annotations

import os
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))

import soak  # noqa: E402
from simulation import simulate  # noqa: E402


def test_the_schedule_is_a_function_of_the_seed():
    assert soak.make_schedule(3600, 7, 600) == soak.make_schedule(3600, 7, 600)
    assert soak.make_schedule(3600, 7, 600) != soak.make_schedule(3600, 8, 600)


def test_even_the_short_run_has_every_fault_and_keeps_the_last_life_for_phase_b():
    for seed in range(1, 20):
        events = soak.make_schedule(180, seed, 45)
        kinds = [e["kind"] for e in events]
        for kind in soak.PHASE_A_KINDS + ("disk_budget", "baseline"):
            assert kind in kinds, (seed, kind)
        baseline = kinds.index("baseline")
        # After the baseline the agent's process must live on: no kill, no power cut.
        assert not {"agent_kill", "power_cut"} & set(kinds[baseline:]), seed
        assert set(kinds[baseline + 1:]) == set(soak.PHASE_B_KINDS), seed
        times = [e["at"] for e in events]
        assert times == sorted(times), seed
        assert times[-1] < 180


def test_the_hour_has_ten_minutes_of_warm_up_before_the_baseline():
    events = soak.make_schedule(3600, 1, 600)
    last_life = [e for e in events if e.get("note")][0]
    baseline = [e for e in events if e["kind"] == "baseline"][0]
    assert baseline["at"] - last_life["at"] == 600
    assert sum(e["kind"] in ("agent_kill", "power_cut") for e in events) >= 4


def test_a_flood_cut_short_expects_exactly_the_readings_of_the_messages_published():
    flood = simulate(seed=3, meters=4, duration_s=120, start="2026-01-01T00:00:00Z", faults={},
                     fault_free=4, formats=("plain",))
    published = flood.messages[:17]
    counts: dict[int, int] = {}
    for message in published:
        counts[message.meter] = counts.get(message.meter, 0) + 1
    keys = soak.expected_keys(flood.meters, lambda d: d.replace("plain-", "flood-"), counts)
    # What the agent will store from those messages: plain numbers, power in W -> kW.
    stored = {}
    for message in published:
        _, device, metric = message.topic.split("/")
        value = Decimal(message.payload.decode())
        key = (device.replace("plain-", "flood-"), metric, None,
               value / 1000 if metric == "power" else value)
        stored[key] = stored.get(key, 0) + 1
    assert dict(keys) == stored
    assert sum(keys.values()) == 17


def test_meters_that_stamp_their_readings_are_keyed_by_their_timestamp():
    site = simulate(seed=5, meters=10, duration_s=300, start="2026-01-01T00:00:00Z",
                    faults={}, fault_free=10)
    keys = soak.expected_keys(site.meters)
    stamped = soak.stamped_devices(site.meters)
    assert stamped
    for device, _, when, _ in keys:
        assert (when is not None) == (device in stamped)
    assert sum(keys.values()) == site.distinct_readings()


def test_the_comparison_catches_a_reading_missing_and_one_stored_twice():
    site = simulate(seed=5, meters=6, duration_s=300, start="2026-01-01T00:00:00Z",
                    faults={}, fault_free=6)
    expected = soak.expected_keys(site.meters)
    assert soak.compare(expected, expected.copy()) == (soak.collections.Counter(),
                                                       soak.collections.Counter(), {})
    stored = expected.copy()
    gone, doubled = list(expected)[:2]
    del stored[gone]
    stored[doubled] += 1  # the same reading under a second event id
    missing, extra, twice = soak.compare(expected, stored)
    assert list(missing) == [gone] and list(extra) == [doubled] and list(twice) == [doubled]
