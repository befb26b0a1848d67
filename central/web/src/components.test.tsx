import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach } from "vitest";
import type { Consumption, DeviceSeries, Gateway, Measurement } from "./api";
import { ConsumptionView, ReadingsTable } from "./pages/Device";
import { GatewayTable, MeterTable } from "./pages/Fleet";
import { LoginPage } from "./pages/Login";
import { RawEventView } from "./pages/RawEvent";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

const gateway = (over: Partial<Gateway>): Gateway => ({
  gateway_id: "gw1", created_at: "2026-01-01T00:00:00.000Z", revoked: false, last_contact_at: new Date().toISOString(),
  seconds_since_contact: 12, last_sent_at: null, clock_skew_seconds: 0.2, backlog_records: 0, backlog_oldest_received_at: null,
  backlog_lag_seconds: null, rejected_records: 0, last_rejected_at: null, last_rejection_reason: null, ...over,
});

test("gateway table shows lag, skew and rejected records, and warns on the bad ones", () => {
  render(
    <GatewayTable
      items={[
        gateway({ gateway_id: "gw-ok" }),
        gateway({ gateway_id: "gw-late", backlog_lag_seconds: 5400, backlog_records: 1200, clock_skew_seconds: -42,
                  rejected_records: 3, last_rejection_reason: "wrong_unit", last_rejected_at: "2026-01-01T00:00:00.000Z" }),
      ]}
    />,
  );
  const late = document.querySelector('tr[data-gateway="gw-late"]')!;
  expect(late.querySelector('[data-testid="backlog-lag"]')!.textContent).toBe("1 h 30 min");
  expect(late.querySelector('[data-testid="backlog-lag"]')!.className).toBe("warn");
  expect(late.querySelector('[data-testid="clock-skew"]')!.textContent).toBe("−42 s");
  expect(late.querySelector('[data-testid="rejected"]')!.textContent).toContain("3 (last: wrong_unit");
  const ok = document.querySelector('tr[data-gateway="gw-ok"]')!;
  expect(ok.querySelector('[data-testid="backlog-lag"]')!.textContent).toBe("none");
  expect(ok.querySelector('[data-testid="backlog-lag"]')!.className).toBe("");
});

const series = (device_id: string, overdue: boolean, silent_seconds: number): DeviceSeries => ({
  device_id, metric_type: "energy", last_timestamp: "2026-01-01T00:00:00.000Z", last_value: "12.5", unit: "kWh",
  last_ingested_at: "2026-01-01T00:00:01.000Z", gateway_id: "gw1", silent_seconds, usual_interval_seconds: 900, overdue,
});

test("meters gone silent come first and are counted", () => {
  render(<MeterTable items={[series("fine", false, 100), series("quiet", true, 7200)]} />);
  const rows = [...document.querySelectorAll("tr[data-device]")].map((r) => r.getAttribute("data-device"));
  expect(rows).toEqual(["quiet", "fine"]);
  expect(screen.getByTestId("silent-summary").textContent).toMatch(/^1 meter series gone silent/);
  expect(screen.getAllByText("gone silent")).toHaveLength(1);
});

const bucket = (start: string, consumption: string | null, over: Partial<Consumption["buckets"][0]> = {}) => ({
  start, end: start, readings: 4, consumption, null_deltas: 0, flagged: 0, first_readings: 0, counter_resets: 0,
  suspicious_jumps: 0, suspicious_jump_delta: null, trusted: consumption, flagged_energy: null, estimated: null, glitches: 0,
  gaps: 0, ...over,
});

const consumption: Consumption = {
  device_id: "m1", metric_type: "energy", bucket: "day", tz: "Europe/Berlin", from: "2026-01-01T23:00:00.000Z",
  to: "2026-01-04T23:00:00.000Z", suspicious_jumps_included: true,
  total: { readings: 9, consumption: "19903.000000000000000000000000000001", null_deltas: 2, flagged: 3, counter_resets: 1,
           suspicious_jumps: 1, suspicious_jump_delta: "19870", trusted: "33.000000000000000000000000000001",
           flagged_energy: "19870", estimated: null, glitches: 0, gaps: 0 },
  buckets: [
    bucket("2026-01-01T23:00:00.000Z", "30.000000000000000000000000000001", { null_deltas: 1, first_readings: 1 }),
    bucket("2026-01-02T23:00:00.000Z", null, { readings: 0 }),
    bucket("2026-01-03T23:00:00.000Z", "19873", { counter_resets: 1, null_deltas: 1, suspicious_jumps: 1, suspicious_jump_delta: "19870",
                                                  trusted: "3", flagged_energy: "19870" }),
  ],
};

test("consumption: exact numbers in the table, bars and a reset marker in the chart", () => {
  render(<ConsumptionView data={consumption} chartWidth={800} />);
  const cells = screen.getAllByTestId("bucket-consumption").map((c) => c.textContent);
  expect(cells).toEqual(["30.000000000000000000000000000001", "—", "19873"]);
  const bars = [...document.querySelectorAll('[data-testid="consumption-bar"]')];
  expect(bars.map((b) => b.getAttribute("data-consumption"))).toEqual(["30.000000000000000000000000000001", "", "19873"]);
  const resets = [...document.querySelectorAll('[data-testid="reset-marker"]')].map((m) => m.getAttribute("data-start"));
  expect(resets).toEqual(["2026-01-03T23:00:00.000Z"]);
  expect(screen.getByTestId("consumption-total").textContent).toContain("includes 19870 kWh of suspicious jumps");
  expect(screen.getByTestId("consumption-total").textContent).toContain("2 without a delta");
});

test("consumption with no readings says what to do instead of drawing an empty chart", () => {
  render(<ConsumptionView data={{ ...consumption, total: { ...consumption.total, readings: 0 }, buckets: [] }} chartWidth={800} />);
  expect(screen.getByText(/Choose a longer range/)).toBeTruthy();
  expect(document.querySelector('[data-testid="consumption-bar"]')).toBeNull();
});

test("each reading links to its raw message by (gateway, buffer, seq)", () => {
  const m: Measurement = {
    event_id: "e".repeat(64), device_id: "m 1|x", metric_type: "energy", timestamp: "2026-01-01T00:00:00.000Z", value: "5",
    unit: "kWh", delta: null, flags: ["counter_reset"], revision: 1, gateway_id: "gw/1",
    raw: { buffer_id: "6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90", seq: 42 }, ingested_at: "", updated_at: "",
  };
  render(<ReadingsTable items={[m]} />);
  const link = screen.getByTestId("raw-link") as HTMLAnchorElement;
  const url = new URL(link.href);
  expect(url.pathname).toBe("/raw");
  expect(Object.fromEntries(url.searchParams)).toEqual({ gateway_id: "gw/1", buffer_id: m.raw.buffer_id, seq: "42" });
  expect(document.querySelector('[data-flag="counter_reset"]')!.className).toContain("bad");
  expect(screen.getByTestId("reading-delta").textContent).toBe("—");
});

test("a binary raw payload is shown as base64, a text one verbatim", () => {
  const base = { gateway_id: "gw1", buffer_id: "b", seq: 1, topic: "t", qos: 1, retained: false, dup: false,
                 received_at: "2026-01-01T00:00:00.000Z", decode_error: null, ingested_at: "2026-01-01T00:00:01.000Z" };
  const { unmount } = render(<RawEventView raw={{ ...base, payload_base64: "AAE=", payload_text: null, payload_is_json: false }} />);
  expect(screen.getByTestId("raw-payload").textContent).toBe("AAE=");
  expect(screen.getByText(/binary, base64/)).toBeTruthy();
  unmount();
  render(<RawEventView raw={{ ...base, payload_base64: "", payload_text: '{"kWh":1.50}', payload_is_json: true }} />);
  expect(screen.getByTestId("raw-payload").textContent).toBe('{"kWh":1.50}');
});

test("login refuses a gateway token without asking the server, and explains a 401", async () => {
  const fetchStub = vi.fn(async () => new Response('{"error":"unauthorized","detail":"invalid or revoked token"}', { status: 401 }));
  vi.stubGlobal("fetch", fetchStub);
  const onLogin = vi.fn();
  render(<LoginPage onLogin={onLogin} />);
  expect(screen.getByText("/usr/bin/python3 -m central viewer create ops")).toBeTruthy();
  const input = screen.getByLabelText("Viewer token");
  fireEvent.change(input, { target: { value: "mgw_abc" } });
  fireEvent.click(screen.getByText("Log in"));
  expect(screen.getByRole("alert").textContent).toContain("gateway token");
  expect(fetchStub).not.toHaveBeenCalled();
  fireEvent.change(input, { target: { value: "mvw_wrong" } });
  fireEvent.click(screen.getByText("Log in"));
  await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("does not know this token"));
  expect(fetchStub).toHaveBeenCalledTimes(1);
  expect(onLogin).not.toHaveBeenCalled();
  expect(sessionStorage.length).toBe(0);
});
