// Seeds a running central THROUGH THE INGEST API (POST /api/v1/ingest with gateway tokens), the
// way agents would: raw MQTT events plus canonical measurements, event_ids computed by the
// docs/PROTOCOL.md rule. Returns what was sent, so tests can compute the expected numbers by hand.
//
// Values are kept as integer hundredths of a kWh so the expected sums are exact; they are written
// as canonical decimal text (no trailing zeros).
import { createHash, randomUUID } from "node:crypto";

const HOUR = 3600_000;

export function canonicalTime(ms) {
  return new Date(ms).toISOString(); // always YYYY-MM-DDTHH:MM:SS.sssZ, UTC
}

export function decimalText(hundredths) {
  const sign = hundredths < 0 ? "-" : "";
  const abs = Math.abs(hundredths);
  const whole = Math.floor(abs / 100);
  const fraction = String(abs % 100).padStart(2, "0").replace(/0+$/, "");
  return sign + whole + (fraction ? "." + fraction : "");
}

export function eventId(device, timestamp, metric, value) {
  return createHash("sha256").update(`${device}|${timestamp}|${metric}|${value}`, "utf8").digest("hex");
}

/** One meter's energy series: readings at `times`, increments in hundredths; a reset sets `resetTo`. */
function energySeries(device, times, increments, { resetAt = -1, resetTo = 0, jumpAt = -1, jump = 0 } = {}) {
  const readings = [];
  let value = 100_000; // 1000 kWh
  times.forEach((t, i) => {
    let delta = null;
    const flags = [];
    if (i === 0) flags.push("first_reading");
    else if (i === resetAt) {
      value = resetTo;
      flags.push("counter_reset");
    } else {
      delta = increments[i % increments.length] + (i === jumpAt ? jump : 0);
      value += delta;
      if (i === jumpAt) flags.push("suspicious_jump");
    }
    readings.push({ device, metric: "energy", t, value, delta, flags: flags.sort() });
  });
  return readings;
}

async function post(base, token, body) {
  const response = await fetch(`${base}/api/v1/ingest`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`ingest answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** JSON with value/delta written as exact number text (placeholders replaced after stringify). */
function envelope(gatewayId, bufferId, sentAt, backlog, raws, measurements) {
  const ms = measurements.map((m) => ({
    event_id: m.event_id, device_id: m.device, metric_type: m.metric, timestamp: m.timestamp,
    value: `@@${m.valueText}@@`, unit: m.unit ?? "kWh", delta: m.delta === null ? null : `@@${decimalText(m.delta)}@@`,
    flags: m.flags, revision: 1, raw: { buffer_id: bufferId, seq: m.seq },
  }));
  return JSON.stringify({
    protocol_version: "1", gateway_id: gatewayId, buffer_id: bufferId, sent_at: sentAt, backlog,
    raw_events: raws, measurements: ms,
  }).replace(/"@@(-?[0-9.]+)@@"/g, "$1");
}

async function upload(base, gateway, readings, { backlog, sentAtOffsetMs = 0, extraMeasurements = [] }) {
  const bufferId = randomUUID();
  let seq = 0;
  const prepared = readings.map((r) => {
    seq += 1;
    const timestamp = canonicalTime(r.t);
    const valueText = decimalText(r.value);
    const payload = JSON.stringify({ id: r.device, ts: timestamp, kWh: Number(valueText) });
    return { ...r, seq, timestamp, valueText, payload, gateway: gateway.id, bufferId, event_id: eventId(r.device, timestamp, r.metric, valueText) };
  });
  const outcomes = [];
  for (let i = 0; i < prepared.length || i === 0; i += 500) {
    const chunk = prepared.slice(i, i + 500);
    const last = i + 500 >= prepared.length;
    const raws = chunk.map((m) => ({
      seq: m.seq, topic: `site/${m.device}/energy`, payload: Buffer.from(m.payload).toString("base64"),
      qos: 1, retained: false, dup: false, received_at: m.timestamp, decode_error: null,
    }));
    const sentAt = canonicalTime(Date.now() + sentAtOffsetMs);
    const extra = last ? extraMeasurements : [];
    const body = envelope(gateway.id, bufferId, sentAt, last ? backlog(sentAt) : { records: prepared.length - i, oldest_received_at: null },
      raws, [...chunk, ...extra]);
    const out = await post(base, gateway.token, body);
    outcomes.push(...out.measurements);
    if (i + 500 >= prepared.length) break;
  }
  return { prepared, outcomes };
}

/**
 * Two gateways:
 *  gw-north: meter m-north-1 hourly over the last 3 days with one counter reset; meter
 *            m-north-2 every 15 minutes, silent for the last 3 hours; reports a backlog whose
 *            oldest record is exactly 600 s older than its sent_at.
 *  gw-south: meter m-south-1 hourly with a suspicious jump; no backlog; clock 42 s behind;
 *            one record rejected (a unit the agent should have converted).
 */
export async function seed(base, tokens, now = Date.now()) {
  const lastHour = Math.floor(now / HOUR) * HOUR - HOUR; // a whole hour, at least an hour ago
  const hourly = (hours) => Array.from({ length: hours }, (_, i) => lastHour - (hours - 1 - i) * HOUR);
  const north1 = energySeries("m-north-1", hourly(72), [50, 75, 25, 100, 125], { resetAt: 40, resetTo: 75 });
  const quarter = Array.from({ length: 40 }, (_, i) => now - 3 * HOUR - (39 - i) * 15 * 60_000);
  const north2 = energySeries("m-north-2", quarter.map((t) => Math.floor(t / 1000) * 1000), [10, 20]);
  const south1 = energySeries("m-south-1", hourly(48), [200, 150], { jumpAt: 30, jump: 2_000_000 });

  const north = await upload(base, { id: "gw-north", token: tokens.north }, [...north1, ...north2], {
    backlog: (sentAt) => ({ records: 120, oldest_received_at: canonicalTime(Date.parse(sentAt) - 600_000) }),
  });
  const rejectedAt = canonicalTime(lastHour + 1000);
  const rejected = {
    event_id: eventId("m-south-1", rejectedAt, "energy", "5"), device: "m-south-1", metric: "energy",
    timestamp: rejectedAt, valueText: "5", unit: "Wh", delta: null, flags: [], seq: 1,
  };
  const south = await upload(base, { id: "gw-south", token: tokens.south }, south1, {
    backlog: () => ({ records: 0, oldest_received_at: null }),
    sentAtOffsetMs: -42_000,
    extraMeasurements: [rejected],
  });
  const stored = [...north.outcomes, ...south.outcomes].filter((o) => o.outcome === "stored").length;
  const refused = [...north.outcomes, ...south.outcomes].filter((o) => o.outcome === "rejected");
  if (stored !== north1.length + north2.length + south1.length || refused.length !== 1) {
    throw new Error(`seeding: ${stored} stored, ${refused.length} rejected: ${JSON.stringify(refused).slice(0, 300)}`);
  }
  return { readings: [...north.prepared, ...south.prepared], north1, north2, south1 };
}

/** Per local day (in `zone`) of one device: exact sum of deltas in hundredths, readings, resets. */
export function expectedPerDay(readings, zone) {
  const day = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
  const out = new Map();
  for (const r of readings) {
    const key = day.format(new Date(r.t));
    const entry = out.get(key) ?? { sum: 0, hasDelta: false, readings: 0, resets: 0 };
    entry.readings += 1;
    if (r.delta !== null) {
      entry.sum += r.delta;
      entry.hasDelta = true;
    }
    if (r.flags.includes("counter_reset")) entry.resets += 1;
    out.set(key, entry);
  }
  return out;
}

/**
 * gw-lab, protocol "2": meter m-lab-1, hourly over 40 hours, with what #14 taught the agent:
 *  - a glitch: reading 8 reads 0 (kept, no delta); reading 9 is back on course, its delta from
 *    reading 7 (two hours of energy);
 *  - a gap: silent after reading 15 until reading 25, whose `gap` delta (ten hours of energy)
 *    starts at reading 15 (delta_from), so it is estimated 1 kWh per silent hour;
 *  - a meter replacement recorded by an operator at reading 30 + 30 min (a raw event on
 *    `$meter-agent/operator`); the new meter starts at 0 and its first reading is
 *    `meter_replaced` with its delta from that new initial value.
 * Every other hour adds exactly 1 kWh. Values in hundredths, as above.
 */
export async function seedLab(base, token, now = Date.now()) {
  const lastHour = Math.floor(now / HOUR) * HOUR - HOUR;
  const t = (i) => lastHour - (39 - i) * HOUR;
  const replacedAt = t(30) + HOUR / 2;
  const readings = [];
  let value = 500_000;
  let good = null; // the last good reading
  for (let i = 0; i < 40; i++) {
    if (i > 15 && i < 25) continue; // the silence
    const r = { device: "m-lab-1", metric: "energy", t: t(i), flags: [], delta: null, deltaFrom: null };
    if (i === 0) {
      r.value = value;
      r.flags.push("first_reading");
    } else if (i === 8) {
      r.value = 0;
      r.flags.push("glitch");
    } else if (i === 31) {
      value = 50; // the new meter: 0.5 kWh since it was fitted
      r.value = value;
      r.delta = 50;
      r.deltaFrom = replacedAt;
      r.flags.push("meter_replaced");
    } else {
      const hours = (t(i) - good.t) / HOUR;
      value += 100 * hours;
      r.value = value;
      r.delta = 100 * hours;
      r.deltaFrom = good.t;
      if (i === 25) r.flags.push("gap");
    }
    if (!r.flags.includes("glitch")) good = r;
    readings.push(r);
  }
  const bufferId = randomUUID();
  const prepared = readings.map((r, index) => {
    const timestamp = canonicalTime(r.t);
    const valueText = decimalText(r.value);
    const payload = JSON.stringify({ id: r.device, ts: timestamp, kWh: Number(valueText) });
    return { ...r, seq: index + 1, timestamp, valueText, payload, event_id: eventId(r.device, timestamp, r.metric, valueText) };
  });
  const at = canonicalTime(replacedAt);
  const identity = createHash("sha256").update(`meter_replaced\0m-lab-1\0energy\0${at}`, "utf8").digest("hex");
  const operatorPayload = JSON.stringify({
    at, device_id: "m-lab-1", event: "meter_replaced", identity, metric_type: "energy", new_initial: "0",
    old_final: decimalText(prepared.find((r) => r.t === t(30)).value), recorded_at: at, withdrawn: false,
  });
  const raws = [
    ...prepared.map((m) => ({
      seq: m.seq, topic: "site/m-lab-1/energy", payload: Buffer.from(m.payload).toString("base64"),
      qos: 1, retained: false, dup: false, received_at: m.timestamp, decode_error: null,
    })),
    { seq: prepared.length + 1, topic: "$meter-agent/operator", payload: Buffer.from(operatorPayload).toString("base64"),
      qos: 0, retained: false, dup: false, received_at: at, decode_error: null },
  ];
  const ms = prepared.map((m) => ({
    event_id: m.event_id, device_id: m.device, metric_type: m.metric, timestamp: m.timestamp, value: `@@${m.valueText}@@`, unit: "kWh",
    delta: m.delta === null ? null : `@@${decimalText(m.delta)}@@`, delta_from: m.deltaFrom === null ? null : canonicalTime(m.deltaFrom),
    flags: m.flags.sort(), revision: 1, raw: { buffer_id: bufferId, seq: m.seq },
  }));
  const body = JSON.stringify({
    protocol_version: "2", gateway_id: "gw-lab", buffer_id: bufferId, sent_at: canonicalTime(Date.now()),
    backlog: { records: 0, oldest_received_at: null }, raw_events: raws, measurements: ms,
  }).replace(/"@@(-?[0-9.]+)@@"/g, "$1");
  const out = await post(base, token, body);
  if (out.protocol_version !== "2" || out.measurements.some((o) => o.outcome !== "stored") || out.raw_events.some((o) => o.outcome !== "stored")) {
    throw new Error(`seeding gw-lab: ${JSON.stringify(out).slice(0, 400)}`);
  }
  const trusted = prepared.filter((r) => r.delta !== null && !r.flags.includes("gap")).reduce((sum, r) => sum + r.delta, 0);
  return { readings: prepared, at, trusted, glitch: prepared.find((r) => r.flags.includes("glitch")), silence: [t(15), t(25)], t };
}
