"""Estimated energy per bucket: `gap` deltas spread over the time they cover (pure, no I/O).

A `gap` delta is the register's whole advance across a silence: the meter was not heard between
the last good reading (its timestamp is the delta's `delta_from`) and this one, so the energy was
used somewhere in (delta_from, timestamp], not all in the last bucket. The consumption API shows
it as `estimated` energy spread over that interval pro rata to time.

Exact decimals, never floats, and the spread sums to the delta exactly: each bucket gets
cumulative(end of its part) - cumulative(start of its part), where cumulative(t) is the delta's
share of (delta_from, t] rounded toward zero to a fixed quantum, and cumulative(timestamp) is
the delta itself. The rounding leftovers therefore land in the last bucket of the interval,
and each bucket's share is computed from that bucket alone (a query over part of the interval
gives the same numbers as one over all of it). Without delta_from (protocol "1" readings, or a
delta_from equal to the timestamp) the whole delta stays in its own reading's bucket.
"""

from __future__ import annotations

import bisect
import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Optional, Sequence

MICROSECOND = dt.timedelta(microseconds=1)
# Shares are rounded toward zero to 10^-9 of the unit (a microwatt-hour for kWh), or finer when
# the delta itself has more fraction digits.
MIN_FRACTION_DIGITS = 9
_CONTEXT = decimal.Context(prec=200, rounding=decimal.ROUND_DOWN)


@dataclass(frozen=True)
class GapDelta:
    timestamp: dt.datetime  # the reading that carries the delta
    delta_from: Optional[dt.datetime]
    delta: decimal.Decimal


def _cumulative(gap: GapDelta, t: dt.datetime, quantum: decimal.Decimal) -> decimal.Decimal:
    """The delta's share of (delta_from, t], t within [delta_from, timestamp]."""
    assert gap.delta_from is not None
    if t >= gap.timestamp:
        return gap.delta
    if t <= gap.delta_from:
        return decimal.Decimal(0)
    elapsed = (t - gap.delta_from) // MICROSECOND
    total = (gap.timestamp - gap.delta_from) // MICROSECOND
    share = _CONTEXT.divide(_CONTEXT.multiply(gap.delta, decimal.Decimal(elapsed)),
                            decimal.Decimal(total))
    return share.quantize(quantum, rounding=decimal.ROUND_DOWN, context=_CONTEXT)


def _quantum(delta: decimal.Decimal) -> decimal.Decimal:
    exponent = delta.as_tuple().exponent
    digits = max(MIN_FRACTION_DIGITS, -exponent if isinstance(exponent, int) else 0)
    return decimal.Decimal(1).scaleb(-digits)


def spread(gap: GapDelta, buckets: Sequence[tuple[dt.datetime, dt.datetime]]
           ) -> dict[int, decimal.Decimal]:
    """Bucket index -> the part of the gap delta that bucket holds, for the buckets (sorted,
    adjacent [start, end) ranges) that hold some of its interval; a bucket the interval only
    touches at a point holds none."""
    starts = [start for start, _ in buckets]
    if gap.delta_from is None or gap.delta_from >= gap.timestamp:
        i = bisect.bisect_right(starts, gap.timestamp) - 1
        return {i: gap.delta} if i >= 0 and gap.timestamp < buckets[i][1] else {}
    quantum = _quantum(gap.delta)
    out = {}
    for i in range(max(0, bisect.bisect_right(starts, gap.delta_from) - 1),
                   bisect.bisect_left(starts, gap.timestamp)):
        start, end = buckets[i]
        low, high = max(start, gap.delta_from), min(end, gap.timestamp)
        if low < high:
            out[i] = _cumulative(gap, high, quantum) - _cumulative(gap, low, quantum)
    return out


def estimated_per_bucket(gaps: Sequence[GapDelta],
                         buckets: Sequence[tuple[dt.datetime, dt.datetime]]
                         ) -> list[Optional[decimal.Decimal]]:
    """The sum of every gap's part per bucket (None where no gap reaches)."""
    totals: list[Optional[decimal.Decimal]] = [None] * len(buckets)
    for gap in gaps:
        for i, part in spread(gap, buckets).items():
            totals[i] = part if totals[i] is None else totals[i] + part
    return totals
