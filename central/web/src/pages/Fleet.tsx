import type { DeviceSeries, Gateway, Page } from "../api";
import { Link } from "../components/Link";
import { Empty, ErrorState, Loading } from "../components/States";
import { href } from "../router";
import { formatDuration, formatTime } from "../time";
import { useApi } from "../useApi";

// Thresholds for highlighting; the numbers themselves are always shown.
const LAG_WARNING_SECONDS = 15 * 60;
const SKEW_WARNING_SECONDS = 5;
const CONTACT_WARNING_SECONDS = 15 * 60;

export function FleetPage() {
  const gateways = useApi<{ items: Gateway[] }>("/api/v1/gateways");
  const devices = useApi<Page<DeviceSeries>>("/api/v1/devices", { limit: 5000 });
  return (
    <>
      <h1>Fleet</h1>
      <section>
        <h2>Gateways</h2>
        {gateways.error ? (
          <ErrorState error={gateways.error} onRetry={gateways.reload} />
        ) : gateways.loading ? (
          <Loading what="gateways" />
        ) : gateways.data!.items.length === 0 ? (
          <Empty>
            No gateways yet. Create one on the central with <code>/usr/bin/python3 -m central gateway create NAME</code> (NAME = the agent's{" "}
            <code>gateway_id</code>) and give its token to the agent.
          </Empty>
        ) : (
          <GatewayTable items={gateways.data!.items} />
        )}
      </section>
      <section>
        <h2>Meters</h2>
        {devices.error ? (
          <ErrorState error={devices.error} onRetry={devices.reload} />
        ) : devices.loading ? (
          <Loading what="meters" />
        ) : devices.data!.items.length === 0 ? (
          <Empty>No readings have arrived yet. Meters show up here after their gateway's first upload.</Empty>
        ) : (
          <MeterTable items={devices.data!.items} />
        )}
      </section>
    </>
  );
}

export function GatewayTable({ items }: { items: Gateway[] }) {
  return (
    <table data-testid="gateways">
      <thead>
        <tr>
          <th>Gateway</th>
          <th>Last contact</th>
          <th title="How old the oldest record still waiting in the gateway's buffer was when it last uploaded">Backlog lag</th>
          <th>Backlog records</th>
          <th title="Gateway clock minus central clock at its last upload">Clock skew</th>
          <th title="Records the central answered 'rejected' (never stored; the agent logs them)">Rejected records</th>
        </tr>
      </thead>
      <tbody>
        {items.map((g) => {
          const lagBad = (g.backlog_lag_seconds ?? 0) > LAG_WARNING_SECONDS;
          const skewBad = Math.abs(g.clock_skew_seconds ?? 0) > SKEW_WARNING_SECONDS;
          const quiet = g.seconds_since_contact === null || g.seconds_since_contact > CONTACT_WARNING_SECONDS;
          return (
            <tr key={g.gateway_id} data-gateway={g.gateway_id}>
              <td>
                <Link to={href("/quality", { gateway_id: g.gateway_id })} title="Quality flags of this gateway's readings">
                  {g.gateway_id}
                </Link>
                {g.revoked && <span className="badge bad">revoked</span>}
              </td>
              <td className={quiet ? "warn" : ""}>
                {g.last_contact_at ? (
                  <>
                    {formatTime(g.last_contact_at)} <span className="muted">({formatDuration(g.seconds_since_contact)} ago)</span>
                  </>
                ) : (
                  "never"
                )}
              </td>
              <td className={lagBad ? "warn" : ""} data-testid="backlog-lag" data-seconds={g.backlog_lag_seconds ?? ""}>
                {g.backlog_lag_seconds === null ? "none" : formatDuration(g.backlog_lag_seconds)}
              </td>
              <td data-testid="backlog-records">{g.backlog_records ?? "—"}</td>
              <td className={skewBad ? "warn" : ""} data-testid="clock-skew">
                {g.clock_skew_seconds === null ? "—" : formatDuration(g.clock_skew_seconds)}
              </td>
              <td className={g.rejected_records > 0 ? "warn" : ""} data-testid="rejected">
                {g.rejected_records}
                {g.last_rejection_reason && (
                  <span className="muted">
                    {" "}
                    (last: {g.last_rejection_reason}, {formatTime(g.last_rejected_at)})
                  </span>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function MeterTable({ items }: { items: DeviceSeries[] }) {
  const sorted = [...items].sort((a, b) => Number(b.overdue) - Number(a.overdue) || b.silent_seconds - a.silent_seconds);
  const silent = items.filter((d) => d.overdue).length;
  return (
    <>
      <p data-testid="silent-summary" className={silent ? "warn" : ""}>
        {silent === 0
          ? "Every meter reported within 3 of its usual intervals."
          : `${silent} meter series gone silent for more than 3 of their usual intervals.`}
      </p>
      <table data-testid="meters">
        <thead>
          <tr>
            <th>Meter</th>
            <th>Metric</th>
            <th>Last reading</th>
            <th>Value</th>
            <th>Usual interval</th>
            <th>Silent for</th>
            <th>Gateway</th>
          </tr>
        </thead>
        <tbody>
          {sorted.map((d) => (
            <tr key={`${d.device_id}|${d.metric_type}`} data-device={d.device_id} className={d.overdue ? "overdue" : ""}>
              <td>
                <Link to={href("/device", { device_id: d.device_id, metric_type: d.metric_type })}>{d.device_id}</Link>
              </td>
              <td>{d.metric_type}</td>
              <td>{formatTime(d.last_timestamp)}</td>
              <td className="num">
                {d.last_value} {d.unit}
              </td>
              <td>{formatDuration(d.usual_interval_seconds)}</td>
              <td>
                {formatDuration(d.silent_seconds)}
                {d.overdue && <span className="badge bad">gone silent</span>}
              </td>
              <td>{d.gateway_id}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
