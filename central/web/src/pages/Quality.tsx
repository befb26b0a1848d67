import { useState } from "react";
import type { FlagCounts, Gateway, Measurement, Page } from "../api";
import { FLAGS } from "../api";
import { FlagChart } from "../components/FlagChart";
import { Empty, ErrorState, Loading } from "../components/States";
import { href, navigate } from "../router";
import { browserZone, lastLocalDays } from "../time";
import { useApi } from "../useApi";
import { ReadingsTable } from "./Device";

export function QualityPage({ params }: { params: URLSearchParams }) {
  const filters = {
    gateway_id: params.get("gateway_id") ?? "",
    device_id: params.get("device_id") ?? "",
    flag: params.get("flag") ?? "",
    bucket: params.get("bucket") === "hour" ? "hour" : "day",
    days: Math.max(1, Math.min(366, Number(params.get("days") ?? 7) || 7)),
  } as const;
  const set = (change: Partial<Record<keyof typeof filters, string | number>>) => navigate(href("/quality", { ...filters, ...change }));
  const span = lastLocalDays(filters.days);
  const tz = browserZone();
  const gateways = useApi<{ items: Gateway[] }>("/api/v1/gateways");
  const counts = useApi<FlagCounts>("/api/v1/flag_counts", {
    from: span.from, to: span.to, bucket: filters.bucket, tz, gateway_id: filters.gateway_id, device_id: filters.device_id,
  });
  const [deviceText, setDeviceText] = useState(filters.device_id);

  return (
    <>
      <h1>Quality</h1>
      <form
        className="controls"
        onSubmit={(e) => {
          e.preventDefault();
          set({ device_id: deviceText.trim() });
        }}
      >
        <label>
          Gateway{" "}
          <select value={filters.gateway_id} onChange={(e) => set({ gateway_id: e.target.value })} data-testid="gateway-filter">
            <option value="">all gateways</option>
            {gateways.data?.items.map((g) => (
              <option key={g.gateway_id} value={g.gateway_id}>
                {g.gateway_id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Meter <input value={deviceText} onChange={(e) => setDeviceText(e.target.value)} placeholder="all meters (Enter to apply)" data-testid="device-filter" />
        </label>
        <label>
          Flag{" "}
          <select value={filters.flag} onChange={(e) => set({ flag: e.target.value })} data-testid="flag-filter">
            <option value="">any flag</option>
            {FLAGS.map((f) => (
              <option key={f} value={f}>
                {f}
              </option>
            ))}
          </select>
        </label>
        <label>
          Buckets{" "}
          <select value={filters.bucket} onChange={(e) => set({ bucket: e.target.value })}>
            <option value="day">per day</option>
            <option value="hour">per hour</option>
          </select>
        </label>
        <label>
          Range{" "}
          <select value={filters.days} onChange={(e) => set({ days: e.target.value })}>
            {[1, 2, 7, 14, 31, 92].map((d) => (
              <option key={d} value={d}>
                last {d} day{d > 1 ? "s" : ""}
              </option>
            ))}
          </select>
        </label>
      </form>
      <section>
        <h2>
          Flag counts per {filters.bucket} <span className="muted">({tz})</span>
        </h2>
        {counts.error ? (
          <ErrorState error={counts.error} onRetry={counts.reload} />
        ) : counts.loading ? (
          <Loading what="flag counts" />
        ) : counts.data!.total.readings === 0 ? (
          <Empty>No readings in this range{filters.gateway_id || filters.device_id ? " for this filter" : ""}. Choose a longer range or clear the filters.</Empty>
        ) : (
          <>
            <p data-testid="flag-summary">
              {counts.data!.total.flagged} of {counts.data!.total.readings} readings flagged
              {Object.keys(counts.data!.total.flags).length > 0 &&
                ": " +
                  Object.entries(counts.data!.total.flags)
                    .map(([f, n]) => `${f} ${n}`)
                    .join(", ")}
            </p>
            {counts.data!.total.flagged > 0 && <FlagChart buckets={counts.data!.buckets} size={filters.bucket} />}
          </>
        )}
      </section>
      <section>
        <h2>Flagged readings</h2>
        <FlaggedList key={JSON.stringify(filters)} {...filters} from={span.from} to={span.to} />
      </section>
    </>
  );
}

function FlaggedList({ gateway_id, device_id, flag, from, to }: { gateway_id: string; device_id: string; flag: string; from: string; to: string }) {
  const [cursor, setCursor] = useState<string | null>(null);
  const page = useApi<Page<Measurement>>("/api/v1/measurements", {
    flagged: flag ? undefined : true, flag, gateway_id, device_id, from, to, limit: 200, cursor,
  });
  if (page.error) return <ErrorState error={page.error} onRetry={page.reload} />;
  if (page.loading) return <Loading what="flagged readings" />;
  const { items, next_cursor } = page.data!;
  if (items.length === 0) return <Empty>No flagged readings match. Widen the range or clear a filter.</Empty>;
  return (
    <>
      <ReadingsTable items={items} showDevice />
      <div className="pager">
        {cursor && (
          <button type="button" onClick={() => setCursor(null)}>
            First page
          </button>
        )}
        {next_cursor && (
          <button type="button" onClick={() => setCursor(next_cursor)}>
            Next 200
          </button>
        )}
      </div>
    </>
  );
}
