import { useState } from "react";
import type { Consumption, DeviceSeries, Epoch, Measurement, Page } from "../api";
import { ConsumptionChart } from "../components/ConsumptionChart";
import { Flags } from "../components/Flags";
import { WhyPanel } from "../components/WhyPanel";
import { Link } from "../components/Link";
import { Empty, ErrorState, Loading } from "../components/States";
import { href, navigate } from "../router";
import { browserZone, formatBucket, formatTime, lastLocalDays } from "../time";
import { useApi } from "../useApi";

export function rawHref(m: Pick<Measurement, "gateway_id" | "raw">): string {
  return href("/raw", { gateway_id: m.gateway_id, buffer_id: m.raw.buffer_id, seq: m.raw.seq });
}

export function DevicePage({ params }: { params: URLSearchParams }) {
  const deviceId = params.get("device_id") ?? "";
  const metric = params.get("metric_type") ?? "energy";
  const bucket = params.get("bucket") === "hour" ? "hour" : "day";
  const days = Math.max(1, Math.min(366, Number(params.get("days") ?? 7) || 7));
  const set = (change: Record<string, string | number>) =>
    navigate(href("/device", { device_id: deviceId, metric_type: metric, bucket, days, ...change }));

  return (
    <>
      <h1>Device {deviceId && <span data-testid="device-id">{deviceId}</span>}</h1>
      <DevicePicker deviceId={deviceId} metric={metric} onPick={(d, m) => set({ device_id: d, metric_type: m })} />
      {deviceId && (
        <div className="controls">
          <label>
            Buckets{" "}
            <select value={bucket} onChange={(e) => set({ bucket: e.target.value })} data-testid="bucket">
              <option value="day">per day</option>
              <option value="hour">per hour</option>
            </select>
          </label>
          <label>
            Range{" "}
            <select value={days} onChange={(e) => set({ days: e.target.value })} data-testid="days">
              {[1, 2, 3, 7, 14, 31, 92].map((d) => (
                <option key={d} value={d}>
                  last {d} day{d > 1 ? "s" : ""}
                </option>
              ))}
            </select>
          </label>
        </div>
      )}
      {deviceId && <DeviceData deviceId={deviceId} metric={metric} bucket={bucket} days={days} />}
    </>
  );
}

function DevicePicker({ deviceId, metric, onPick }: { deviceId: string; metric: string; onPick: (d: string, m: string) => void }) {
  const devices = useApi<Page<DeviceSeries>>("/api/v1/devices", { limit: 5000 });
  if (devices.error) return <ErrorState error={devices.error} onRetry={devices.reload} />;
  if (devices.loading) return <Loading what="meters" />;
  const items = devices.data!.items;
  if (items.length === 0) return <Empty>No meters have readings yet; they appear after their gateway's first upload.</Empty>;
  const value = `${deviceId}|${metric}`;
  return (
    <label className="controls">
      Meter{" "}
      <select
        value={items.some((d) => `${d.device_id}|${d.metric_type}` === value) ? value : ""}
        onChange={(e) => {
          const [d, m] = [e.target.value.slice(0, e.target.value.lastIndexOf("|")), e.target.value.slice(e.target.value.lastIndexOf("|") + 1)];
          onPick(d, m);
        }}
        data-testid="device-picker"
      >
        <option value="">choose a meter…</option>
        {items.map((d) => (
          <option key={`${d.device_id}|${d.metric_type}`} value={`${d.device_id}|${d.metric_type}`}>
            {d.device_id} ({d.metric_type})
          </option>
        ))}
      </select>
    </label>
  );
}

function DeviceData({ deviceId, metric, bucket, days }: { deviceId: string; metric: string; bucket: "hour" | "day"; days: number }) {
  // The range is whole local days, so day buckets line up with the browser's calendar days.
  // Aligned to local midnights, so the strings only change when the day does (no refetch loop).
  const span = lastLocalDays(days);
  const tz = browserZone();
  const consumption = useApi<Consumption>("/api/v1/consumption", {
    device_id: deviceId, metric_type: metric, bucket, tz, from: span.from, to: span.to,
  });
  // Replacements only draw a line: without them (or while they load) the chart is still right.
  const epochs = useApi<Page<Epoch>>("/api/v1/epochs", { device_id: deviceId, metric_type: metric });
  return (
    <>
      <section>
        <h2>
          Consumption per {bucket} <span className="muted">({tz})</span>
        </h2>
        {consumption.error ? (
          <ErrorState error={consumption.error} onRetry={consumption.reload} />
        ) : consumption.loading ? (
          <Loading what="consumption" />
        ) : (
          <ConsumptionView data={consumption.data!} epochs={epochs.data?.items ?? []} />
        )}
      </section>
      <section>
        <h2>Readings</h2>
        <Readings key={`${deviceId}|${metric}|${span.from}`} deviceId={deviceId} metric={metric} from={span.from} to={span.to} />
      </section>
    </>
  );
}

export function ConsumptionView({ data, chartWidth, epochs = [] }: { data: Consumption; chartWidth?: number; epochs?: Epoch[] }) {
  if (data.total.readings === 0) {
    return (
      <Empty>
        No readings of {data.device_id} ({data.metric_type}) between {formatTime(data.from)} and {formatTime(data.to)}. Choose a longer range,
        or check on the Fleet page whether this meter has gone silent.
      </Empty>
    );
  }
  const unit = data.metric_type === "power" ? "kW" : "kWh";
  return (
    <>
      <p data-testid="trusted-total" className="trusted-total">
        Trusted <strong className="num">{data.total.trusted ?? "—"}</strong> {unit}
        {data.total.flagged_energy !== null && (
          <>
            {" "}+ flagged <span className="num" data-testid="flagged-total">{data.total.flagged_energy}</span> {unit} (suspicious jumps, implausible rates)
          </>
        )}
        {data.total.estimated !== null && (
          <>
            {" "}+ estimated <span className="num" data-testid="estimated-total">{data.total.estimated}</span> {unit} (gaps, spread over the silence)
          </>
        )}
      </p>
      <p data-testid="consumption-total" className="muted">
        Sum of all deltas <span className="num">{data.total.consumption ?? "—"}</span> {unit} from {data.total.readings} readings
        {data.total.null_deltas > 0 && `; ${data.total.null_deltas} without a delta (first reading, reset, glitch: consumption across a reset is unknown)`}
        {data.total.suspicious_jump_delta !== null && `; includes ${data.total.suspicious_jump_delta} ${unit} of suspicious jumps`}
        {(data.total.glitches ?? 0) > 0 && `; ${data.total.glitches} glitch(es) kept without a delta`}.
      </p>
      <ConsumptionChart buckets={data.buckets} size={data.bucket} unit={unit} width={chartWidth} epochs={epochs} />
      <p className="legend">
        <span className="swatch normal" /> trusted <span className="swatch jump" /> flagged (suspicious jump, implausible rate){" "}
        <span className="swatch estimated" /> estimated (a gap's energy, spread) <span className="swatch no-delta" /> a reading without delta{" "}
        <span className="swatch reset">R</span> counter reset <span className="swatch glitch">G</span> glitch{" "}
        <span className="swatch replacement" /> meter replaced
      </p>
      <table data-testid="buckets">
        <thead>
          <tr>
            <th>{data.bucket === "day" ? "Day" : "Hour"}</th>
            <th>Trusted ({unit})</th>
            <th>Flagged ({unit})</th>
            <th>Estimated ({unit})</th>
            <th>Consumption ({unit})</th>
            <th>Readings</th>
            <th>Glitches</th>
            <th>Without delta</th>
            <th>Counter resets</th>
            <th>Suspicious jumps ({unit})</th>
            <th>Flagged</th>
          </tr>
        </thead>
        <tbody>
          {data.buckets.map((b) => (
            <tr key={b.start} data-start={b.start} className={b.counter_resets ? "has-reset" : ""}>
              <td>{formatBucket(b.start, data.bucket)}</td>
              <td className="num" data-testid="bucket-trusted">
                {b.trusted ?? "—"}
              </td>
              <td className="num" data-testid="bucket-flagged">
                {b.flagged_energy ?? ""}
              </td>
              <td className="num" data-testid="bucket-estimated">
                {b.estimated ?? ""}
              </td>
              <td className="num" data-testid="bucket-consumption">
                {b.consumption ?? "—"}
              </td>
              <td className="num">{b.readings}</td>
              <td className="num" data-testid="bucket-glitches">
                {b.glitches ? b.glitches : ""}
              </td>
              <td className="num">{b.null_deltas || ""}</td>
              <td className="num" data-testid="bucket-resets">
                {b.counter_resets ? <span className="badge bad">{b.counter_resets} reset</span> : ""}
              </td>
              <td className="num">{b.suspicious_jump_delta ?? ""}</td>
              <td className="num">{b.flagged || ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Readings({ deviceId, metric, from, to }: { deviceId: string; metric: string; from: string; to: string }) {
  const [cursor, setCursor] = useState<string | null>(null);
  const [why, setWhy] = useState<Measurement | null>(null);
  const page = useApi<Page<Measurement>>("/api/v1/measurements", { device_id: deviceId, metric_type: metric, from, to, limit: 500, cursor });
  if (page.error) return <ErrorState error={page.error} onRetry={page.reload} />;
  if (page.loading) return <Loading what="readings" />;
  const { items, next_cursor } = page.data!;
  if (items.length === 0) return <Empty>No readings in this range.</Empty>;
  return (
    <>
      <ReadingsTable items={items} onWhy={setWhy} />
      {why && <WhyPanel reading={why} onClose={() => setWhy(null)} />}
      <div className="pager">
        {cursor && (
          <button type="button" onClick={() => setCursor(null)}>
            First page
          </button>
        )}
        {next_cursor && (
          <button type="button" onClick={() => setCursor(next_cursor)}>
            Next 500 readings
          </button>
        )}
      </div>
    </>
  );
}

export function ReadingsTable({ items, showDevice = false, onWhy }: { items: Measurement[]; showDevice?: boolean; onWhy?: (m: Measurement) => void }) {
  return (
    <table data-testid="readings">
      <thead>
        <tr>
          <th>Time</th>
          {showDevice && <th>Meter</th>}
          <th>Value</th>
          <th>Delta</th>
          <th>Flags</th>
          <th>Revision</th>
          <th>Gateway</th>
          <th>Raw message</th>
        </tr>
      </thead>
      <tbody>
        {items.map((m) => (
          <tr key={m.event_id} data-event-id={m.event_id} className={m.flags.includes("counter_reset") ? "has-reset" : ""}>
            <td>{formatTime(m.timestamp)}</td>
            {showDevice && (
              <td>
                <Link to={href("/device", { device_id: m.device_id, metric_type: m.metric_type })}>{m.device_id}</Link>
              </td>
            )}
            <td className="num" data-testid="reading-value">
              {m.value} {m.unit}
            </td>
            <td className="num" data-testid="reading-delta">
              {m.delta ?? "—"}
            </td>
            <td>
              <Flags flags={m.flags} />
              {onWhy && m.flags.length > 0 && (
                <button type="button" className="why" data-testid="why-button" onClick={() => onWhy(m)} title="The neighbouring readings and the rule that decided">
                  why?
                </button>
              )}
            </td>
            <td className="num">{m.revision}</td>
            <td>{m.gateway_id}</td>
            <td>
              <Link to={rawHref(m)} data-testid="raw-link" title="The MQTT message this reading was decoded from">
                raw #{m.raw.seq}
              </Link>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

