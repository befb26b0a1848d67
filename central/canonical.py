"""Checks of the canonical forms defined in docs/PROTOCOL.md, and the event_id rule.

The central never sees readings as a meter sent them: the agent canonicalizes them. So the
central does not convert anything; it *checks* that each field already is in canonical form and
recomputes the event_id from those exact texts. A value that is numerically right but spelled
differently (`1.50`, `1.5e0`) would hash differently, so a spelling check is a correctness check.

Nothing here goes through binary floating point: values are handled as their decimal text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import re

UTC = dt.timezone.utc

# metric_type -> canonical unit (the only unit the central accepts for it; the agent converts).
CANONICAL_UNITS: dict[str, str] = {"energy": "kWh", "power": "kW"}

# The Flags table of docs/PROTOCOL.md (and common/model/flags.hpp). A test keeps them in step.
# Protocol "1" knows the first thirteen; the rest came with protocol "2" and are unknown flags in
# a "1" request (an agent talking to a "1" central holds such measurements instead).
FLAGS_V1: frozenset[str] = frozenset({
    "first_reading", "counter_reset", "suspicious_jump", "out_of_order", "timestamp_conflict",
    "negative_value", "future_timestamp", "gateway_timestamp", "beyond_retention", "leap_second",
    "dst_ambiguous", "dst_gap", "clock_unsynced",
})
FLAGS_SINCE_V2: frozenset[str] = frozenset({
    "glitch", "rollback", "implausible_rate", "gap", "meter_replaced", "device_restarted",
    "period_reset", "scale_rounded",
})
FLAGS: frozenset[str] = FLAGS_V1 | FLAGS_SINCE_V2
FLAGS_BY_VERSION: dict[str, frozenset[str]] = {"1": FLAGS_V1, "2": FLAGS}
# Flags whose meaning is "delta is null" (PROTOCOL.md, Measurements.delta).
NULL_DELTA_FLAGS: frozenset[str] = frozenset({"first_reading", "counter_reset", "beyond_retention",
                                              "glitch", "rollback"})

MAX_SIGNIFICANT_DIGITS = 40
MAX_INTEGER_DIGITS = 40   # |value| < 10^40
MAX_FRACTION_DIGITS = 40  # step >= 10^-40

# The field ranges are in the pattern (year 0001-9999, month 01-12, day 01-31, hour 00-23,
# minute and second 00-59: second 60 is not canonical), so one match proves the form; only days
# 29-31 still need the calendar.
TIMESTAMP_PATTERN = (r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                     r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z")
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
# Plain notation, no leading zeros, no trailing fraction zeros, no '+'; "-0" handled separately.
DECIMAL_PATTERN = r"-?(0|[1-9][0-9]*)(?:\.([0-9]*[1-9]))?"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)
_EVENT_ID_RE = re.compile(r"[0-9a-f]{64}")


class NotCanonical(ValueError):
    """A field is not in canonical form. `.reason` is the machine-readable code for the outcome."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_VALID_DATES: dict[str, bool] = {}  # "YYYY-MM-DD" -> real Gregorian date? (batches repeat dates)


def real_date(text: str) -> bool:
    """Is "YYYY-MM-DD" (digits already checked) a real Gregorian date?"""
    known = _VALID_DATES.get(text)
    if known is None:
        try:
            dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
            known = True
        except ValueError:
            known = False
        if len(_VALID_DATES) > 100_000:
            _VALID_DATES.clear()
        _VALID_DATES[text] = known
    return known


def check_timestamp(text: str, field: str = "timestamp") -> str:
    """Raise unless `text` is a canonical `YYYY-MM-DDTHH:MM:SS.sssZ` UTC time; return it.

    The fast path for records (the database parses the text itself). Second 60 is not
    canonical: the agent stores a leap second as :59.999.
    """
    if _TIMESTAMP_RE.fullmatch(text) is None or (text[8:10] > "28" and not real_date(text[:10])):
        raise NotCanonical(f"non_canonical_{field}",
                           f"{field} must be a real UTC time written YYYY-MM-DDTHH:MM:SS.sssZ "
                           "(3 fraction digits)")
    return text


def parse_timestamp(text: str, field: str = "timestamp") -> dt.datetime:
    """Canonical timestamp text -> aware UTC datetime; anything else raises NotCanonical."""
    check_timestamp(text, field)
    return dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                       int(text[14:16]), int(text[17:19]), int(text[20:23]) * 1000, tzinfo=UTC)


def format_timestamp(t: dt.datetime) -> str:
    """Aware datetime -> canonical text (milliseconds floored, as the protocol truncates)."""
    t = t.astimezone(UTC)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond // 1000:03d}Z")


def check_decimal(text: str, field: str = "value") -> decimal.Decimal:
    """Canonical decimal text within the protocol's limits -> exact Decimal; anything else raises.

    `text` must be the number's text exactly as it appeared in the JSON request.
    """
    return decimal.Decimal(check_decimal_text(text, field))


def check_decimal_text(text: str, field: str = "value") -> str:
    """Like check_decimal, returning the text (what ingest stores; PostgreSQL parses it)."""
    m = _DECIMAL_RE.fullmatch(text)
    if m and len(text) <= MAX_SIGNIFICANT_DIGITS and text != "-0":
        return text  # 40 characters cannot hold more than 40 digits on either side of the point
    if not m or text == "-0":
        raise NotCanonical(f"non_canonical_{field}",
                           f"{field} {text[:60]!r} is not canonical decimal text "
                           "(plain notation, no exponent, no leading/trailing zeros, no -0)")
    integer, fraction = m.group(1), m.group(2) or ""
    significant = (integer + fraction).lstrip("0").rstrip("0")
    if (len(significant) > MAX_SIGNIFICANT_DIGITS or len(integer) > MAX_INTEGER_DIGITS
            or len(fraction) > MAX_FRACTION_DIGITS):
        raise NotCanonical(f"{field}_out_of_range",
                           f"{field} exceeds 40 significant digits, 10^40 or a step of 10^-40")
    return text


def decimal_text(value: decimal.Decimal) -> str:
    """Exact Decimal (e.g. from a NUMERIC column) -> canonical text, for responses.

    str(Decimal) may use exponent notation (`1E-9`), so the digits are laid out by hand.
    """
    sign, digits, exp = value.as_tuple()
    coeff = "".join(map(str, digits)).lstrip("0")
    if not coeff:
        return "0"
    stripped = coeff.rstrip("0")
    exp += len(coeff) - len(stripped)
    coeff = stripped
    if exp >= 0:
        text = coeff + "0" * exp
    else:
        point = len(coeff) + exp
        text = coeff[:point] + "." + coeff[point:] if point > 0 else "0." + "0" * (-point) + coeff
    return ("-" if sign else "") + text


def is_event_id_syntax(text: str) -> bool:
    """64 lowercase hex characters."""
    return _EVENT_ID_RE.fullmatch(text) is not None


def event_id(device_id: str, timestamp: str, metric_type: str, value: str) -> str:
    """lowercase_hex(SHA-256(UTF-8(device_id|timestamp|metric_type|value))), canonical fields."""
    return hashlib.sha256(
        f"{device_id}|{timestamp}|{metric_type}|{value}".encode("utf-8")).hexdigest()
