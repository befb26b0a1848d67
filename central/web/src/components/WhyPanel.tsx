// "Why is this reading flagged?": the readings around it, fetched from the measurements API, and
// the rule that decided each of its flags (flagRules.ts), so a user can check the call by hand.
import { useEffect, useState } from "react";
import { apiGet, type Measurement, type Page } from "../api";
import { flagRule } from "../flagRules";
import { formatTime } from "../time";
import { Flags } from "./Flags";
import { ErrorState, Loading } from "./States";

/** How many readings on each side: the default glitch window (3) and one more. */
export const NEIGHBOURS = 4;
// The readings before are found in growing windows (the API pages forward in time), so a dense
// series needs one small request and a sparse one a few.
const WINDOWS_MS = [3600e3, 86400e3, 31 * 86400e3, 366 * 86400e3];

export interface Neighbours {
  before: Measurement[];
  after: Measurement[];
}

export async function fetchNeighbours(m: Measurement, count = NEIGHBOURS): Promise<Neighbours> {
  const series = { device_id: m.device_id, metric_type: m.metric_type };
  const later = await apiGet<Page<Measurement>>("/api/v1/measurements", { ...series, from: m.timestamp, limit: count + 50 });
  const after = later.items.filter((x) => x.event_id !== m.event_id).slice(0, count);
  let before: Measurement[] = [];
  const at = Date.parse(m.timestamp);
  for (const window of WINDOWS_MS) {
    const earlier = await apiGet<Page<Measurement>>("/api/v1/measurements", {
      ...series, from: new Date(at - window).toISOString(), to: m.timestamp, limit: 10000,
    });
    before = earlier.items.slice(-count);
    if (before.length >= count) break;
  }
  return { before, after };
}

export function WhyView({ reading, neighbours }: { reading: Measurement; neighbours: Neighbours }) {
  const rows = [...neighbours.before, reading, ...neighbours.after];
  return (
    <>
      <div data-testid="why-rules">
        {reading.flags.map((flag) => {
          const rule = flagRule(flag);
          return (
            <p key={flag} data-testid="why-rule" data-flag={flag}>
              <Flags flags={[flag]} /> {rule.rule} <em>Effect on totals:</em> {rule.effect}
            </p>
          );
        })}
      </div>
      <table data-testid="why-neighbours">
        <thead>
          <tr>
            <th>Time</th>
            <th>Value</th>
            <th>Delta</th>
            <th>Flags</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {rows.map((m) => {
            const self = m.event_id === reading.event_id;
            const base = !self && reading.delta_from != null && m.timestamp === reading.delta_from;
            return (
              <tr key={m.event_id} data-event-id={m.event_id} className={self ? "why-self" : base ? "why-base" : ""}>
                <td>{formatTime(m.timestamp)}</td>
                <td className="num" data-testid="why-value">
                  {m.value} {m.unit}
                </td>
                <td className="num">{m.delta ?? "—"}</td>
                <td>
                  <Flags flags={m.flags} />
                </td>
                <td className="muted">{self ? "this reading" : base ? "its delta is measured from here" : ""}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}

export function WhyPanel({ reading, onClose }: { reading: Measurement; onClose: () => void }) {
  const [state, setState] = useState<{ id: string; data: Neighbours | null; error: unknown }>({ id: "", data: null, error: null });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let live = true;
    fetchNeighbours(reading).then(
      (data) => live && setState({ id: reading.event_id, data, error: null }),
      (error) => live && setState({ id: reading.event_id, data: null, error }),
    );
    return () => {
      live = false;
    };
  }, [reading, generation]);
  const current = state.id === reading.event_id;
  return (
    <section className="why-panel" data-testid="why-panel" data-event-id={reading.event_id}>
      <h3>
        Why the reading of {formatTime(reading.timestamp)} ({reading.value} {reading.unit}) is flagged{" "}
        <button type="button" onClick={onClose} data-testid="why-close">
          close
        </button>
      </h3>
      {current && state.error ? (
        <ErrorState error={state.error} onRetry={() => setGeneration((g) => g + 1)} />
      ) : current && state.data ? (
        <WhyView reading={reading} neighbours={state.data} />
      ) : (
        <Loading what="the neighbouring readings" />
      )}
    </section>
  );
}
