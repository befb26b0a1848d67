#!/usr/bin/python3
"""Writes the input streams of the golden series cases (tests/data/golden/README.md).

    /usr/bin/python3 tests/data/golden/make_inputs.py

Each case is a directory inputs/NAME/ holding step-1.jsonl, step-2.jsonl, ...
(lines for `meter-agent import`: seed JSON, or "topic<TAB>payload") and a file
`steps` naming each step's file and its --received-at, one step a line, in
import order. Everything is rewritten from scratch; the output depends only on
this file and config/samples/seed-readings.jsonl (fixed seed, stdlib only), so
running it again must leave `git status` clean.
"""

import datetime
import json
import os
import random
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
INPUTS = os.path.join(HERE, "inputs")
SEED = 20261206


class Case:
    def __init__(self, name):
        self.name = name
        self.steps = []  # (received_at, [line, ...])

    def step(self, received_at, *lines):
        self.steps.append((received_at, list(lines)))
        return self


CASES = []


def case(name):
    c = Case(name)
    CASES.append(c)
    return c


OMIT = object()  # no "timestamp" member at all


def reading(device, timestamp, value, unit="kWh", metric="energy", topic=None):
    """One seed-JSON line. `value` is JSON text as sent: '12.5' is a number,
    '"12.5"' a string. timestamp None is JSON null, OMIT leaves it out."""
    return topic_line(topic, payload(device, timestamp, value, unit, metric))


def payload(device, timestamp, value, unit="kWh", metric="energy"):
    parts = ['"device_id":' + json.dumps(device, ensure_ascii=False)]
    if timestamp is not OMIT:
        parts.append('"timestamp":' + ("null" if timestamp is None else json.dumps(timestamp)))
    parts.append('"metric_type":' + json.dumps(metric))
    parts.append('"value":' + value)
    parts.append('"unit":' + json.dumps(unit))
    return "{" + ",".join(parts) + "}"


def topic_line(topic, text):
    return text if topic is None else topic + "\t" + text


def energy(device, timestamp, value, unit="kWh", topic=None):
    return reading(device, timestamp, value, unit, "energy", topic)


def power(device, timestamp, value, unit="kW", topic=None):
    return reading(device, timestamp, value, unit, "power", topic)


# ---------------------------------------------------------------- hand-made


def seed_sample():
    # The shipped sample as it is (a topic<TAB>payload line, an unknown unit,
    # a line that is not a reading); tests/data/seed-readings.expected.jsonl
    # is its export under config/agent.example.yaml.
    with open(os.path.join(SOURCE_DIR, "config", "samples", "seed-readings.jsonl"),
              encoding="utf-8", newline="") as f:
        lines = f.read().splitlines()
    case("seed-sample").step("2024-01-15T18:00:00Z", *lines)


def in_order():
    m = "in-order"
    case("in-order").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T00:00:00Z", "100"),
        energy(m, "2024-01-01T01:00:00Z", "100.5"),
        energy(m, "2024-01-01T02:00:00Z", "100.5"),  # delta 0
        energy(m, "2024-01-01T03:00:00Z", "101.25"),
        energy(m, "2024-01-01T04:00:00Z", "250"),
        energy(m, "2024-01-01T04:00:01Z", "250.001"),
        energy(m, "2024-01-01T04:00:01.001Z", "250.0010001"),
        energy(m, "2024-01-01T05:00:00Z", "1000"),
        energy(m, "2024-01-01T06:00:00Z", "1000"),
        energy(m, "2024-01-01T07:00:00Z", "1234.5678"),
    )
    # The same over three imports: every import starts with a cold series
    # cache, so the tail comes from the database.
    m = "in-order-steps"
    case("in-order-steps").step(
        "2024-01-01T02:00:00Z",
        energy(m, "2024-01-01T00:00:00Z", "10"),
        energy(m, "2024-01-01T01:00:00Z", "11"),
    ).step(
        "2024-01-01T04:00:00+01:00",
        energy(m, "2024-01-01T02:00:00Z", "12.5"),
        energy(m, "2024-01-01T03:00:00Z", "12.5"),
    ).step(
        "2024-01-01T06:00:00.500Z",
        energy(m, "2024-01-01T04:00:00Z", "20"),
        energy(m, "2024-01-01T05:00:00Z", "21"),
        energy(m, "2024-01-01T06:00:00Z", "22"),
    )


def out_of_order():
    m = "late-middle"
    case("late-middle").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "100"),
        energy(m, "2024-01-01T12:00:00Z", "300"),
        energy(m, "2024-01-01T13:00:00Z", "350"),
        energy(m, "2024-01-01T16:00:00Z", "400"),
    ).step(
        "2024-01-02T01:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "180"),  # between 10:00 and 12:00
    ).step(
        "2024-01-02T02:00:00Z",
        energy(m, "2024-01-01T12:30:00Z", "320"),
        energy(m, "2024-01-01T14:00:00Z", "360"),
        energy(m, "2024-01-01T15:00:00Z", "380"),  # two late ones in a row
        energy(m, "2024-01-01T17:00:00Z", "410"),  # in order again
        energy(m, "2024-01-01T16:30:00Z", "405"),  # late within the same import
    )
    m = "late-first"
    case("late-before-first").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T12:00:00Z", "300"),
        energy(m, "2024-01-01T13:00:00Z", "310"),
    ).step(
        "2024-01-02T01:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "100"),  # the new first reading
    ).step(
        "2024-01-02T02:00:00Z",
        energy(m, "2024-01-01T09:00:00Z", "150"),  # before it again, larger: 10:00 a reset
        energy(m, "2024-01-01T08:00:00Z", "50"),
        energy(m, "2024-01-01T07:00:00Z", "50"),  # and again, equal: 08:00 delta 0
    )
    # Late first readings within one import, and power beside it.
    m = "late-first-same-import"
    case("late-first-same-import").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T12:00:00Z", "300"),
        energy(m, "2024-01-01T10:00:00Z", "100"),
        power(m, "2024-01-01T12:00:00Z", "3"),
        power(m, "2024-01-01T10:00:00Z", "1"),
        energy(m, "2024-01-01T11:00:00Z", "400"),  # successor 12:00 becomes a reset
        energy(m, "2024-01-01T11:30:00Z", "200"),  # now 11:30 is the reset, 12:00 delta 100
    )


def repeats():
    m = "repeats"
    # 2024-01-01T10:00:00Z, 100 kWh, spelled many ways.
    same = [
        energy(m, "2024-01-01T10:00:00Z", "100"),
        energy(m, "2024-01-01T10:00:00Z", "100"),  # the very same line
        energy(m, "2024-01-01T10:00:00.000Z", "100.000"),
        energy(m, "2024-01-01T11:00:00+01:00", "100000", "Wh"),
        energy(m, "2024-01-01T15:45:00+05:45", "0.1", "MWh"),
        energy(m, "2024-01-01T06:30:00-03:30", "1e2"),
        energy(m, "2024-01-01T10:00:00.0009Z", "1.0E+2"),  # sub-ms digits are dropped
        energy(m, "2024-01-01t10:00:00z", '"100"'),
        energy(m, "2024-01-01 10:00:00Z", "+100"),
        energy(m, "20240101T100000Z", "0100"),
        energy(m, "2024-01-01T10:00:00+00:00", ".1e3"),
        energy(m, "2024-01-01T10:00:00-00:00", "100000000", "mWh"),  # not a unit: an error
    ]
    case("repeats").step(
        "2024-01-01T12:00:00Z",
        *same[:6],
        energy(m, "2024-01-01T11:00:00Z", "110"),
        energy(m, "2024-01-01T12:00:00Z", "120"),
        *same[6:],
        energy(m, "2024-01-01T11:00:00.000Z", "110000", "Wh"),  # a repeat of a middle row
    ).step(
        "2024-01-01T13:00:00Z",
        *same,  # the whole set again, in a later import
        energy(m, "2024-01-01T12:00:00+01:00", "0.11", "MWh"),
        energy(m, "2024-01-01T12:00:00Z", "120.0"),
    )
    # Repeats of readings whose neighbours changed in between.
    m = "repeats-after-revision"
    case("repeats-after-revision").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "10"),
        energy(m, "2024-01-01T12:00:00Z", "30"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "20"),  # revises 12:00
        energy(m, "2024-01-01T12:00:00Z", "30"),  # a repeat of the revised row
    ).step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "20000", "Wh"),
        energy(m, "2024-01-01T10:00:00Z", "10"),
        energy(m, "2024-01-01T09:00:00Z", "5"),  # revises 10:00 (first_reading goes)
        energy(m, "2024-01-01T10:00:00+01:00", "5"),  # a repeat of the new first
    )


def conflicts():
    m = "conflict"
    case("conflicts").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "100"),
        energy(m, "2024-01-01T11:00:00Z", "110"),
        energy(m, "2024-01-01T12:00:00Z", "120"),
    ).step(
        "2024-01-02T01:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "105"),  # late, below the stored 110
    ).step(
        "2024-01-02T02:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "115"),  # late, between 110 and 12:00's 120
        energy(m, "2024-01-01T11:00:00Z", "105"),  # a repeat of a conflicting reading
    ).step(
        "2024-01-02T03:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "125"),  # above 12:00's 120: 12:00 a reset
        energy(m, "2024-01-01T11:00:00Z", "95"),  # below 10:00's 100: a reset; "95" > "125" as text
        energy(m, "2024-01-01T10:30:00Z", "107"),  # before the group: 11:00/95 keeps the reset
        energy(m, "2024-01-01T12:00:00Z", "121"),  # a conflict at the tail, in order
        energy(m, "2024-01-01T12:00:00Z", "119.5"),
    )
    # Conflicts arriving in order at the tail, within one import, both orders.
    for name, values in (("conflict-tail-up", ("105", "110")),
                         ("conflict-tail-down", ("110", "105"))):
        case(name).step(
            "2024-01-02T00:00:00Z",
            energy(name, "2024-01-01T10:00:00Z", "100"),
            energy(name, "2024-01-01T11:00:00Z", values[0]),
            energy(name, "2024-01-01T11:00:00Z", values[1]),
            energy(name, "2024-01-01T12:00:00Z", "120"),
            energy(name, "2024-01-01T12:00:00Z", "99.999"),
            energy(name, "2024-01-01T12:00:00Z", "-1"),
            energy(name, "2024-01-01T13:00:00Z", "121"),
        )
    # A conflict as the very first readings of a series.
    m = "conflict-first"
    case("conflict-first").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "7"),
        energy(m, "2024-01-01T10:00:00Z", "5"),
        power(m, "2024-01-01T10:00:00Z", "7"),
        power(m, "2024-01-01T10:00:00Z", "5000", "W"),
        power(m, "2024-01-01T10:00:00Z", "7000", "W"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "6"),
        energy(m, "2024-01-01T09:00:00Z", "6"),
    )


def resets():
    m = "reset"
    case("resets-and-fills").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "500"),
        energy(m, "2024-01-01T11:00:00Z", "3"),  # a drop: counter_reset
        energy(m, "2024-01-01T12:00:00Z", "5"),
        energy(m, "2024-01-01T13:00:00Z", "0"),
        energy(m, "2024-01-01T14:00:00Z", "0"),
        energy(m, "2024-01-01T15:00:00Z", "2"),
    ).step(
        "2024-01-02T01:00:00Z",
        energy(m, "2024-01-01T10:30:00Z", "600"),  # fill before the reset: still a reset
        energy(m, "2024-01-01T11:30:00Z", "4"),  # fill after it: 12:00's delta 1
    ).step(
        "2024-01-02T02:00:00Z",
        energy(m, "2024-01-01T12:30:00Z", "1"),  # fill makes 13:00 no longer a reset...
        energy(m, "2024-01-01T12:45:00Z", "0"),  # ...and this one makes it delta 0
    )
    # A fill that turns a reset into a normal delta and moves the reset.
    m = "reset-moves"
    case("reset-moves").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "100"),
        energy(m, "2024-01-01T12:00:00Z", "50"),
        energy(m, "2024-01-01T13:00:00Z", "60"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T11:00:00Z", "40"),  # 11:00 the reset now, 12:00 delta 10
    ).step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:30:00Z", "30"),  # 10:30 the reset, 11:00 delta 10
        energy(m, "2024-01-01T09:00:00Z", "200"),  # 10:00 a reset too
    )


def jumps():
    m = "jump"
    case("jumps").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "0"),
        energy(m, "2024-01-01T11:00:00Z", "10000"),  # exactly the threshold: no flag
        energy(m, "2024-01-01T12:00:00Z", "20000.001"),  # 10000.001: suspicious_jump
        energy(m, "2024-01-01T13:00:00Z", "30000001.001", "Wh"),  # 10000.000001 kWh
        energy(m, "2024-01-01T14:00:00Z", "40.000001001", "MWh"),  # 10000 kWh exactly
        energy(m, "2024-01-01T15:00:00Z", "1000000"),
    ).step(
        "2024-01-02T01:00:00Z",
        energy(m, "2024-01-01T11:30:00Z", "15000"),  # splits the 12:00 jump in two
        energy(m, "2024-01-01T14:30:00Z", "1000000"),  # takes the 15:00 jump: 15:00 delta 0
    ).step(
        "2024-01-02T02:00:00Z",
        energy(m, "2024-01-01T16:00:00Z", "1000001"),
        energy(m, "2024-01-01T17:00:00Z", "1000002"),
        energy(m, "2024-01-01T16:30:00Z", "2000000"),  # a late jump: 17:00 a reset
        energy(m, "2024-01-01T09:00:00Z", "-10000.001"),  # before the first: 10:00 a jump
    )


def negatives():
    m = "negative"
    case("negative-values").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "-5"),  # first_reading + negative_value
        energy(m, "2024-01-01T11:00:00Z", "-3"),  # delta 2
        energy(m, "2024-01-01T12:00:00Z", "4"),
        energy(m, "2024-01-01T13:00:00Z", "-4"),  # reset + negative
        energy(m, "2024-01-01T14:00:00Z", "-0"),  # "0", not negative
        energy(m, "2024-01-01T15:00:00Z", "-0.000", "MWh"),
        energy(m, "2024-01-01T16:00:00Z", "-0.001"),
        power(m, "2024-01-01T10:00:00Z", "-2500", "W"),  # gauges: no flag
        power(m, "2024-01-01T11:00:00Z", "-0", "W"),
    ).step(
        "2024-01-02T01:00:00Z",
        energy(m, "2024-01-01T12:30:00Z", "-10"),  # late negative between 4 and -4
        energy(m, "2024-01-01T09:00:00Z", "-6"),
        energy(m, "2024-01-01T13:00:00Z", "-4000", "Wh"),  # a repeat
    )


def gauges():
    m = "gauge"
    case("gauges").step(
        "2024-01-02T00:00:00Z",
        power(m, "2024-01-01T10:00:00Z", "1500", "W"),
        energy(m, "2024-01-01T10:00:00Z", "1"),
        power(m, "2024-01-01T11:00:00Z", "0.002", "MW"),
        energy(m, "2024-01-01T11:00:00Z", "2.5"),
        power(m, "2024-01-01T10:30:00Z", "1"),  # late gauge: out_of_order, no delta
        power(m, "2024-01-01T12:00:00Z", "0"),
        power(m, "2024-01-01T12:00:00Z", "0.5"),  # gauge conflict
        power(m, "2024-01-01T13:00:00Z", "0.000001", "GW"),
        power(m, "2024-01-01T14:00:00Z", "5", "kWh"),  # energy unit on a gauge: an error
        energy(m, "2024-01-01T14:00:00Z", "5", "kW"),  # power unit on a counter: an error
    ).step(
        "2024-01-02T01:00:00Z",
        power(m, "2024-01-01T09:00:00Z", "7"),  # late before the first
        power(m, "2024-01-01T11:00:00+01:00", "1.5"),  # a repeat of 10:00 (kW)
        power(m, "2024-01-01T12:00:00Z", "500", "W"),  # a repeat within the conflict
        power(m, "2024-01-01T12:00:00Z", "0.25"),  # a third value at 12:00
        energy(m, "2024-01-01T10:30:00Z", "2"),
    )


def future():
    m = "future"
    case("future-timestamps").step(
        "2024-01-01T10:00:00Z",
        energy(m, "2024-01-01T09:00:00Z", "0"),
        energy(m, "2024-01-01T10:05:00Z", "1"),  # exactly the 5 m tolerance: no flag
        energy(m, "2024-01-01T10:05:00.001Z", "2"),  # 1 ms beyond: future_timestamp
        energy(m, "2024-01-01T12:00:00Z", "7"),  # two hours ahead
        power(m, "2024-01-02T10:00:00Z", "1"),  # gauges are flagged too
    ).step(
        # Received 12:00: a copy of 12:00 keeps its flag (earliest receipt
        # wins); 12:10 is new and 10 minutes ahead.
        "2024-01-01T13:00:00+01:00",
        energy(m, "2024-01-01T12:00:00Z", "7"),
        energy(m, "2024-01-01T12:10:00Z", "8"),
        energy(m, "2024-01-01T12:04:00Z", "7.5"),
    ).step(
        # Received before all of them: repeats gain future_timestamp.
        "2024-01-01T08:59:59.999Z",
        energy(m, "2024-01-01T10:05:00Z", "1"),
        energy(m, "2024-01-01T09:00:00Z", "0"),  # 1 ms ahead only: no flag
        energy(m, "2024-01-01T12:04:00Z", "7500", "Wh"),
    ).step(
        "2024-01-03T00:00:00Z",
        energy(m, "2024-01-01T10:05:00.001Z", "2"),  # a later receipt changes nothing
        power(m, "2024-01-02T10:00:00Z", "1000", "W"),
    )
    # The earlier receipt comes first here: the flag is set at once and stays.
    m = "future-first"
    case("future-first").step(
        "2024-01-01T06:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "10"),
        energy(m, "2024-01-01T11:00:00Z", "11"),
    ).step(
        "2024-01-01T12:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "10"),
        energy(m, "2024-01-01T11:00:00Z", "11"),
        energy(m, "2024-01-01T12:00:00Z", "12"),
        energy(m, "2024-01-01T12:05:00Z", "12.5"),
        energy(m, "2024-01-01T12:05:00.001Z", "12.6"),
    )


def gateway_timestamps():
    m = "gw"
    case("gateway-timestamps").step(
        "2024-01-01T10:00:00Z",
        energy(m, OMIT, "1"),  # at the receive time: gateway_timestamp
        energy(m, "2024-01-01T09:00:00Z", "0.5"),
        power(m, None, "2"),  # null means the receive time too
        power(m, None, "2000", "W"),  # the same reading again
        power(m, OMIT, "3"),  # another value at the same instant: a conflict
    ).step(
        # The same payloads received later are new readings at a new time.
        "2024-01-01T10:15:00.250Z",
        energy(m, OMIT, "1"),
        power(m, None, "2"),
        energy(m, "2024-01-01T10:00:00Z", "1"),  # stamped copy of the first: flags union
        energy(m, "2024-01-01T10:10:00Z", "1.2"),  # a late reading between them
    ).step(
        "2024-01-01T11:00:00+01:00",  # 10:00Z again, written with an offset
        energy(m, OMIT, "0.9"),  # a conflict with the stored 10:00 reading
        energy(m, "2024-01-01T10:15:00.250Z", "1"),
    )
    # A stamped reading first, its unstamped copy later: the merged row gains
    # gateway_timestamp (a revision); and the other way round.
    m = "gw-merge"
    case("gateway-timestamp-merge").step(
        "2024-01-01T10:00:00Z",
        energy(m, "2024-01-01T10:00:00Z", "5"),
        energy(m + "-2", OMIT, "5"),
    ).step(
        "2024-01-01T10:00:00Z",
        energy(m, OMIT, "5"),
        energy(m + "-2", "2024-01-01T10:00:00Z", "5"),
    )


def dst_and_leap():
    # Lines on a meters/ topic take the mapping with zone Europe/Berlin, so
    # local times without an offset are accepted there.
    t = "meters/dst"
    m = "dst"
    case("dst-and-leap").step(
        "2024-11-01T00:00:00Z",
        energy(m, "2024-10-27T01:30:00", "10", topic=t),  # CEST, unique
        energy(m, "2024-10-27T02:30:00", "11", topic=t),  # twice: earlier, dst_ambiguous
        energy(m, "2024-10-27T03:30:00", "12", topic=t),  # CET
        energy(m, "2024-03-31T02:30:00", "5", topic=t),  # gap: moved forward, dst_gap
        energy(m, "2024-03-31T01:30:00", "4", topic=t),
        energy(m, "2024-03-31T03:30:00", "6", topic=t),  # 01:30Z, a conflict with the gap's
        energy("leap", "2016-12-31T23:59:59Z", "1"),
        energy("leap", "2016-12-31T23:59:60Z", "2"),  # stored as 23:59:59.999, leap_second
        energy("leap", "2017-01-01T00:00:00Z", "3"),
        energy("leap", "2016-12-31T12:59:60Z", "4"),  # not a leap second: an error
    ).step(
        "2024-11-01T00:00:00Z",
        # The same instants with an offset: no flag of their own, so the
        # stored flags stay (intrinsic flags are the union of the copies).
        energy(m, "2024-10-27T00:30:00Z", "11", topic=t),
        energy(m, "2024-03-31T01:30:00Z", "5", topic=t),
        energy("leap", "2016-12-31T23:59:59.999Z", "2"),
        # And the other way round: first stamped plainly, then its flagged copy.
        energy(m, "2024-10-27T00:15:00Z", "10.5", topic=t),
        energy(m, "2024-10-27T02:15:00", "10.5", topic=t),  # the earlier 02:15: 00:15Z
        energy("leap", "2016-12-31T23:59:59.999Z", "2.5"),
        energy("leap", "2017-01-01T00:59:60+01:00", "2.5"),
    )


def multi_device():
    # Four devices, interleaved, over four imports; names that need escaping.
    a, b, c, d = "dev-a", "living room/plug", "z\u00e4hler \"1\"", "a,b"
    case("multi-device").step(
        "2024-01-02T00:00:00Z",
        energy(a, "2024-01-01T10:00:00Z", "100"),
        energy(b, "2024-01-01T10:00:00Z", "5"),
        power(a, "2024-01-01T10:00:00Z", "1"),
        energy(c, "2024-01-01T10:00:00Z", "0.5"),
        energy(a, "2024-01-01T11:00:00Z", "110"),
        energy(b, "2024-01-01T11:00:00Z", "4"),
        energy(d, "2024-01-01T12:00:00Z", "9"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(b, "2024-01-01T10:30:00Z", "4.5"),
        energy(a, "2024-01-01T10:30:00Z", "105"),
        energy(c, "2024-01-01T09:00:00Z", "0.25"),
        power(a, "2024-01-01T09:00:00Z", "2"),
        energy(d, "2024-01-01T11:00:00Z", "9"),
        energy(d, "2024-01-01T13:00:00Z", "10009.5"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(a, "2024-01-01T11:00:00Z", "111"),
        energy(b, "2024-01-01T11:00:00Z", "4"),
        energy(c, "2024-01-01T10:00:00Z", "0.5"),
        energy(d, "2024-01-01T12:30:00Z", "9.5"),
        energy("dev-a", "2024-01-01T12:00:00Z", "-1"),
        power(b, "2024-01-01T10:00:00Z", "1"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(c, "2024-01-01T11:00:00Z", "0.75"),
        energy(a, "2024-01-01T13:00:00Z", "120"),
        energy(b, "2024-01-01T12:00:00Z", "4.5"),
        energy(d, "2024-01-01T12:00:00Z", "9"),
    )


def extreme_values():
    m = "extreme"
    big = "9" * 40  # 40 significant digits, the limit
    case("extreme-values").step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T00:00:00Z", "0.0000000000000000000000000000000000000001"),
        energy(m, "2024-01-01T01:00:00Z", "1" + "0" * 39),
        # 10^39 - 10^-40 has 80 significant digits: no exact delta.
        energy(m, "2024-01-01T02:00:00Z", "-" + big),
        energy(m, "2024-01-01T03:00:00Z", big),  # the delta would be 2 * (10^40 - 1)
        energy(m, "2024-01-01T04:00:00Z", "1" + "0" * 40),  # 10^40: too large, an error
        energy(m, "2024-01-01T05:00:00Z", "1e-41"),  # too small a step: an error
        energy(m, "2024-01-01T06:00:00Z", "123.45e2"),
        energy(m, "2024-01-01T07:00:00Z", "12345.000000000000000000000000000000000001"),
        energy(m, "2024-01-01T08:00:00Z", "1.2345e+4"),
        energy(m, "2024-01-01T09:00:00Z", "1.", "kWh"),  # not a decimal
        energy(m, "2024-01-01T10:00:00Z", '"12 345"'),  # not a decimal
        energy(m, "2024-01-01T11:00:00Z", '"  12345 "'),  # not a decimal
        energy(m, "2024-01-01T12:00:00Z", "0.000000000000000000000000000000000000001", "GWh"),
        energy(m, "2024-01-01T13:00:00Z", "12345678901234567890123456789012345678.9", "Wh"),
        energy(m, "2024-01-01T14:00:00Z", "1", "GWh"),
    ).step(
        "2024-01-02T00:00:00Z",
        energy(m, "2024-01-01T01:30:00Z", "1" + "0" * 39),  # a delta of 0 after the big one
        energy(m, "2024-01-01T00:30:00Z", "0"),
    )


def arrays_and_errors():
    m = "arrays"
    batch = "[" + ",".join([
        payload(m, "2024-01-01T10:00:00Z", "1"),
        payload(m, "2024-01-01T12:00:00Z", "3"),
        payload(m, "2024-01-01T11:00:00Z", "2"),
        payload(m, "2024-01-01T11:00:00Z", "2000", "Wh"),  # a repeat inside the batch
        payload(m, "2024-01-01T09:00:00Z", "5", "kW", "power"),
    ]) + "]"
    bad_element = "[" + ",".join([
        payload(m, "2024-01-01T13:00:00Z", "4"),
        payload(m, "2024-01-01T14:00:00Z", "5", "furlongs"),  # fails alone
        payload(m, "2024-01-01T15:00:00Z", "6"),
    ]) + "]"
    case("arrays-and-errors").step(
        "2024-01-02T00:00:00Z",
        batch,
        bad_element,
        "",  # blank lines are skipped
        "{not json",
        "online",
        '"unavailable"',
        "[]",
        '{"linkquality":120}',
        reading(m, "2024-01-01T16:00:00Z", "7", "kWh", "water"),
        energy(m, "2024-01-01T16:00:00", "7"),  # no offset, no zone on "import"
        energy(m, "2024-01-01T16:00:00Z", "true"),
        energy(m, "2024-01-01T16:00:00Z", '"nan"'),
        energy("", "2024-01-01T16:00:00Z", "7"),
        energy(m, 1704124800, "7"),  # a number where RFC 3339 text is expected
        "other/topic\t" + payload(m, "2024-01-01T16:00:00Z", "7"),
        energy(m, "2024-01-01T16:00:00Z", "7"),
    ).step(
        "2024-01-02T00:00:00Z",
        batch,  # the whole batch again: duplicates
        "meters/arrays\t" + batch,  # and on another mapping
        energy(m, "2024-01-01T14:00:00Z", "5"),  # what failed before, fixed
    )


def reimport():
    # One file imported three times, at three receive times.
    m = "reimport"
    lines = [
        energy(m, "2024-01-01T10:00:00Z", "1"),
        energy(m, "2024-01-01T12:00:00Z", "3"),
        energy(m, "2024-01-01T11:00:00Z", "2"),
        energy(m, OMIT, "4"),
        power(m, "2024-01-01T11:00:00Z", "1"),
    ]
    case("reimport").step("2024-01-01T12:30:00Z", *lines) \
        .step("2024-01-01T10:30:00Z", *lines) \
        .step("2024-01-01T12:30:00Z", *lines)


# ---------------------------------------------------------------- random

class Rng:
    """randrange, shuffle and sample built on random.Random(seed).random()
    alone: Python guarantees that sequence across versions, not the others."""

    def __init__(self, seed):
        self._random = random.Random(seed)

    def randrange(self, start, stop=None):
        if stop is None:
            start, stop = 0, start
        return start + int(self._random.random() * (stop - start))

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.randrange(i + 1)
            items[i], items[j] = items[j], items[i]

    def sample(self, population, k):
        pool = list(population)
        self.shuffle(pool)
        return pool[:k]


OFFSETS = [(0, "Z"), (3600000, "+01:00"), (20700000, "+05:45"), (-12600000, "-03:30"),
           (-18000000, "-05:00")]
BASE_MS = 1709251200000  # 2024-03-01T00:00:00Z


def format_ms(ms, offset_ms=0, suffix="Z", millis=True):
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms + offset_ms)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if millis or t.microsecond:
        text += ".%03d" % (t.microsecond // 1000)
    return text + suffix


def milli_text(milli, extra_places):
    """Thousandths of the canonical unit as decimal text, times 10^-extra_places."""
    negative = milli < 0
    digits = str(abs(milli))
    places = 3 + extra_places
    if len(digits) <= places:
        digits = "0" * (places + 1 - len(digits)) + digits
    return ("-" if negative else "") + digits[:-places] + "." + digits[-places:]


def spell(rng, device, metric, ts_ms, milli):
    """One copy of a reading: unit, offset, millisecond digits and number or string vary."""
    kind = rng.randrange(3)
    if kind == 0:
        value, unit = milli_text(milli, 0), "kWh"
    elif kind == 1:
        value, unit = str(milli), "Wh"
    else:
        value, unit = milli_text(milli, 3), "MWh"
    if metric == "power":
        unit = unit.replace("h", "")
    if rng.randrange(8) == 0:
        value = json.dumps(value)
    offset_ms, suffix = OFFSETS[rng.randrange(len(OFFSETS))]
    ts = format_ms(ts_ms, offset_ms, suffix, millis=rng.randrange(2) == 0)
    return reading(device, ts, value, unit, metric)


def random_series(rng, count):
    """`count` [(ts_ms, milli_value)] in series order, with the rules' cases mixed in."""
    ts = BASE_MS + rng.randrange(86400) * 1000
    value = rng.randrange(1000000)
    readings = []
    for i in range(count):
        roll = rng.randrange(100)
        if i > 0 and roll < 8:
            value += 1 + rng.randrange(500)  # same timestamp, another value: a conflict
        elif i > 0 and roll < 11:
            value -= 1 + rng.randrange(500)  # a conflict below the other value
        else:
            ts += 1000 * (1 + rng.randrange(86400 if roll < 15 else 900))
            if roll < 22:
                value = rng.randrange(1000)  # a reset
            elif roll < 26:
                value += 10000000 + rng.randrange(5000000)  # a jump above 10,000 kWh
            elif roll < 27:
                value += 10000000  # exactly the threshold
            elif roll < 30:
                value = -rng.randrange(5000)  # a negative register
            elif roll < 35:
                pass  # the same value again: delta 0
            else:
                value += rng.randrange(20000)
        readings.append((ts, value))
    return readings


def random_case(rng, name, streams):
    """`streams` streams of 30 to 60 random readings each (one device's energy
    series, sometimes also its power series or a second device's energy),
    a fifth of them sent more than once, delivered as a random permutation
    (or an almost ordered one) in 2 to 5 imports."""
    copies = []
    for s in range(streams):
        device = "%s-s%d" % (name, s + 1)
        total = 30 + rng.randrange(31)
        series = [(device, "energy")]
        extra = rng.randrange(3)
        if extra == 1:
            series.append((device, "power"))
        elif extra == 2:
            series.append((device + "b", "energy"))
        first = total if len(series) == 1 else 10 + rng.randrange(total - 19)
        for (dev, metric), count in zip(series, [first, total - first]):
            for ts_ms, milli in random_series(rng, count):
                for _ in range(1 + (rng.randrange(1, 4) if rng.randrange(5) == 0 else 0)):
                    copies.append((ts_ms, spell(rng, dev, metric, ts_ms, milli)))
    if rng.randrange(2) == 0:
        rng.shuffle(copies)
    else:
        # Mostly in order: a fifth of the copies moved to a random later place.
        copies.sort(key=lambda c: c[0])
        for i in range(len(copies) - 1, -1, -1):
            if rng.randrange(5) == 0:
                moved = copies.pop(i)
                copies.insert(rng.randrange(i, len(copies) + 1), moved)
    steps = 2 + rng.randrange(4)
    cuts = sorted(rng.sample(range(1, len(copies)), steps - 1))
    c = case(name)
    for lo, hi in zip([0] + cuts, cuts + [len(copies)]):
        part = copies[lo:hi]
        # Received a little after the newest reading of the import, or before
        # it (future_timestamp for some), or much earlier than that.
        newest = max(ts for ts, _ in part)
        roll = rng.randrange(10)
        if roll < 5:
            received = newest + rng.randrange(3600000)
        elif roll < 9:
            received = newest - rng.randrange(4 * 3600000)
        else:
            received = BASE_MS
        offset_ms, suffix = OFFSETS[rng.randrange(len(OFFSETS))]
        c.step(format_ms(received, offset_ms, suffix, millis=rng.randrange(2) == 0),
               *[line for _, line in part])


def random_cases():
    rng = Rng(SEED)
    for i in range(1, 21):
        random_case(rng, "random-%02d" % i, 1)
    random_case(rng, "random-mixed", 5)  # five streams interleaved in one buffer


# ---------------------------------------------------------------- output


def write():
    if os.path.isdir(INPUTS):
        shutil.rmtree(INPUTS)
    names = set()
    for c in CASES:
        assert c.name not in names, c.name
        names.add(c.name)
        directory = os.path.join(INPUTS, c.name)
        os.makedirs(directory)
        manifest = []
        for k, (received_at, lines) in enumerate(c.steps, 1):
            file_name = "step-%d.jsonl" % k
            with open(os.path.join(directory, file_name), "w", encoding="utf-8",
                      newline="\n") as f:
                f.write("".join(line + "\n" for line in lines))
            manifest.append("%s %s\n" % (file_name, received_at))
        with open(os.path.join(directory, "steps"), "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(manifest))


def main():
    seed_sample()
    in_order()
    out_of_order()
    repeats()
    conflicts()
    resets()
    jumps()
    negatives()
    gauges()
    future()
    gateway_timestamps()
    dst_and_leap()
    multi_device()
    extreme_values()
    arrays_and_errors()
    reimport()
    random_cases()
    write()


if __name__ == "__main__":
    main()
