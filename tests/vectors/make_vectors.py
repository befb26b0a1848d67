#!/usr/bin/python3
"""Reference implementation of the meter-agent canonical forms and event_id.

This is an INDEPENDENT implementation written from the rules in
docs/PROTOCOL.md ("Canonical forms", "event_id"); it deliberately shares no
code or logic with the C++ agent.  It generates tests/vectors/event_id.json,
which both the C++ tests and the central (Python) tests read.

Python 3.11 standard library only.  Run with the system interpreter:

    /usr/bin/python3 tests/vectors/make_vectors.py            # (re)write event_id.json
    /usr/bin/python3 tests/vectors/make_vectors.py --check    # exit 1 if the file is stale
    /usr/bin/python3 tests/vectors/make_vectors.py --stdout   # print instead of writing

Zone rules come from the system tz database (zoneinfo), so --check can fail
after a tzdata update that changes the rules for a zone used below.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import hashlib
import json
import re
import sys
import zoneinfo
from pathlib import Path

OUT_PATH = Path(__file__).resolve().parent / "event_id.json"
GENERATOR = "tests/vectors/make_vectors.py"

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


class Invalid(ValueError):
    """The reading must be rejected.  .field names the offending input field."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


# --------------------------------------------------------------------------
# Values and units
# --------------------------------------------------------------------------

# metric_type -> (canonical unit, {accepted unit: power-of-ten shift into the canonical unit})
UNITS: dict[str, tuple[str, dict[str, int]]] = {
    "energy": ("kWh", {"Wh": -3, "kWh": 0, "MWh": 3, "GWh": 6}),
    "power": ("kW", {"W": -3, "kW": 0, "MW": 3, "GW": 6}),
}

MAX_SIGNIFICANT_DIGITS = 40
MAX_ADJUSTED_EXPONENT = 39   # |value| < 10^40  <=>  exponent of leading digit <= 39
MIN_EXPONENT = -40           # step (last significant digit) >= 10^-40

# JSON number syntax, relaxed: leading zeros ("007"), a leading "+", and a
# missing integer part (".5") are accepted.  A missing fraction part ("1.")
# is not.  [0-9] rather than \d so that non-ASCII digits are not accepted.
VALUE_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _plain(negative: bool, coeff: str, exp: int) -> str:
    """Plain (non-exponent) text of (-1)^negative * int(coeff) * 10^exp.

    coeff has no leading or trailing zeros and is non-empty.
    """
    if exp >= 0:
        text = coeff + "0" * exp
    else:
        point = len(coeff) + exp          # digits before the decimal point
        if point > 0:
            text = coeff[:point] + "." + coeff[point:]
        else:
            text = "0." + "0" * (-point) + coeff
    return ("-" if negative else "") + text


def canonical_value(value: str, metric_type: str, unit: str) -> tuple[str, str]:
    """Return (canonical value text, canonical unit) or raise Invalid."""
    if "|" in metric_type:
        raise Invalid("metric_type", "metric names must not contain '|'")
    if metric_type not in UNITS:
        raise Invalid("metric_type", f"unknown metric_type {metric_type!r}")
    canon_unit, shifts = UNITS[metric_type]
    if unit not in shifts:  # case-sensitive on purpose: "mWh" is milli-, not mega-
        raise Invalid("unit", f"unit {unit!r} not accepted for {metric_type}")
    if not isinstance(value, str) or not VALUE_RE.fullmatch(value):
        raise Invalid("value", f"value {value!r} is not a decimal number")

    shift = shifts[unit]

    # Exact decimal arithmetic on the digit string (no context rounding involved).
    parsed = decimal.Decimal(value)           # construction from text is always exact
    sign, digits, exp = parsed.as_tuple()
    coeff = "".join(map(str, digits)).lstrip("0")
    if not coeff:
        return "0", canon_unit                # every zero, incl. "-0.000", is "0"
    exp += shift
    stripped = coeff.rstrip("0")
    exp += len(coeff) - len(stripped)
    coeff = stripped

    if len(coeff) > MAX_SIGNIFICANT_DIGITS:
        raise Invalid("value", f"{len(coeff)} significant digits (max {MAX_SIGNIFICANT_DIGITS})")
    if exp + len(coeff) - 1 > MAX_ADJUSTED_EXPONENT:
        raise Invalid("value", "magnitude >= 10^40 after unit conversion")
    if exp < MIN_EXPONENT:
        raise Invalid("value", "step below 10^-40 after unit conversion")

    text = _plain(bool(sign), coeff, exp)

    # Cross-check against decimal's own exact shift (scaleb) with traps on,
    # so any rounding would raise instead of passing silently.
    ctx = decimal.Context(prec=200, Emax=10**6, Emin=-(10**6),
                          traps=[decimal.Inexact, decimal.Rounded, decimal.Overflow,
                                 decimal.Underflow, decimal.InvalidOperation])
    shifted = parsed.scaleb(shift, context=ctx)
    assert shifted == decimal.Decimal(text), (value, unit, shifted, text)
    assert "e" not in text.lower() and text != "-0"
    return text, canon_unit


# --------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------

# RFC 3339 date-time, plus what meters send of ISO 8601: offsets "+hhmm" and
# "+hh", and the basic form "YYYYMMDDThhmmss[.f]" (with "T" only).
RFC3339_RE = re.compile(
    r"(?P<Y>[0-9]{4})-(?P<M>[0-9]{2})-(?P<D>[0-9]{2})"
    r"[Tt ]"
    r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]+))?"
    r"(?P<off>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
BASIC_RE = re.compile(
    r"(?P<Y>[0-9]{4})(?P<M>[0-9]{2})(?P<D>[0-9]{2})"
    r"[Tt]"
    r"(?P<h>[0-9]{2})(?P<m>[0-9]{2})(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]+))?"
    r"(?P<off>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
EPOCH_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _fmt(t: dt.datetime) -> str:
    t = t.astimezone(UTC)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}Z")


def _local_to_utc(wall: dt.datetime, zone_name: str) -> tuple[dt.datetime, list[str]]:
    """Resolve a naive wall-clock time in an IANA zone.

    overlap (fall back): the EARLIER instant (fold=0), flag dst_ambiguous.
    gap (spring forward): moved forward by the gap length, flag dst_gap.
    """
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid("zone", f"unknown IANA zone {zone_name!r}") from exc

    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    off0, off1 = first.utcoffset(), second.utcoffset()
    if off0 == off1:
        return first.astimezone(UTC), []

    def exists(t: dt.datetime) -> bool:
        back = t.astimezone(UTC).astimezone(zone)
        return back.replace(tzinfo=None, fold=0) == wall

    if exists(first) and exists(second):
        # Ambiguous: fold=0 is the earlier of the two instants.
        a, b = first.astimezone(UTC), second.astimezone(UTC)
        assert a < b, (wall, zone_name)
        return a, ["dst_ambiguous"]

    assert not exists(first) and not exists(second), (wall, zone_name)
    # Nonexistent: move the wall time forward by the gap and apply the
    # post-transition offset.  Computed explicitly, then checked against
    # zoneinfo's fold=0 result (which applies the pre-transition offset).
    gap = max(off0, off1) - min(off0, off1)
    post_offset = max(off0, off1)       # clocks jump forward => offset increases
    moved = (wall + gap).replace(tzinfo=dt.timezone(post_offset))
    result = moved.astimezone(UTC)
    assert result == first.astimezone(UTC), (wall, zone_name, result, first)
    back = result.astimezone(zone)
    assert back.replace(tzinfo=None) == wall + gap, (wall, zone_name, back)
    return result, ["dst_gap"]


def canonical_timestamp(text: str, fmt: str, zone: str | None) -> tuple[str, list[str]]:
    """Return (canonical UTC text, intrinsic flags) or raise Invalid."""
    if fmt in ("epoch_seconds", "epoch_milliseconds"):
        if not EPOCH_RE.fullmatch(text):
            raise Invalid("timestamp", f"{fmt} value {text!r} is not a decimal number")
        scale = 1000 if fmt == "epoch_seconds" else 1
        millis = (decimal.Decimal(text) * scale).to_integral_value(rounding=decimal.ROUND_FLOOR)
        try:
            t = EPOCH + dt.timedelta(milliseconds=int(millis))
        except OverflowError as exc:
            raise Invalid("timestamp", "out of range") from exc
        return _fmt(t), []

    if fmt != "rfc3339":
        raise Invalid("timestamp_format", f"unknown timestamp_format {fmt!r}")

    m = RFC3339_RE.fullmatch(text) or BASIC_RE.fullmatch(text)
    if not m:
        raise Invalid("timestamp", f"{text!r} is not RFC 3339 date-time syntax")
    year, month, day = int(m["Y"]), int(m["M"]), int(m["D"])
    hour, minute, second = int(m["h"]), int(m["m"]), int(m["s"])
    frac = m["frac"] or ""
    flags: list[str] = []

    if not 1 <= month <= 12:
        raise Invalid("timestamp", "month out of range")
    if hour > 23 or minute > 59 or second > 60:
        raise Invalid("timestamp", "time of day out of range")
    millis = int((frac[:3]).ljust(3, "0"))    # truncate (= floor for the fraction)
    if second == 60:
        # Leap second: stored as the last millisecond of the preceding second.
        second, millis = 59, 999
        flags.append("leap_second")
    try:
        wall = dt.datetime(year, month, day, hour, minute, second, millis * 1000)
    except ValueError as exc:
        raise Invalid("timestamp", f"invalid calendar date: {exc}") from exc

    off = m["off"]
    if off is None:
        if zone is None:
            raise Invalid("timestamp", "local time without offset and no zone given")
        utc, zone_flags = _local_to_utc(wall, zone)
        flags += zone_flags
    else:
        if off in ("Z", "z"):
            minutes = 0
        else:
            digits = off[1:].replace(":", "")
            oh, om = int(digits[0:2]), int(digits[2:4] or "0")
            if oh > 23 or om > 59:
                raise Invalid("timestamp", f"offset {off} out of range")
            minutes = (oh * 60 + om) * (-1 if off[0] == "-" else 1)   # "-00:00" is UTC
        try:
            utc = wall.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))).astimezone(UTC)
        except OverflowError as exc:
            raise Invalid("timestamp", "out of range") from exc
    return _fmt(utc), sorted(flags)


# --------------------------------------------------------------------------
# event_id
# --------------------------------------------------------------------------

def event_id(device_id: str, timestamp: str, metric_type: str, value: str) -> str:
    return hashlib.sha256(f"{device_id}|{timestamp}|{metric_type}|{value}".encode("utf-8")).hexdigest()


def canonicalize(inp: dict) -> dict:
    device_id = inp["device_id"]
    if not isinstance(device_id, str):
        raise Invalid("device_id", "must be a string")
    device_id.encode("utf-8")  # must be valid Unicode (no lone surrogates)
    ts, flags = canonical_timestamp(inp["timestamp"], inp["timestamp_format"], inp["zone"])
    value, unit = canonical_value(inp["value"], inp["metric_type"], inp["unit"])
    return {"device_id": device_id, "timestamp": ts, "metric_type": inp["metric_type"],
            "value": value, "unit": unit, "flags": flags}


# --------------------------------------------------------------------------
# The vectors
# --------------------------------------------------------------------------

def _inp(device_id, timestamp, fmt, zone, metric_type, value, unit) -> dict:
    return {"device_id": device_id, "timestamp": timestamp, "timestamp_format": fmt,
            "zone": zone, "metric_type": metric_type, "value": value, "unit": unit}


def _rfc(ts, value="1", unit="kWh", device="m1", zone=None, metric="energy"):
    return _inp(device, ts, "rfc3339", zone, metric, value, unit)


def _epoch(ts, fmt="epoch_seconds", value="1", unit="kWh", device="m1", zone=None, metric="energy"):
    return _inp(device, ts, fmt, zone, metric, value, unit)


# Each entry: (name, input, {optional: expect_ts, expect_value, expect_flags,
#                            same_as, differs_from, note})
# expect_* are hand-computed and asserted, so a wrong reference
# implementation cannot silently produce wrong vectors.
V = []


def vec(name, inp, **kw):
    V.append((name, inp, kw))


BASE = "collide/base-1.5kWh-0900Z"
B = "2024-01-01T09:00:00.000Z"

# --- the required collision group: same reading spelled differently -------
vec(BASE, _rfc("2024-01-01T09:00:00Z", "1.5"), expect_ts=B, expect_value="1.5",
    expect_id="f1d679212eed3db4b8f66bdddcfb001bdafb9c30fee5f80fa82b37723d8c1419",
    note="hash input: m1|2024-01-01T09:00:00.000Z|energy|1.5")
vec("collide/1500Wh-1000+0100", _rfc("2024-01-01T10:00:00+01:00", "1500", "Wh"),
    expect_ts=B, expect_value="1.5", same_as=BASE,
    note="1500 Wh at 10:00+01:00 is the same reading as 1.5 kWh at 09:00Z")
vec("collide/0.0015MWh", _rfc("2024-01-01T09:00:00.000Z", "0.0015", "MWh"),
    expect_ts=B, expect_value="1.5", same_as=BASE)
vec("collide/0.0000015GWh-0400-0500", _rfc("2024-01-01T04:00:00-05:00", "0.0000015", "GWh"),
    expect_ts=B, expect_value="1.5", same_as=BASE)
vec("collide/epoch-seconds-1.50kWh", _epoch("1704099600", value="1.50"),
    expect_ts=B, expect_value="1.5", same_as=BASE)
vec("collide/epoch-seconds-fraction-truncated", _epoch("1704099600.0009999", value="1.5e0"),
    expect_ts=B, expect_value="1.5", same_as=BASE, note="0.9999 ms is truncated (floor) to .000")
vec("collide/epoch-ms-fraction-truncated", _epoch("1704099600000.999", "epoch_milliseconds", value="15e-1"),
    expect_ts=B, expect_value="1.5", same_as=BASE)
vec("collide/local-berlin-winter", _rfc("2024-01-01T10:00:00", "+01.5000", zone="Europe/Berlin"),
    expect_ts=B, expect_value="1.5", same_as=BASE, note="local time, CET (+01:00) in January")
vec("collide/submillisecond-truncated", _rfc("2024-01-01T09:00:00.0009Z", "1500.0", "Wh"),
    expect_ts=B, expect_value="1.5", same_as=BASE, note=".0009 s truncates to .000")
vec("collide/exponent-0.15e1", _rfc("2024-01-01t09:00:00z", ".15E+1"),
    expect_ts=B, expect_value="1.5", same_as=BASE)

# --- near pairs: must NOT collide with the base ------------------------------
vec("near/plus-1ms", _rfc("2024-01-01T09:00:00.001Z", "1.5"),
    expect_ts="2024-01-01T09:00:00.001Z", differs_from=BASE)
vec("near/power-not-energy", _rfc("2024-01-01T09:00:00Z", "1.5", "kW", metric="power"),
    expect_value="1.5", differs_from=BASE)
vec("near/device-id-case", _rfc("2024-01-01T09:00:00Z", "1.5", device="M1"), differs_from=BASE)
vec("near/device-id-trailing-space", _rfc("2024-01-01T09:00:00Z", "1.5", device="m1 "), differs_from=BASE)
vec("near/negative", _rfc("2024-01-01T09:00:00Z", "-1.5"), expect_value="-1.5", differs_from=BASE)
vec("near/1500kWh-not-Wh", _rfc("2024-01-01T10:00:00+01:00", "1500", "kWh"),
    expect_value="1500", differs_from=BASE)
vec("near/1.50001kWh", _rfc("2024-01-01T09:00:00Z", "1.50001"), expect_value="1.50001", differs_from=BASE)
vec("near/offset-sign-flipped", _rfc("2024-01-01T10:00:00-01:00", "1500", "Wh"),
    expect_ts="2024-01-01T11:00:00.000Z", differs_from=BASE)
vec("near/local-berlin-one-hour-off", _rfc("2024-01-01T09:00:00", "1.5", zone="Europe/Berlin"),
    expect_ts="2024-01-01T08:00:00.000Z", differs_from=BASE)

# --- RFC 3339 examples and timestamp syntax ---------------------------------
vec("ts/rfc3339-example-fraction", _rfc("1985-04-12T23:20:50.52Z"), expect_ts="1985-04-12T23:20:50.520Z")
vec("ts/rfc3339-example-minus-0800", _rfc("1996-12-19T16:39:57-08:00"), expect_ts="1996-12-20T00:39:57.000Z")
vec("ts/rfc3339-example-plus-0020", _rfc("1937-01-01T12:00:27.87+00:20"), expect_ts="1937-01-01T11:40:27.870Z")
LEAP = "ts/leap-second"
vec(LEAP, _rfc("1990-12-31T23:59:60Z"), expect_ts="1990-12-31T23:59:59.999Z", expect_flags=["leap_second"])
vec("ts/leap-second-rfc3339-example-minus-0800", _rfc("1990-12-31T15:59:60-08:00"),
    expect_ts="1990-12-31T23:59:59.999Z", expect_flags=["leap_second"], same_as=LEAP)
vec("ts/leap-second-with-fraction", _rfc("1990-12-31T23:59:60.5Z"),
    expect_ts="1990-12-31T23:59:59.999Z", expect_flags=["leap_second"], same_as=LEAP,
    note="any fraction within second 60 is also stored as :59.999")
vec("ts/last-ms-before-leap-second", _rfc("1990-12-31T23:59:59.999Z"),
    expect_ts="1990-12-31T23:59:59.999Z", expect_flags=[], same_as=LEAP,
    note="same event_id as the leap second: flags are not part of the hash")
U = "ts/utc-Z"
vec(U, _rfc("2024-06-15T12:00:00Z"), expect_ts="2024-06-15T12:00:00.000Z")
vec("ts/offset-plus-0000", _rfc("2024-06-15T12:00:00+00:00"), expect_ts="2024-06-15T12:00:00.000Z", same_as=U)
vec("ts/offset-minus-0000-is-utc", _rfc("2024-06-15T12:00:00-00:00"), expect_ts="2024-06-15T12:00:00.000Z",
    same_as=U, note="RFC 3339 '-00:00' (unknown local offset) means the time is UTC")
vec("ts/lowercase-t-and-z", _rfc("2024-06-15t12:00:00z"), expect_ts="2024-06-15T12:00:00.000Z", same_as=U)
vec("ts/space-separator", _rfc("2024-06-15 12:00:00Z"), expect_ts="2024-06-15T12:00:00.000Z", same_as=U)
vec("ts/offset-ignores-zone", _rfc("2024-06-15T12:00:00Z", zone="America/New_York"),
    expect_ts="2024-06-15T12:00:00.000Z", same_as=U, note="zone is used only when the timestamp has no offset")
vec("ts/local-zone-UTC", _rfc("2024-06-15T12:00:00", zone="UTC"), expect_ts="2024-06-15T12:00:00.000Z", same_as=U)
KTM = "ts/offset-plus-0545"
vec(KTM, _rfc("2024-06-15T12:00:00+05:45"), expect_ts="2024-06-15T06:15:00.000Z")
vec("ts/local-asia-kathmandu", _rfc("2024-06-15T12:00:00", zone="Asia/Kathmandu"),
    expect_ts="2024-06-15T06:15:00.000Z", same_as=KTM)
vec("ts/offset-minus-0330", _rfc("2024-06-15T12:00:00-03:30"), expect_ts="2024-06-15T15:30:00.000Z")
vec("ts/offset-without-colon", _rfc("2024-06-15T12:00:00+0545"), expect_ts="2024-06-15T06:15:00.000Z", same_as=KTM,
    note="ISO 8601 offset +hhmm, as strftime('%z') writes it")
vec("ts/offset-hours-only", _rfc("2024-06-15T12:00:00-03"), expect_ts="2024-06-15T15:00:00.000Z")
vec("ts/iso-basic-form", _rfc("20240615T120000.25+0200"), expect_ts="2024-06-15T10:00:00.250Z")
vec("ts/offset-plus-1400", _rfc("2024-06-15T12:00:00+14:00"), expect_ts="2024-06-14T22:00:00.000Z")
vec("ts/offset-minus-1200", _rfc("2024-06-15T12:00:00-12:00"), expect_ts="2024-06-16T00:00:00.000Z")
vec("ts/offset-plus-2359-max", _rfc("2024-06-15T12:00:00+23:59"), expect_ts="2024-06-14T12:01:00.000Z")
vec("ts/fraction-9-digits-truncated", _rfc("2024-06-15T12:00:00.123999999Z"), expect_ts="2024-06-15T12:00:00.123Z")
vec("ts/fraction-1-digit", _rfc("2024-06-15T12:00:00.5Z"), expect_ts="2024-06-15T12:00:00.500Z")
vec("ts/new-year-via-offset", _rfc("2024-12-31T23:30:00-01:00"), expect_ts="2025-01-01T00:30:00.000Z")
vec("ts/leap-day-2024", _rfc("2024-02-29T23:59:59.999+00:00"), expect_ts="2024-02-29T23:59:59.999Z")
vec("ts/leap-day-2000-century", _rfc("2000-02-29T12:00:00Z"), expect_ts="2000-02-29T12:00:00.000Z")

# --- local time with zone: DST ----------------------------------------------
vec("dst/berlin-summer-normal", _rfc("2026-07-01T12:00:00", zone="Europe/Berlin"),
    expect_ts="2026-07-01T10:00:00.000Z", expect_flags=[])
GAP = "dst/berlin-gap-0230"
vec(GAP, _rfc("2026-03-29T02:30:00", zone="Europe/Berlin"),
    expect_ts="2026-03-29T01:30:00.000Z", expect_flags=["dst_gap"],
    note="02:30 does not exist; moved forward by the 1 h gap to 03:30+02:00")
vec("dst/berlin-after-gap-0330", _rfc("2026-03-29T03:30:00", zone="Europe/Berlin"),
    expect_ts="2026-03-29T01:30:00.000Z", expect_flags=[], same_as=GAP)
vec("dst/berlin-gap-start-0200", _rfc("2026-03-29T02:00:00", zone="Europe/Berlin"),
    expect_ts="2026-03-29T01:00:00.000Z", expect_flags=["dst_gap"])
vec("dst/berlin-before-gap-015959999", _rfc("2026-03-29T01:59:59.999", zone="Europe/Berlin"),
    expect_ts="2026-03-29T00:59:59.999Z", expect_flags=[])
OVL = "dst/berlin-overlap-0230"
vec(OVL, _rfc("2026-10-25T02:30:00", zone="Europe/Berlin"),
    expect_ts="2026-10-25T00:30:00.000Z", expect_flags=["dst_ambiguous"],
    note="02:30 occurs twice; the earlier instant (+02:00, CEST) is used")
vec("dst/berlin-overlap-explicit-earlier", _rfc("2026-10-25T02:30:00+02:00"),
    expect_ts="2026-10-25T00:30:00.000Z", expect_flags=[], same_as=OVL)
vec("dst/berlin-overlap-explicit-later", _rfc("2026-10-25T02:30:00+01:00"),
    expect_ts="2026-10-25T01:30:00.000Z", expect_flags=[], differs_from=OVL)
vec("dst/berlin-overlap-start-0200", _rfc("2026-10-25T02:00:00", zone="Europe/Berlin"),
    expect_ts="2026-10-25T00:00:00.000Z", expect_flags=["dst_ambiguous"])
vec("dst/berlin-after-overlap-0300", _rfc("2026-10-25T03:00:00", zone="Europe/Berlin"),
    expect_ts="2026-10-25T02:00:00.000Z", expect_flags=[])
vec("dst/new-york-gap-0230", _rfc("2026-03-08T02:30:00", zone="America/New_York", device="ny-1"),
    expect_ts="2026-03-08T07:30:00.000Z", expect_flags=["dst_gap"])
vec("dst/new-york-overlap-0130", _rfc("2026-11-01T01:30:00", zone="America/New_York", device="ny-1"),
    expect_ts="2026-11-01T05:30:00.000Z", expect_flags=["dst_ambiguous"])
vec("dst/new-york-overlap-end-fraction", _rfc("2026-11-01T01:59:59.9999", zone="America/New_York", device="ny-1"),
    expect_ts="2026-11-01T05:59:59.999Z", expect_flags=["dst_ambiguous"])
vec("dst/new-york-winter-normal", _rfc("2026-01-15T08:00:00", zone="America/New_York", device="ny-1"),
    expect_ts="2026-01-15T13:00:00.000Z", expect_flags=[])
vec("dst/lord-howe-overlap-30min", _rfc("2026-04-05T01:45:00", zone="Australia/Lord_Howe", device="lh-1"),
    expect_ts="2026-04-04T14:45:00.000Z", expect_flags=["dst_ambiguous"],
    note="30-minute DST: 01:30-02:00 occurs twice; earlier instant is +11:00")
vec("dst/lord-howe-gap-30min", _rfc("2026-10-04T02:15:00", zone="Australia/Lord_Howe", device="lh-1"),
    expect_ts="2026-10-03T15:45:00.000Z", expect_flags=["dst_gap"],
    note="02:00-02:30 does not exist; 02:15 moves forward 30 min to 02:45+11:00")
vec("dst/lord-howe-summer-normal", _rfc("2026-01-15T12:00:00", zone="Australia/Lord_Howe", device="lh-1"),
    expect_ts="2026-01-15T01:00:00.000Z", expect_flags=[])

# --- epoch timestamps ---------------------------------------------------------
EP = "epoch/seconds-fraction-truncated"
vec(EP, _epoch("1700000000.1239"), expect_ts="2023-11-14T22:13:20.123Z")
vec("epoch/milliseconds-fraction-truncated", _epoch("1700000000123.9", "epoch_milliseconds"),
    expect_ts="2023-11-14T22:13:20.123Z", same_as=EP)
vec("epoch/seconds-ignores-zone", _epoch("1700000000", zone="Europe/Berlin"), expect_ts="2023-11-14T22:13:20.000Z")
vec("epoch/zero", _epoch("0"), expect_ts="1970-01-01T00:00:00.000Z")
NEG = "epoch/negative-fraction-floors-to-past"
vec(NEG, _epoch("-0.0005"), expect_ts="1969-12-31T23:59:59.999Z",
    note="floor, not truncation toward zero: -0.5 ms becomes -1 ms")
vec("epoch/milliseconds-minus-1", _epoch("-1", "epoch_milliseconds"), expect_ts="1969-12-31T23:59:59.999Z", same_as=NEG)

# --- units and value forms ------------------------------------------------------
T = "2024-03-01T00:00:00Z"
vec("unit/W", _rfc(T, "2500", "W", device="p1", metric="power"), expect_value="2.5")
vec("unit/kW", _rfc(T, "2.5", "kW", device="p1", metric="power"), expect_value="2.5", same_as="unit/W")
vec("unit/MW", _rfc(T, "0.75", "MW", device="p1", metric="power"), expect_value="750")
vec("unit/GW", _rfc(T, "1.2", "GW", device="p1", metric="power"), expect_value="1200000")
vec("unit/negative-power-W", _rfc(T, "-2500", "W", device="p1", metric="power"), expect_value="-2.5")
vec("unit/Wh", _rfc(T, "1", "Wh", device="e1"), expect_value="0.001")
vec("unit/MWh-10.172887", _rfc(T, "10.172887", "MWh", device="e1"), expect_value="10172.887")
vec("unit/GWh", _rfc(T, "0.000001", "GWh", device="e1"), expect_value="1")
vec("unit/negative-MWh", _rfc(T, "-12.5", "MWh", device="e1"), expect_value="-12500")
vec("value/exponent-1e3", _rfc(T, "1e3", device="e1"), expect_value="1000")
vec("value/exponent-1E+3-W", _rfc(T, "1E+3", "W", device="p1", metric="power"), expect_value="1")
vec("value/tiny-1e-30Wh", _rfc(T, "1e-30", "Wh", device="e1"),
    expect_value="0." + "0" * 32 + "1")
vec("value/huge-9.99e35kWh", _rfc(T, "9.99e35", device="e1"), expect_value="999" + "0" * 33)
vec("value/max-40-nines", _rfc(T, "9" * 40, device="e1"), expect_value="9" * 40,
    note="40 significant digits, just below 10^40")
vec("value/min-step-1e-37Wh", _rfc(T, "1e-37", "Wh", device="e1"), expect_value="0." + "0" * 39 + "1",
    note="10^-40 kWh after conversion: the smallest allowed step")
vec("value/40-significant-digits-fraction", _rfc(T, "1." + "2345678901" * 3 + "234567891", device="e1"),
    expect_value="1." + "2345678901" * 3 + "234567891")
Z0 = "value/zero"
vec(Z0, _rfc(T, "0", device="z1"), expect_value="0")
vec("value/minus-zero", _rfc(T, "-0", device="z1"), expect_value="0", same_as=Z0)
vec("value/minus-zero-fraction-Wh", _rfc(T, "-0.000", "Wh", device="z1"), expect_value="0", same_as=Z0)
vec("value/zero-exponent-MWh", _rfc(T, "0e10", "MWh", device="z1"), expect_value="0", same_as=Z0)
vec("value/plus-zeros", _rfc(T, "+000.000", device="z1"), expect_value="0", same_as=Z0)
vec("value/integer-trailing-zeros-kept", _rfc(T, "100", device="e2"), expect_value="100")
vec("value/100Wh", _rfc(T, "100", "Wh", device="e2"), expect_value="0.1")
vec("value/1.0", _rfc(T, "1.0", device="e2"), expect_value="1")
vec("value/10.10", _rfc(T, "10.10", device="e2"), expect_value="10.1")
vec("value/leading-zeros-007", _rfc(T, "007", device="e2"), expect_value="7")
vec("value/leading-point-.5", _rfc(T, ".5", device="e2"), expect_value="0.5")
vec("value/negative-leading-point", _rfc(T, "-.5", device="e2"), expect_value="-0.5")
vec("value/plus-sign", _rfc(T, "+0.5", device="e2"), expect_value="0.5", same_as="value/leading-point-.5")
vec("value/1500.000Wh", _rfc(T, "1500.000", "Wh", device="e2"), expect_value="1.5")

# --- device ids ---------------------------------------------------------------
NFC = "device/latin-e-acute-nfc"
vec(NFC, _rfc(T, "1", device="compteur-\u00e9"))
vec("device/latin-e-acute-nfd", _rfc(T, "1", device="compteur-e\u0301"), differs_from=NFC,
    note="device_id bytes are hashed as sent: no Unicode normalization")
vec("device/cjk", _rfc(T, "1", device="\u7535\u8868-01"))
vec("device/emoji", _rfc(T, "1", device="meter-\u26a1\U0001F50C"))
vec("device/pipe-and-spaces", _rfc(T, "1", device="site A | meter 7"),
    note="'|' cannot occur in timestamp, metric_type or value, so the device_id is everything before the third '|' from the right")
vec("device/pipes-only-structure", _rfc(T, "1", device="a||b|"))
vec("device/quotes-backslash", _rfc(T, "1", device='meter "7" \\ west'))


# --------------------------------------------------------------------------
# Invalid inputs
# --------------------------------------------------------------------------

INVALID = []


def bad(name, why, inp):
    INVALID.append((name, why, inp))


G = "2024-01-01T09:00:00Z"
bad("unit/kVAh", "unknown unit (apparent energy is not energy)", _rfc(G, "1", "kVAh"))
bad("unit/mWh-wrong-case", "units are case-sensitive; mWh is milliwatt-hours, not MWh", _rfc(G, "1", "mWh"))
bad("unit/kwh-lowercase", "units are case-sensitive", _rfc(G, "1", "kwh"))
bad("unit/kW-for-energy", "unit belongs to another metric", _rfc(G, "1", "kW"))
bad("unit/Wh-for-power", "unit belongs to another metric", _rfc(G, "1", "Wh", metric="power"))
bad("metric/contains-pipe", "metric names must not contain '|'", _rfc(G, "1", metric="energy|x"))
bad("ts/local-without-zone", "local time (no offset) and no zone", _rfc("2024-01-01T09:00:00"))
bad("ts/month-13", "month 13", _rfc("2024-13-01T09:00:00Z"))
bad("ts/feb-29-non-leap-year", "2023 is not a leap year", _rfc("2023-02-29T09:00:00Z"))
bad("ts/feb-29-1900", "1900 is not a leap year", _rfc("1900-02-29T09:00:00Z"))
bad("ts/offset-plus-2400", "offset hour must be 00-23", _rfc("2024-01-01T09:00:00+24:00"))
bad("ts/offset-hh-m", "an offset has two-digit minutes", _rfc("2024-01-01T09:00:00+01:0"))
bad("ts/basic-with-dash-mix", "basic date with extended time", _rfc("20240101T09:00:00Z"))
bad("ts/hour-24", "hour must be 00-23", _rfc("2024-01-01T24:00:00Z"))
bad("ts/minute-60", "minute must be 00-59", _rfc("2024-01-01T09:60:00Z"))
bad("ts/second-61", "second must be 00-60", _rfc("2024-01-01T09:00:61Z"))
bad("ts/missing-seconds", "seconds are required", _rfc("2024-01-01T09:00Z"))
bad("ts/empty-fraction", "a '.' needs at least one digit", _rfc("2024-01-01T09:00:00.Z"))
bad("ts/unknown-zone", "not an IANA zone", _rfc("2024-01-01T09:00:00", zone="Mars/Olympus_Mons"))
bad("ts/epoch-not-a-number", "epoch value must be a decimal number", _epoch("soon"))
bad("value/NaN", "not a finite decimal", _rfc(G, "NaN"))
bad("value/Infinity", "not a finite decimal", _rfc(G, "Infinity"))
bad("value/trailing-point", "'1.' has no fraction digits", _rfc(G, "1."))
bad("value/empty", "empty value", _rfc(G, ""))
bad("value/hex", "hex is not decimal", _rfc(G, "0x10"))
bad("value/comma", "decimal separator is '.'", _rfc(G, "1,5"))
bad("value/exponent-without-digits", "exponent needs digits", _rfc(G, "1e"))
bad("value/double-sign", "one sign at most", _rfc(G, "--1"))
bad("value/leading-space", "no whitespace", _rfc(G, " 1.5"))
bad("value/41-significant-digits", "more than 40 significant digits",
    _rfc(G, "1." + "2345678901" * 4))
bad("value/1e40kWh-too-large", "magnitude must be < 10^40", _rfc(G, "1e40"))
bad("value/1e37MWh-too-large-after-shift", "1e37 MWh = 1e40 kWh, magnitude must be < 10^40",
    _rfc(G, "1e37", "MWh"))
bad("value/1e-38Wh-too-fine-after-shift", "1e-38 Wh = 1e-41 kWh, step must be >= 10^-40",
    _rfc(G, "1e-38", "Wh"))


# --------------------------------------------------------------------------
# Build, self-check, write
# --------------------------------------------------------------------------

def build() -> dict:
    vectors, by_name = [], {}
    for name, inp, kw in V:
        assert name not in by_name, f"duplicate vector name {name}"
        canon = canonicalize(inp)
        eid = event_id(canon["device_id"], canon["timestamp"], canon["metric_type"], canon["value"])
        for key, field in (("expect_ts", "timestamp"), ("expect_value", "value"), ("expect_flags", "flags")):
            if key in kw:
                assert canon[field] == kw[key], f"{name}: {field} {canon[field]!r} != expected {kw[key]!r}"
        if "expect_id" in kw:
            assert eid == kw["expect_id"], f"{name}: event_id {eid} != {kw['expect_id']}"
        entry = {"name": name, "input": inp, "canonical": canon, "event_id": eid}
        for key in ("same_as", "differs_from", "note"):
            if key in kw:
                entry[key] = kw[key]
        by_name[name] = entry
        vectors.append(entry)

    # same_as / differs_from hold, and every event_id collision is declared.
    parent = {n: n for n in by_name}

    def root(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for e in vectors:
        if "same_as" in e:
            other = by_name[e["same_as"]]
            assert e["event_id"] == other["event_id"], f"{e['name']} should equal {other['name']}"
            parent[root(e["name"])] = root(other["name"])
        if "differs_from" in e:
            other = by_name[e["differs_from"]]
            assert e["event_id"] != other["event_id"], f"{e['name']} should differ from {other['name']}"
    seen: dict[str, str] = {}
    for e in vectors:
        first = seen.setdefault(e["event_id"], e["name"])
        assert root(first) == root(e["name"]), f"undeclared collision: {first} / {e['name']}"

    invalid, names = [], set()
    for name, why, inp in INVALID:
        assert name not in names, f"duplicate invalid name {name}"
        names.add(name)
        try:
            got = canonicalize(inp)
        except Invalid as exc:
            invalid.append({"name": name, "input": inp, "why": why, "field": exc.field})
        else:
            raise AssertionError(f"invalid vector {name} was accepted: {got}")

    assert len(vectors) >= 40
    return {
        "description": (
            "meter-agent canonical forms and event_id test vectors (protocol version 1, "
            "see docs/PROTOCOL.md). Each vector: input reading as sent -> canonical "
            "{device_id, timestamp (UTC, ms), metric_type, value (plain decimal text), "
            "unit, flags} and event_id = lowercase hex sha256 of UTF-8 "
            "'device_id|timestamp|metric_type|value' over the canonical forms. "
            "'same_as' names a vector that must have the same event_id, 'differs_from' "
            "one that must not. 'invalid' lists inputs that must be rejected; 'field' "
            "is the input field at fault. Generated file: do not edit by hand."
        ),
        "generator": GENERATOR,
        "vectors": vectors,
        "invalid": invalid,
    }


def render() -> str:
    return json.dumps(build(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify the committed file is up to date")
    mode.add_argument("--stdout", action="store_true", help="print the JSON instead of writing it")
    args = ap.parse_args()

    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        try:
            current = OUT_PATH.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{OUT_PATH} is out of date; regenerate with /usr/bin/python3 {GENERATOR}",
                  file=sys.stderr)
            return 1
        print(f"{OUT_PATH.name} is up to date")
        return 0
    OUT_PATH.write_text(text, encoding="utf-8")
    data = json.loads(text)
    print(f"wrote {OUT_PATH} ({len(data['vectors'])} vectors, {len(data['invalid'])} invalid)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
