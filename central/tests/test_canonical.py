"""central/canonical.py against the shared vectors (tests/vectors/event_id.json) and the docs."""

from __future__ import annotations

import decimal
import json
import re
from pathlib import Path

import pytest

from central.canonical import (CANONICAL_UNITS, FLAGS, NotCanonical, check_decimal, decimal_text,
                               event_id, format_timestamp, is_event_id_syntax, parse_timestamp)

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests/vectors/event_id.json").read_text(encoding="utf-8"))
VALID = VECTORS["vectors"]
INVALID = VECTORS["invalid"]


def test_vector_file_is_substantial():
    assert len(VALID) >= 40 and len(INVALID) >= 20


@pytest.mark.parametrize("vec", VALID, ids=[v["name"] for v in VALID])
def test_vector_event_id_and_canonical_fields(vec):
    """The central recomputes every vector's event_id from its canonical fields and accepts them."""
    c = vec["canonical"]
    assert event_id(c["device_id"], c["timestamp"], c["metric_type"], c["value"]) == vec["event_id"]
    assert format_timestamp(parse_timestamp(c["timestamp"])) == c["timestamp"]
    assert decimal_text(check_decimal(c["value"])) == c["value"]
    assert CANONICAL_UNITS[c["metric_type"]] == c["unit"]
    assert set(c["flags"]) <= FLAGS and c["flags"] == sorted(c["flags"])
    assert is_event_id_syntax(vec["event_id"])


RESPELLED = [v for v in VALID if v["input"]["value"] != v["canonical"]["value"]
             and v["input"]["unit"] == v["canonical"]["unit"]]


@pytest.mark.parametrize("vec", RESPELLED, ids=[v["name"] for v in RESPELLED])
def test_non_canonical_spelling_of_a_vector_value_is_refused(vec):
    """What the meter sent (`1.50`, `1e3`, `+0.5`) is not what the central accepts on the wire."""
    with pytest.raises(NotCanonical):
        check_decimal(vec["input"]["value"])


def test_same_as_pairs_share_event_ids():
    by_name = {v["name"]: v for v in VALID}
    pairs = [(v, by_name[v["same_as"]]) for v in VALID if "same_as" in v]
    assert pairs
    for a, b in pairs:
        assert a["event_id"] == b["event_id"]


def test_reference_implementation_agrees():
    """The independent generator in tests/vectors is importable and agrees on a sample."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_vectors", REPO / "tests/vectors/make_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for vec in VALID:
        c = mod.canonicalize(vec["input"])
        assert event_id(c["device_id"], c["timestamp"], c["metric_type"], c["value"]) == vec["event_id"]


@pytest.mark.parametrize("text", [
    "0", "1", "-1", "1.5", "10172.887", "-0.001", "1000", "9" * 40, "0." + "0" * 39 + "1",
    "1." + "2345678901" * 3 + "234567891",
])
def test_canonical_decimals_accepted(text):
    assert decimal_text(check_decimal(text)) == text


@pytest.mark.parametrize("text", [
    "-0", "1.0", "1.50", "01", "+1", ".5", "1.", "1e3", "1E3", "1.5e0", "0.0", "00", "-00.5",
    "NaN", "Infinity", "", " 1", "1 ", "1,5", "0x10", "１", "1" * 41, "1" + "0" * 40,
    "0." + "0" * 40 + "1", "1." + "2345678901" * 4,
])
def test_non_canonical_decimals_refused(text):
    with pytest.raises(NotCanonical):
        check_decimal(text)


@pytest.mark.parametrize("value", ["1E-9", "1.500", "1E+3", "-0", "0E-10", "123.4500"])
def test_decimal_text_renders_plain_canonical(value):
    out = decimal_text(decimal.Decimal(value))
    assert "E" not in out and decimal.Decimal(out) == decimal.Decimal(value)
    assert decimal_text(check_decimal(out)) == out


@pytest.mark.parametrize("text", [
    "2024-01-01T09:00:00Z", "2024-01-01T09:00:00.000", "2024-01-01T09:00:00.0000Z",
    "2024-01-01 09:00:00.000Z", "2024-01-01t09:00:00.000z", "2024-01-01T09:00:00.000+00:00",
    "2023-02-29T09:00:00.000Z", "2024-13-01T09:00:00.000Z", "2024-01-01T24:00:00.000Z",
    "1990-12-31T23:59:60.000Z", "0000-01-01T00:00:00.000Z", "2024-1-01T09:00:00.000Z", "",
])
def test_non_canonical_timestamps_refused(text):
    with pytest.raises(NotCanonical):
        parse_timestamp(text)


def test_timestamp_round_trip_extremes():
    for text in ("0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "2024-02-29T12:00:00.123Z"):
        assert format_timestamp(parse_timestamp(text)) == text


def _protocol_flags() -> list[str]:
    text = (REPO / "docs/PROTOCOL.md").read_text(encoding="utf-8")
    section = text.split("\n## Flags\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)


def test_flags_match_protocol_table_and_agent_header():
    assert sorted(_protocol_flags()) == sorted(FLAGS)
    header = (REPO / "common/model/flags.hpp").read_text(encoding="utf-8")
    assert sorted(re.findall(r"^\s+([a-z_]+) = 1[uU] << \d+,", header, flags=re.M)) == sorted(FLAGS)


def test_units_match_protocol():
    text = (REPO / "docs/PROTOCOL.md").read_text(encoding="utf-8")
    for metric, unit in CANONICAL_UNITS.items():
        assert re.search(rf"^\| {metric} \| .* \| `{unit}` \|", text, flags=re.M), metric
