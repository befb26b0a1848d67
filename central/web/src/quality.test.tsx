import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach } from "vitest";
import type { Consumption, Epoch, Measurement } from "./api";
import { FLAGS } from "./api";
import { WhyPanel, WhyView } from "./components/WhyPanel";
import { addExact } from "./decimal";
import { FLAG_RULES } from "./flagRules";
import { ConsumptionView, ReadingsTable } from "./pages/Device";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

test("exact sums of decimal texts, never through a double", () => {
  expect(addExact("0.1", "0.2")).toBe("0.3");
  expect(addExact("19870", null, "0.000000000000000000000000000001")).toBe("19870.000000000000000000000000000001");
  expect(addExact("-2.5", "1.25")).toBe("-1.25");
  expect(addExact("-0.5", "0.25")).toBe("-0.25");
  expect(addExact("1.5", "-1.5")).toBe("0");
  expect(addExact(null, undefined)).toBeNull();
  expect(addExact("9999999999999999999999999999999999999999", "1")).toBe("10000000000000000000000000000000000000000");
});

test("every flag of the protocol has a why text", () => {
  for (const flag of FLAGS) {
    expect(FLAG_RULES[flag]?.rule.length, flag).toBeGreaterThan(10);
    expect(FLAG_RULES[flag]?.effect.length, flag).toBeGreaterThan(3);
  }
  expect(Object.keys(FLAG_RULES).sort()).toEqual([...FLAGS].sort());
});

const hour = (h: number) => `2026-01-02T${String(h).padStart(2, "0")}:00:00.000Z`;
const bucket = (h: number, over: Partial<Consumption["buckets"][0]> = {}): Consumption["buckets"][0] => ({
  start: hour(h), end: hour(h + 1), readings: 1, consumption: "1", null_deltas: 0, flagged: 0, first_readings: 0, counter_resets: 0,
  suspicious_jumps: 0, suspicious_jump_delta: null, trusted: "1", flagged_energy: null, estimated: null, glitches: 0, gaps: 0, ...over,
});

// 00h trusted; 01h a glitch (no delta) and the return; 02h-04h silent, a gap's energy spread over
// them and 05h where the gap reading is; 06h a meter replacement at 06:30 and a flagged rise.
const quality: Consumption = {
  device_id: "m1", metric_type: "energy", bucket: "hour", tz: "UTC", from: hour(0), to: hour(7), suspicious_jumps_included: true,
  total: { readings: 6, consumption: "47", null_deltas: 1, flagged: 4, counter_resets: 0, suspicious_jumps: 0, suspicious_jump_delta: null,
           trusted: "3", flagged_energy: "40", estimated: "4", glitches: 1, gaps: 1 },
  buckets: [
    bucket(0),
    bucket(1, { readings: 2, null_deltas: 1, glitches: 1, flagged: 1 }),
    bucket(2, { readings: 0, consumption: null, trusted: null, estimated: "1" }),
    bucket(3, { readings: 0, consumption: null, trusted: null, estimated: "1" }),
    bucket(4, { readings: 0, consumption: null, trusted: null, estimated: "1" }),
    bucket(5, { consumption: "4", trusted: null, estimated: "1", gaps: 1, flagged: 1 }),
    bucket(6, { consumption: "41", trusted: "1", flagged_energy: "40", flagged: 2 }),
  ],
};
const epoch = (at: string, withdrawn = false): Epoch => ({
  identity: at.replace(/\D/g, "").padEnd(64, "0"), device_id: "m1", metric_type: "energy", at, old_final: "100", new_initial: "0", withdrawn,
  recorded_at: at, gateway_id: "gw1", raw: { buffer_id: "b", seq: 1 }, received_at: at,
});

test("device chart: trusted total first, glitch markers not bars, estimated buckets hatched, replacements as a line", () => {
  render(<ConsumptionView data={quality} chartWidth={900} epochs={[epoch("2026-01-02T06:30:00.000Z"), epoch("2026-01-02T03:00:00.000Z", true)]} />);
  const totals = [...document.querySelectorAll("p[data-testid]")].map((p) => p.getAttribute("data-testid"));
  expect(totals.indexOf("trusted-total")).toBeLessThan(totals.indexOf("consumption-total"));
  expect(screen.getByTestId("trusted-total").textContent).toMatch(/^Trusted 3 kWh \+ flagged 40 kWh .* \+ estimated 4 kWh/);
  // glitches: a marker above their bucket, and no bar of their own (a glitch has no delta)
  const glitches = [...document.querySelectorAll('[data-testid="glitch-marker"]')];
  expect(glitches.map((g) => g.getAttribute("data-start"))).toEqual([hour(1)]);
  const bars = [...document.querySelectorAll('[data-testid="consumption-bar"]')];
  expect(bars.map((b) => b.getAttribute("data-estimated"))).toEqual(["", "", "1", "1", "1", "1", ""]);
  // estimated energy is a hatched segment, in exactly the buckets that hold some
  const hatched = bars.filter((b) => b.querySelector('[data-testid="segment-estimated"] rect[fill="url(#hatch-estimated)"]'));
  expect(hatched.map((b) => b.getAttribute("data-start"))).toEqual([hour(2), hour(3), hour(4), hour(5)]);
  expect(bars[6].querySelector('[data-testid="segment-flagged"]')).not.toBeNull();
  expect(bars[6].querySelector('[data-testid="segment-estimated"]')).toBeNull();
  // the replacement: one vertical line, in its bucket, halfway across it; the withdrawn one none
  const lines = [...document.querySelectorAll('[data-testid="replacement-line"]')];
  expect(lines.map((l) => l.getAttribute("data-at"))).toEqual(["2026-01-02T06:30:00.000Z"]);
  const line = lines[0].querySelector("line")!;
  expect(line.getAttribute("x1")).toBe(line.getAttribute("x2"));
  expect(lines[0].closest('[data-testid="consumption-bar"]')!.getAttribute("data-start")).toBe(hour(6));
  const rect = bars[6].querySelector("rect")!;
  const middle = Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")) / 2;
  expect(Math.abs(Number(line.getAttribute("x1")) - middle)).toBeLessThan(0.01);
  // the table lists the classes exactly
  expect(screen.getAllByTestId("bucket-trusted").map((c) => c.textContent)).toEqual(["1", "1", "—", "—", "—", "—", "1"]);
  expect(screen.getAllByTestId("bucket-estimated").map((c) => c.textContent)).toEqual(["", "", "1", "1", "1", "1", ""]);
  expect(screen.getAllByTestId("bucket-glitches").map((c) => c.textContent)).toEqual(["", "1", "", "", "", "", ""]);
});

const reading = (h: number, value: string, delta: string | null, flags: string[] = [], over: Partial<Measurement> = {}): Measurement => ({
  event_id: `${h}`.padStart(64, "e"), device_id: "m1", metric_type: "energy", timestamp: hour(h), value, unit: "kWh", delta, flags,
  revision: 1, gateway_id: "gw1", raw: { buffer_id: "b", seq: h + 1 }, ingested_at: "", updated_at: "", delta_from: null, ...over,
});

test("why: the rule of each flag and the readings around, the delta's start marked", () => {
  const glitch = reading(3, "0", null, ["glitch"]);
  const back = reading(4, "1002", "1", [], { delta_from: hour(2) });
  render(<WhyView reading={back} neighbours={{ before: [reading(1, "1000", "1"), reading(2, "1001", "1"), glitch], after: [reading(5, "1003", "1")] }} />);
  expect(document.querySelectorAll('[data-testid="why-rule"]')).toHaveLength(0);
  const rows = [...document.querySelectorAll('[data-testid="why-neighbours"] tbody tr')];
  expect(rows.map((r) => r.querySelector('[data-testid="why-value"]')!.textContent)).toEqual(["1000 kWh", "1001 kWh", "0 kWh", "1002 kWh", "1003 kWh"]);
  expect(rows[3].className).toBe("why-self");
  expect(rows[1].className).toBe("why-base");
  cleanup();
  render(<WhyView reading={glitch} neighbours={{ before: [reading(2, "1001", "1")], after: [back] }} />);
  const rule = document.querySelector('[data-testid="why-rule"][data-flag="glitch"]')!;
  expect(rule.textContent).toContain(FLAG_RULES.glitch.rule);
  expect(rule.textContent).toContain(FLAG_RULES.glitch.effect);
});

test("why panel: fetches the readings after and before the flagged one from the measurements API", async () => {
  const flagged = reading(10, "0", null, ["glitch"]);
  const calls: URL[] = [];
  vi.stubGlobal("fetch", vi.fn(async (url: string) => {
    const u = new URL(url, "http://central");
    calls.push(u);
    const items = u.searchParams.get("to")
      ? [reading(8, "1000", "1"), reading(9, "1001", "1")] // before: only two in the first window, so it widens
      : [flagged, reading(11, "1002", "2", [], { delta_from: hour(9) }), reading(12, "1003", "1")];
    return new Response(JSON.stringify({ items, next_cursor: null }), { status: 200 });
  }));
  const onClose = vi.fn();
  render(<ReadingsTable items={[flagged]} onWhy={() => undefined} />);
  expect(screen.getAllByTestId("why-button")).toHaveLength(1);
  cleanup();
  render(<WhyPanel reading={flagged} onClose={onClose} />);
  await waitFor(() => expect(document.querySelectorAll('[data-testid="why-neighbours"] tbody tr')).toHaveLength(5));
  expect(calls[0].searchParams.get("from")).toBe(hour(10));
  expect(calls[0].searchParams.get("device_id")).toBe("m1");
  const before = calls.slice(1);
  expect(before.length).toBe(4); // every window tried, since only 2 readings come back
  expect(before.map((u) => u.searchParams.get("to"))).toEqual([hour(10), hour(10), hour(10), hour(10)]);
  expect(before[0].searchParams.get("from")).toBe(hour(9));
  fireEvent.click(screen.getByTestId("why-close"));
  expect(onClose).toHaveBeenCalled();
});

test("a bucket with a reading without delta is outlined, not hatched (the hatch means estimated)", () => {
  render(<ConsumptionView data={quality} chartWidth={900} />);
  const outlined = [...document.querySelectorAll('[data-testid="null-delta-outline"]')].map((o) => o.closest('[data-testid="consumption-bar"]')!.getAttribute("data-start"));
  expect(outlined).toEqual([hour(1)]);
  expect(document.querySelector('[data-testid="bucket-consumption"]')).not.toBeNull();
});
