// Why a reading carries a flag: the rule that decided, and what it does to the totals. The short
// form of docs/QUALITY.md (the rule, the evidence, the effect on totals, per flag) and of the
// Flags table in docs/PROTOCOL.md; keep the three saying the same thing.
//
// Counters are judged per series in (timestamp, value) order against the last good reading g;
// B is the most the register can advance from g to r: max_rate x (r.t - g.t) when the metric
// sets max_rate, else jump_threshold, else unbounded. A reading is on course when g <= r <= g + B.

export interface FlagRule {
  /** The rule that decided, in the words of docs/QUALITY.md. */
  rule: string;
  /** What the flag does to the totals on the device page. */
  effect: string;
}

export const FLAG_RULES: Record<string, FlagRule> = {
  first_reading: {
    rule: "No earlier reading in this series (or in this epoch): there is nothing to measure a delta from.",
    effect: "No delta; the energy before it is unknown.",
  },
  counter_reset: {
    rule:
      "The value fell below the last good reading and none of the next readings within the glitch window came back on course: the register was reset or rolled over (a drop larger than rollback_max). While fewer readings follow it is provisional.",
    effect: "No delta: the energy across the reset is unknown; the next delta starts from this reading.",
  },
  suspicious_jump: {
    rule:
      "The rise from the last good reading exceeds the metric's jump_threshold and no reading within the glitch window came back on course.",
    effect: "The delta is kept and counted as flagged energy, not in the trusted total.",
  },
  implausible_rate: {
    rule:
      "The rise from the last good reading is faster than max_rate allows for the time between them (more power than the circuit can draw), and no reading within the glitch window came back on course.",
    effect: "The delta is kept and counted as flagged energy, not in the trusted total.",
  },
  glitch: {
    rule:
      "The reading was off course (below the last good reading, or above what the register can advance), and one of the next glitch_window readings (default 3) was back on course: a bad read, a brown-out 0, a spike, last-digit jitter.",
    effect: "Kept with its value, no delta: the returning reading's delta carries the energy, so the day's total is the register's real advance.",
  },
  rollback: {
    rule:
      "A drop of at most rollback_max with no return within the glitch window: the device restored an older saved total.",
    effect: "No delta; the next delta starts from this reading.",
  },
  gap: {
    rule:
      "On course, but the time since the last good reading is more than gap_factor (default 10) times the median of the series' previous 20 intervals: the meter was silent.",
    effect:
      "The delta is kept whole (energy conserved) and shown as estimated energy, spread over the silent interval pro rata to time; not in the trusted total.",
  },
  meter_replaced: {
    rule: "The first reading of the new epoch an operator's replacement event started (meter-agent meter replace).",
    effect: "Its delta is measured from the event's new initial reading, or is null when none was given; never a counter reset.",
  },
  device_restarted: {
    rule: "Restart evidence between the last good reading and this one: the device's uptime fell or its boot count rose.",
    effect: "A normal delta if the value did not fall; with counter_reset or rollback (no delta) if it fell. Never a glitch.",
  },
  period_reset: {
    rule: "The expected reset of a register that counts per day (period: daily) at local midnight in its period_zone.",
    effect: "The delta is the reading's value (the energy since midnight).",
  },
  scale_rounded: {
    rule: "The gateway's mapping scaled the value sent (e.g. watt-minutes / 60) and the exact result has no finite decimal, so it was rounded half to even to the mapping's declared decimals.",
    effect: "None on the totals beyond that rounding: deltas telescope, so the error never adds up. The raw message keeps the value as sent.",
  },
  out_of_order: {
    rule: "The reading arrived after a later reading of the same series had already been stored.",
    effect: "None: its delta and the next reading's were recomputed and sent as new revisions.",
  },
  timestamp_conflict: {
    rule: "Another reading of the same series has the same timestamp but a different value; both are kept, ordered by value.",
    effect: "Deltas follow that order.",
  },
  negative_value: { rule: "A counter register read below zero.", effect: "The reading is kept as it is." },
  future_timestamp: {
    rule: "The timestamp was ahead of the gateway clock at first receipt by more than the tolerance (default 5 min).",
    effect: "The reading is kept as it is.",
  },
  gateway_timestamp: {
    rule: "The message had no timestamp, so the gateway's receive time was used.",
    effect: "None; the time is the gateway's.",
  },
  beyond_retention: {
    rule: "Older than what the gateway buffer still held for its series after pruning.",
    effect: "No delta; the central still deduplicates it.",
  },
  leap_second: { rule: "The timestamp had second 60; it is stored as :59.999 of the same minute.", effect: "None." },
  dst_ambiguous: { rule: "A local time without offset fell in a DST fall-back overlap; the earlier instant was used.", effect: "None." },
  dst_gap: { rule: "A local time without offset fell in a DST spring-forward gap; it was moved forward by the gap.", effect: "None." },
  clock_unsynced: { rule: "Stamped by a gateway clock that was not known to be synchronized.", effect: "None; check the gateway's time." },
};

export function flagRule(flag: string): FlagRule {
  return FLAG_RULES[flag] ?? { rule: "A flag this dashboard does not know yet (see docs/PROTOCOL.md).", effect: "Unknown." };
}
