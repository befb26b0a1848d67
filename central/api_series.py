"""Read side over time: consumption per bucket and flag counts per bucket (viewer tokens).

Why the buckets are made this way:
* Buckets are generated in SQL (generate_series) with the session time zone set to the requested
  IANA zone for the one transaction, so `+ interval '1 day'` moves from local midnight to local
  midnight (a DST day is 23 or 25 hours long) and `+ interval '1 hour'` is one real hour (the
  repeated hour of a fall-back night is two buckets, not one).
* Readings are joined to buckets by time range, not by truncating each reading's timestamp:
  every reading lands in exactly one bucket, and empty buckets (gaps) come back with zero
  readings, so a chart can show them.
* A delta belongs to the bucket of the reading that ends its interval (the reading it is stored
  on). `consumption` is the exact NUMERIC sum of the non-null deltas; suspicious jumps are
  included in it (the agent keeps those deltas: flag, don't fix) and their part is shown apart
  as `suspicious_jump_delta`, so `consumption - suspicious_jump_delta` is the total without them.
  `null_deltas` counts readings whose interval could not be measured (first reading, counter
  reset, beyond retention): a bucket with null deltas may be missing consumption.
* The table holds one row per event_id, the highest revision received, so every sum uses the
  current revision of each measurement only.
"""

from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo
from typing import Any, Optional

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from central.api_read import _json, _num, _parse_time, _ts, _viewer, _viewer_in
from central.canonical import decimal_text, format_timestamp
from central.consumption_split import GapDelta, estimated_per_bucket
from central.errors import ApiError
from central.jsonout import RawJson
from central.read_guard import check_bucket_edges

# Sums of exact decimals stay exact: no precision limit, and Inexact trapped so a rounding could
# never pass unnoticed.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.Inexact, decimal.InvalidOperation])

router = APIRouter()

BUCKETS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
MAX_BUCKETS = 10_000


class BucketPlan:
    """Validated query window: bucket size, zone, and [start, end) before widening."""

    def __init__(self, from_: Optional[str], to: Optional[str], bucket: str, tz: str):
        if bucket not in BUCKETS:
            raise ApiError(422, "invalid_query", "bucket must be 'hour' or 'day'")
        self.tz = time_zone(tz)
        start, end = _parse_time(from_, "from"), _parse_time(to, "to")
        if start is None or end is None:
            raise ApiError(422, "invalid_query", "from and to are required (RFC 3339 with offset)")
        if end <= start:
            raise ApiError(422, "invalid_query", "to must be later than from")
        if (end - start) / BUCKETS[bucket] > MAX_BUCKETS:
            raise ApiError(422, "invalid_query",
                           f"at most {MAX_BUCKETS} buckets per query: use bucket=day or a "
                           "shorter range")
        self.bucket, self.start, self.end = bucket, start, end
        self.step = "1 hour" if bucket == "hour" else "1 day"

    def params(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "start": self.start, "end": self.end, "step": self.step}


def time_zone(name: str) -> str:
    """An IANA zone name the tz database knows, or 400 saying what is accepted."""
    message = (f"tz {name[:64]!r} is not an IANA time zone name; use a name such as "
               "'UTC' or 'Europe/Berlin' (fixed offsets like '+01:00' are not accepted)")
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ApiError(400, "invalid_time_zone", message)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ApiError(400, "invalid_time_zone", message) from None
    return name


# Bucket starts from the bucket that holds `start` up to the one that holds the last instant
# before `end`; evaluated with the session TimeZone set to the requested zone.
_BUCKETS_CTE = """
buckets AS (
  SELECT s AS start, s + CAST(:step AS interval) AS "end"
    FROM generate_series(date_trunc(:bucket, CAST(:start AS timestamptz)),
                         CAST(:end AS timestamptz) - interval '1 microsecond',
                         CAST(:step AS interval)) AS s
)"""

_CONSUMPTION = sa.text(f"""
WITH {_BUCKETS_CTE}
SELECT b.start, b."end",
       count(m.event_id) AS readings,
       sum(m.delta) AS consumption,
       count(m.event_id) FILTER (WHERE m.delta IS NULL) AS null_deltas,
       count(m.event_id) FILTER (WHERE cardinality(m.flags) > 0) AS flagged,
       count(m.event_id) FILTER (WHERE 'first_reading' = ANY(m.flags)) AS first_readings,
       count(m.event_id) FILTER (WHERE 'counter_reset' = ANY(m.flags)) AS counter_resets,
       count(m.event_id) FILTER (WHERE 'suspicious_jump' = ANY(m.flags)) AS suspicious_jumps,
       sum(m.delta) FILTER (WHERE 'suspicious_jump' = ANY(m.flags)) AS suspicious_jump_delta,
       sum(m.delta) FILTER (WHERE NOT m.flags && CAST(:untrusted AS text[])) AS trusted,
       sum(m.delta) FILTER (WHERE m.flags && CAST(:flagged_flags AS text[])) AS flagged_energy,
       count(m.event_id) FILTER (WHERE 'glitch' = ANY(m.flags)) AS glitches,
       count(m.event_id) FILTER (WHERE 'gap' = ANY(m.flags)) AS gaps
  FROM buckets b
  LEFT JOIN normalized_measurements m
         ON m.device_id = :device_id AND m.metric_type = :metric_type
        AND m."timestamp" >= b.start AND m."timestamp" < b."end"
 GROUP BY b.start, b."end"
 ORDER BY b.start
""")


# The same figures from consumption_hourly (migration 0009), for buckets whose edges are whole UTC
# hours: each hour row lies wholly inside one bucket. One index-only range scan over the whole
# window; width_bucket finds each hour's bucket by binary search over the bucket starts (a join
# by range made the planner compare every hour with every bucket: 3 M comparisons for a year of
# day buckets). A sum reads null where no delta went into it, as sum() over the rows does; the
# counts are cast back to bigint (sum(bigint) is numeric).
_CONSUMPTION_ROLLUP = sa.text(f"""
WITH {_BUCKETS_CTE},
numbered AS (
  SELECT b.start, b."end", row_number() OVER (ORDER BY b.start) AS i FROM buckets b
), edges AS (
  SELECT array_agg(start ORDER BY start) AS starts, min(start) AS first, max("end") AS last
    FROM numbered
), sums AS (
  SELECT width_bucket(h.hour, e.starts) AS i,
         sum(h.readings) AS readings,
         CASE WHEN sum(h.deltas) > 0 THEN sum(h.consumption) END AS consumption,
         sum(h.readings - h.deltas) AS null_deltas,
         sum(h.flagged) AS flagged, sum(h.first_readings) AS first_readings,
         sum(h.counter_resets) AS counter_resets, sum(h.suspicious_jumps) AS suspicious_jumps,
         CASE WHEN sum(h.suspicious_jump_deltas) > 0 THEN sum(h.suspicious_jump_delta) END
             AS suspicious_jump_delta,
         CASE WHEN sum(h.trusted_deltas) > 0 THEN sum(h.trusted) END AS trusted,
         CASE WHEN sum(h.flagged_energy_deltas) > 0 THEN sum(h.flagged_energy) END
             AS flagged_energy,
         sum(h.glitches) AS glitches, sum(h.gaps) AS gaps
    FROM edges e
    JOIN consumption_hourly h
      ON h.device_id = :device_id AND h.metric_type = :metric_type
     AND h.hour >= e.first AND h.hour < e.last
   GROUP BY 1
)
SELECT n.start, n."end",
       CAST(coalesce(s.readings, 0) AS bigint) AS readings, s.consumption,
       CAST(coalesce(s.null_deltas, 0) AS bigint) AS null_deltas,
       CAST(coalesce(s.flagged, 0) AS bigint) AS flagged,
       CAST(coalesce(s.first_readings, 0) AS bigint) AS first_readings,
       CAST(coalesce(s.counter_resets, 0) AS bigint) AS counter_resets,
       CAST(coalesce(s.suspicious_jumps, 0) AS bigint) AS suspicious_jumps,
       s.suspicious_jump_delta, s.trusted, s.flagged_energy,
       CAST(coalesce(s.glitches, 0) AS bigint) AS glitches,
       CAST(coalesce(s.gaps, 0) AS bigint) AS gaps
  FROM numbered n LEFT JOIN sums s USING (i)
 ORDER BY n.start
""")

# Whether every bucket edge is a whole UTC hour (false in zones such as Asia/Kolkata, and for
# the local mean time of old dates).
_ALIGNED_TO_HOURS = sa.text(f"""
WITH {_BUCKETS_CTE}
SELECT coalesce(bool_and(extract(epoch FROM b.start) % 3600 = 0
                         AND extract(epoch FROM b."end") % 3600 = 0), true)
  FROM buckets b
""")


# Energy classes (docs/PROTOCOL.md, Flags): flagged energy is carried by these flags' deltas;
# trusted energy by deltas with none of them and no `gap`; the rest, `gap` deltas, is estimated.
FLAGGED_ENERGY_FLAGS = ["implausible_rate", "suspicious_jump"]
UNTRUSTED_FLAGS = ["gap", *FLAGGED_ENERGY_FLAGS]

# The gap deltas that reach into [:start, :end): the reading is at or after :start and its
# interval (delta_from, timestamp] begins before :end. One range scan from :start of the partial
# index of gap readings (migration 0009).
_GAP_DELTAS = sa.text("""
SELECT m."timestamp", m.delta_from, m.delta
  FROM normalized_measurements m
 WHERE m.device_id = :device_id AND m.metric_type = :metric_type
   AND m."timestamp" >= :start AND coalesce(m.delta_from, m."timestamp") < :end
   AND 'gap' = ANY(m.flags) AND NOT m.flags && CAST(:flagged_flags AS text[])
   AND m.delta IS NOT NULL
""")


# Each bucket's figures as the response spells them, so that no Decimal is made per bucket: the
# sums as canonical decimal text (trim_scale drops the trailing zeros NUMERIC keeps, and
# PostgreSQL never writes an exponent: the text central.canonical.decimal_text gives).
_FIGURES = ('SELECT f.start, f."end", f.readings, trim_scale(f.consumption)::text, '
            "f.null_deltas, f.flagged, f.first_readings, f.counter_resets, f.suspicious_jumps, "
            "trim_scale(f.suspicious_jump_delta)::text, trim_scale(f.trusted)::text, "
            "trim_scale(f.flagged_energy)::text, f.glitches, f.gaps "
            "FROM ({query}) AS f ORDER BY f.start")
_CONSUMPTION_TEXT = sa.text(_FIGURES.format(query=_CONSUMPTION.text))
_CONSUMPTION_ROLLUP_TEXT = sa.text(_FIGURES.format(query=_CONSUMPTION_ROLLUP.text))
# One bucket of the answer, keys in the order of the response (test_read_bytes holds it to the
# bytes the generic encoder wrote); the numbers are ints, canonical decimal text or null.
_BUCKET_JSON = ('{{"start":"{}","end":"{}","readings":{},"consumption":{},"null_deltas":{},'
                '"flagged":{},"first_readings":{},"counter_resets":{},"suspicious_jumps":{},'
                '"suspicious_jump_delta":{},"trusted":{},"flagged_energy":{},"estimated":{},'
                '"glitches":{},"gaps":{}}}').format
_TOTAL_COUNTS = {"readings": 2, "null_deltas": 4, "flagged": 5, "counter_resets": 7,
                 "suspicious_jumps": 8, "glitches": 12, "gaps": 13}  # name: column
_TOTAL_SUMS = {"consumption": 3, "suspicious_jump_delta": 9, "trusted": 10,
               "flagged_energy": 11}


def _json_number(text: Optional[str]) -> str:
    return "null" if text is None else text


_SET_ZONE = sa.text("SELECT set_config('TimeZone', :tz, true)")


def _in_zone(conn, tz: str) -> None:
    # set_config(..., true) = SET LOCAL: only for this transaction, so pooled connections keep UTC.
    # PostgreSQL reads the same tz database as zoneinfo on Debian; should the two ever disagree,
    # the zone is still refused with a 400, not a 500.
    # No savepoint: a zone the database refuses ends the request, and with it the transaction.
    try:
        conn.execute(_SET_ZONE, {"tz": tz})
    except sa.exc.DataError:
        raise ApiError(400, "invalid_time_zone",
                       f"tz {tz!r} is not known to the database's time zone data") from None


@router.get("/api/v1/consumption", tags=["read"],
            summary="Consumption per hour or day from the stored deltas, with quality counts")
def consumption(request: Request, authorization: Optional[str] = Header(None),
                device_id: str = Query(...),
                metric_type: str = Query("energy"),
                from_: Optional[str] = Query(None, alias="from",
                                             description="RFC 3339; widened to its bucket's start"),
                to: Optional[str] = Query(None, description="RFC 3339, exclusive; widened to a "
                                                            "bucket end"),
                bucket: str = Query("day", description="hour or day"),
                tz: str = Query("UTC", description="IANA zone the buckets follow")) -> Response:
    # One connection, one transaction: the token, the zone, the checks and the figures (each
    # statement is a round trip, and on a busy machine each round trip waits for the scheduler).
    with request.app.state.engine.begin() as conn:
        _viewer_in(conn, authorization)
        plan = BucketPlan(from_, to, bucket, tz)
        params = {**plan.params(), "device_id": device_id, "metric_type": metric_type,
                  "untrusted": UNTRUSTED_FLAGS, "flagged_flags": FLAGGED_ENERGY_FLAGS}
        _in_zone(conn, plan.tz)
        check_bucket_edges(conn, plan.params())
        query = _CONSUMPTION_TEXT
        if request.app.state.settings.read_rollups and conn.execute(
                _ALIGNED_TO_HOURS, params).scalar():
            query = _CONSUMPTION_ROLLUP_TEXT
        rows = conn.execute(query, params).all()
        gaps = []
        if rows:
            gaps = [GapDelta(*g) for g in conn.execute(_GAP_DELTAS, {
                **params, "start": rows[0][0], "end": rows[-1][1]})]
    estimated = estimated_per_bucket(gaps, [(r[0], r[1]) for r in rows]) if gaps \
        else [None] * len(rows)
    # The totals add the buckets' figures exactly (_EXACT: no digit is ever rounded away; the
    # default context keeps 28 significant digits and rounded a 40-digit total), the counts as
    # ints.
    sums: dict[str, Optional[decimal.Decimal]] = dict.fromkeys(
        ("consumption", "suspicious_jump_delta", "trusted", "flagged_energy", "estimated"))
    totals = {key: sum(r[column] for r in rows) for key, column in _TOTAL_COUNTS.items()}
    for key, column in _TOTAL_SUMS.items():
        for r in rows:
            if r[column] is not None:
                sums[key] = _EXACT.add(sums[key] or decimal.Decimal(0), decimal.Decimal(r[column]))
    for value in estimated:
        if value is not None:
            sums["estimated"] = _EXACT.add(sums["estimated"] or decimal.Decimal(0), value)
    starts = [format_timestamp(r[0]) for r in rows]
    buckets = []
    for i, (r, bucket_estimated) in enumerate(zip(rows, estimated)):
        end = starts[i + 1] if i + 1 < len(rows) and rows[i + 1][0] == r[1] \
            else format_timestamp(r[1])  # a bucket ends where the next one starts
        buckets.append(_BUCKET_JSON(
            starts[i], end, r[2], _json_number(r[3]), r[4], r[5], r[6], r[7], r[8],
            _json_number(r[9]), _json_number(r[10]), _json_number(r[11]),
            "null" if bucket_estimated is None else decimal_text(bucket_estimated),
            r[12], r[13]))
    return _json({
        "device_id": device_id, "metric_type": metric_type, "bucket": plan.bucket, "tz": plan.tz,
        "from": starts[0] if rows else _ts(plan.start),
        "to": format_timestamp(rows[-1][1]) if rows else _ts(plan.end),
        "suspicious_jumps_included": True,
        "total": {**{key: _num(value) for key, value in sums.items()}, **totals},
        "buckets": RawJson("[" + ",".join(buckets) + "]"),
    })


# Both queries join each bucket to its readings by range, which the (timestamp) index answers
# with one range scan per bucket.
_FLAG_READINGS = """
WITH {buckets}
SELECT b.start, b."end", count(m.event_id) AS readings,
       count(m.event_id) FILTER (WHERE cardinality(m.flags) > 0) AS flagged
  FROM buckets b
  LEFT JOIN (normalized_measurements m JOIN gateways g ON g.id = m.gateway_id)
         ON m."timestamp" >= b.start AND m."timestamp" < b."end" {filters}
 GROUP BY b.start, b."end"
 ORDER BY b.start
"""
_FLAG_COUNTS = """
WITH {buckets}
SELECT b.start, flag, count(*) AS n
  FROM buckets b
  JOIN normalized_measurements m ON m."timestamp" >= b.start AND m."timestamp" < b."end"
  JOIN gateways g ON g.id = m.gateway_id
  CROSS JOIN LATERAL unnest(m.flags) AS flag
 WHERE true {filters}
 GROUP BY b.start, flag
"""


@router.get("/api/v1/flag_counts", tags=["read"],
            summary="Readings and flag counts per hour or day, fleet-wide or per gateway/device")
def flag_counts(request: Request, authorization: Optional[str] = Header(None),
                from_: Optional[str] = Query(None, alias="from"),
                to: Optional[str] = Query(None),
                bucket: str = Query("day", description="hour or day"),
                tz: str = Query("UTC", description="IANA zone the buckets follow"),
                gateway_id: Optional[str] = Query(None,
                                                  description="the gateway that delivered first"),
                device_id: Optional[str] = Query(None),
                metric_type: Optional[str] = Query(None)) -> Response:
    _viewer(request, authorization)
    plan = BucketPlan(from_, to, bucket, tz)
    filters, params = [], plan.params()
    for column, name, value in (("g.name", "gateway_id", gateway_id),
                                ("m.device_id", "device_id", device_id),
                                ("m.metric_type", "metric_type", metric_type)):
        if value is not None:
            filters.append(f"AND {column} = :{name}")
            params[name] = value
    where = " ".join(filters)
    with request.app.state.engine.begin() as conn:
        _in_zone(conn, plan.tz)
        check_bucket_edges(conn, params)
        rows = conn.execute(sa.text(_FLAG_READINGS.format(buckets=_BUCKETS_CTE, filters=where)),
                            params).mappings().all()
        per_flag: dict[dt.datetime, dict[str, int]] = {}
        for start, flag, n in conn.execute(
                sa.text(_FLAG_COUNTS.format(buckets=_BUCKETS_CTE, filters=where)), params):
            per_flag.setdefault(start, {})[flag] = n
    totals: dict[str, int] = {}
    buckets = []
    for r in rows:
        flags = dict(sorted(per_flag.get(r["start"], {}).items()))
        for name, n in flags.items():
            totals[name] = totals.get(name, 0) + n
        buckets.append({"start": _ts(r["start"]), "end": _ts(r["end"]), "readings": r["readings"],
                        "flagged": r["flagged"], "flags": flags})
    return _json({
        "bucket": plan.bucket, "tz": plan.tz, "gateway_id": gateway_id, "device_id": device_id,
        "metric_type": metric_type,
        "from": buckets[0]["start"] if buckets else _ts(plan.start),
        "to": buckets[-1]["end"] if buckets else _ts(plan.end),
        "total": {"readings": sum(b["readings"] for b in buckets),
                  "flagged": sum(b["flagged"] for b in buckets), "flags": dict(sorted(totals.items()))},
        "buckets": buckets,
    })
