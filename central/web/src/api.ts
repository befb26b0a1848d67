// The central's read API (central/README.md, "API overview"), called with the viewer token.
//
// Exact decimals: the API writes value, delta and consumption sums as JSON numbers in exact
// decimal text (up to 40 significant digits). JSON.parse would round them through a double, so
// those fields are turned into strings before parsing and shown exactly as the API wrote them;
// charts convert them with Number() for drawing only.

const TOKEN_KEY = "meter-central-viewer-token";

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A decimal in the API's exact canonical text, e.g. "19872.25". */
export type Decimal = string;

const EXACT_FIELDS = /"(value|delta|consumption|suspicious_jump_delta|last_value|trusted|flagged_energy|estimated|old_final|new_initial)":(-?[0-9]+(?:\.[0-9]+)?)(?=[,}\]])/g;

export function parseExact<T>(text: string): T {
  return JSON.parse(text.replace(EXACT_FIELDS, '"$1":"$2"')) as T;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  /** What the person looking at the page can do about it. */
  get advice(): string {
    if (this.status === 401)
      return "Your viewer token is missing, unknown or revoked. Log out and paste a valid viewer token.";
    if (this.status === 403)
      return "This token is not a viewer token (gateway tokens can only upload). Log out and paste a viewer token.";
    if (this.status === 0)
      return "The central service did not answer. Check that it is running (central/run.sh) and reload.";
    if (this.status >= 500)
      return "The central service failed; its log says why (often: the database is unreachable, see /healthz). Reload when it is back.";
    return "The request was refused; the detail above says which parameter to change.";
  }
}

export async function apiGet<T>(path: string, params: Record<string, string | number | boolean | undefined | null> = {}): Promise<T> {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const url = query.toString() ? `${path}?${query}` : path;
  let response: Response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${getToken() ?? ""}` } });
  } catch (error) {
    throw new ApiError(0, "unreachable", `could not reach the central service (${String(error)})`);
  }
  const text = await response.text();
  if (!response.ok) {
    let code = "http_error";
    let detail = `HTTP ${response.status}`;
    try {
      const body = JSON.parse(text);
      code = body.error ?? code;
      detail = body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : detail;
    } catch {
      // not JSON (a proxy's error page): keep the status line
    }
    throw new ApiError(response.status, code, detail);
  }
  return parseExact<T>(text);
}

export interface Gateway {
  gateway_id: string;
  created_at: string;
  revoked: boolean;
  last_contact_at: string | null;
  seconds_since_contact: number | null;
  last_sent_at: string | null;
  clock_skew_seconds: number | null;
  backlog_records: number | null;
  backlog_oldest_received_at: string | null;
  backlog_lag_seconds: number | null;
  rejected_records: number;
  last_rejected_at: string | null;
  last_rejection_reason: string | null;
}

export interface DeviceSeries {
  device_id: string;
  metric_type: string;
  last_timestamp: string;
  last_value: Decimal;
  unit: string;
  last_ingested_at: string;
  gateway_id: string;
  silent_seconds: number;
  usual_interval_seconds: number | null;
  overdue: boolean;
}

export interface Measurement {
  event_id: string;
  device_id: string;
  metric_type: string;
  timestamp: string;
  value: Decimal;
  unit: string;
  delta: Decimal | null;
  /** Protocol "2": when the delta's interval starts (the last good reading); null otherwise. */
  delta_from?: string | null;
  flags: string[];
  revision: number;
  gateway_id: string;
  raw: { buffer_id: string; seq: number };
  ingested_at: string;
  updated_at: string;
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface ConsumptionBucket {
  start: string;
  end: string;
  readings: number;
  consumption: Decimal | null;
  null_deltas: number;
  flagged: number;
  first_readings: number;
  counter_resets: number;
  suspicious_jumps: number;
  suspicious_jump_delta: Decimal | null;
  /** Deltas without suspicious_jump, implausible_rate or gap: the total to trust. */
  trusted: Decimal | null;
  /** Deltas with suspicious_jump or implausible_rate. */
  flagged_energy: Decimal | null;
  /** This bucket's part of gap deltas, spread over the silence they cover. */
  estimated: Decimal | null;
  glitches: number;
  gaps: number;
}

export interface Consumption {
  device_id: string;
  metric_type: string;
  bucket: "hour" | "day";
  tz: string;
  from: string;
  to: string;
  suspicious_jumps_included: boolean;
  total: Omit<ConsumptionBucket, "start" | "end" | "first_readings">;
  buckets: ConsumptionBucket[];
}

/** A meter replacement recorded by an operator (GET /api/v1/epochs). */
export interface Epoch {
  identity: string;
  device_id: string;
  metric_type: string;
  at: string;
  old_final: Decimal | null;
  new_initial: Decimal | null;
  withdrawn: boolean;
  recorded_at: string;
  gateway_id: string;
  raw: { buffer_id: string; seq: number };
  received_at: string;
}

export interface FlagBucket {
  start: string;
  end: string;
  readings: number;
  flagged: number;
  flags: Record<string, number>;
}

export interface FlagCounts {
  bucket: "hour" | "day";
  tz: string;
  from: string;
  to: string;
  total: { readings: number; flagged: number; flags: Record<string, number> };
  buckets: FlagBucket[];
}

export interface RawEvent {
  gateway_id: string;
  buffer_id: string;
  seq: number;
  topic: string;
  payload_base64: string;
  payload_text: string | null;
  payload_is_json: boolean;
  qos: number;
  retained: boolean;
  dup: boolean;
  received_at: string;
  decode_error: string | null;
  ingested_at: string;
}

/** Every flag name (docs/PROTOCOL.md, "Flags"). */
export const FLAGS = [
  "first_reading",
  "counter_reset",
  "suspicious_jump",
  "out_of_order",
  "timestamp_conflict",
  "negative_value",
  "future_timestamp",
  "gateway_timestamp",
  "beyond_retention",
  "leap_second",
  "dst_ambiguous",
  "dst_gap",
  "clock_unsynced",
  "glitch",
  "rollback",
  "implausible_rate",
  "gap",
  "meter_replaced",
  "device_restarted",
  "period_reset",
  "scale_rounded",
] as const;
