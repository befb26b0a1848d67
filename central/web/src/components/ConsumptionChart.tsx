// Energy per bucket as bars (recharts), split into what to trust and what not: a bar stacks the
// bucket's trusted energy (blue), flagged energy (amber: suspicious jumps, implausible rates) and
// estimated energy (hatched: its part of gap deltas, spread over the silence). What makes a total
// doubtful is drawn on it: a dashed outline when a reading in it has no delta (first reading,
// reset, glitch: consumption across a reset is unknown), a red "R" above each bucket with a counter reset, an amber
// "G" marker (not a bar: a glitch has no delta) above each bucket with glitches, and a purple
// vertical line where an operator recorded a meter replacement. Every bar carries its exact
// numbers as data-* attributes and a tooltip.
import { Bar, CartesianGrid, ComposedChart, LabelList, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { ConsumptionBucket, Epoch } from "../api";
import { addExact } from "../decimal";
import { formatBucket, formatTime } from "../time";

export interface ChartRow {
  label: string;
  start: string;
  /** trusted + flagged + estimated, for drawing only. */
  energy: number;
  /** The same sum, exact; null when the bucket has none of them. */
  exact: string | null;
  bucket: ConsumptionBucket;
  /** Meter replacements in the bucket: where (0..1 across it) and when. */
  replacements: { fraction: number; at: string }[];
}

export function chartRows(buckets: ConsumptionBucket[], size: "hour" | "day", epochs: Epoch[] = []): ChartRow[] {
  const live = epochs.filter((e) => !e.withdrawn);
  return buckets.map((b) => {
    const exact = addExact(b.trusted, b.flagged_energy, b.estimated);
    const start = Date.parse(b.start);
    const end = Date.parse(b.end);
    const replacements = live
      .filter((e) => Date.parse(e.at) >= start && Date.parse(e.at) < end)
      .map((e) => ({ fraction: end > start ? (Date.parse(e.at) - start) / (end - start) : 0, at: e.at }));
    return { label: formatBucket(b.start, size), start: b.start, energy: exact === null ? 0 : Number(exact), exact, bucket: b, replacements };
  });
}

const COLORS = { trusted: "#2f6db5", flagged: "#d68a00", estimated: "#8fb3e0", replacement: "#7b2cbf", glitch: "#e0a400" };

interface BarShapeProps {
  x?: number;
  y?: number;
  width?: number;
  height?: number;
  background?: { y?: number; height?: number };
  payload?: ChartRow;
}

function part(value: string | null): number {
  return value === null ? 0 : Math.max(0, Number(value));
}

function BucketBar(props: BarShapeProps) {
  const { x = 0, y = 0, width = 0, height = 0, payload, background } = props;
  if (!payload) return null;
  const b = payload.bucket;
  const markY = 4; // in the top margin, above every value label
  const bottom = y + Math.max(height, 0);
  const plotBottom = background?.y !== undefined && background.height !== undefined ? background.y + background.height : bottom;
  // Stacked from the bottom: trusted, flagged, estimated, each in proportion to its energy.
  const total = part(b.trusted) + part(b.flagged_energy) + part(b.estimated);
  const segments: { key: string; value: number; fill: string }[] = [
    { key: "trusted", value: part(b.trusted), fill: COLORS.trusted },
    { key: "flagged", value: part(b.flagged_energy), fill: COLORS.flagged },
    { key: "estimated", value: part(b.estimated), fill: COLORS.estimated },
  ];
  let top = bottom;
  return (
    <g
      data-testid="consumption-bar"
      data-start={b.start}
      data-consumption={b.consumption ?? ""}
      data-trusted={b.trusted ?? ""}
      data-flagged-energy={b.flagged_energy ?? ""}
      data-estimated={b.estimated ?? ""}
      data-glitches={b.glitches ?? 0}
      data-resets={b.counter_resets}
      data-null-deltas={b.null_deltas}
      data-jumps={b.suspicious_jumps}
    >
      <title>{`${payload.label}: ${payload.exact ?? "no delta"}`}</title>
      {total > 0 &&
        height > 0 &&
        segments.map((segment) => {
          if (segment.value <= 0) return null;
          const h = (segment.value / total) * height;
          top -= h;
          return (
            <g key={segment.key} data-testid={`segment-${segment.key}`}>
              <rect x={x} y={top} width={width} height={h} fill={segment.fill} />
              {segment.key === "estimated" && <rect x={x} y={top} width={width} height={h} fill="url(#hatch-estimated)" />}
            </g>
          );
        })}
      {b.null_deltas > 0 && height > 0 && (
        <rect data-testid="null-delta-outline" x={x + 1} y={y + 1} width={Math.max(width - 2, 0)} height={Math.max(height - 2, 0)} fill="none" stroke="#1d2430" strokeWidth={2} strokeDasharray="4 3" />
      )}
      {payload.replacements.map((r) => (
        <g key={r.at} data-testid="replacement-line" data-at={r.at}>
          <title>{`meter replaced at ${formatTime(r.at)}: a new epoch starts`}</title>
          <line x1={x + r.fraction * width} x2={x + r.fraction * width} y1={markY} y2={plotBottom} stroke={COLORS.replacement} strokeWidth={2} strokeDasharray="5 3" />
        </g>
      ))}
      {b.counter_resets > 0 && (
        <g data-testid="reset-marker" data-start={b.start}>
          <title>{`${b.counter_resets} counter reset(s): consumption across a reset is unknown`}</title>
          <rect x={x + width / 2 - 9} y={markY} width={18} height={16} rx={3} fill="#c62828" />
          <text x={x + width / 2} y={markY + 12} textAnchor="middle" fontSize={11} fill="#fff" fontWeight="bold">
            R
          </text>
        </g>
      )}
      {(b.glitches ?? 0) > 0 && (
        <g data-testid="glitch-marker" data-start={b.start} data-count={b.glitches}>
          <title>{`${b.glitches} glitch(es): bad readings kept without a delta; the energy is in the returning reading's delta`}</title>
          <circle cx={x + width / 2 + (b.counter_resets > 0 ? 12 : 0)} cy={markY + 8} r={8} fill={COLORS.glitch} />
          <text x={x + width / 2 + (b.counter_resets > 0 ? 12 : 0)} y={markY + 12} textAnchor="middle" fontSize={10} fill="#1d2430" fontWeight="bold">
            G
          </text>
        </g>
      )}
    </g>
  );
}

function TooltipBody({ active, payload }: { active?: boolean; payload?: ReadonlyArray<{ payload?: ChartRow }> }) {
  const row = active ? payload?.[0]?.payload : undefined;
  if (!row) return null;
  const b = row.bucket;
  return (
    <div className="tooltip">
      <strong>{row.label}</strong>
      <div>trusted: {b.trusted ?? "—"}</div>
      {b.flagged_energy !== null && <div>flagged: {b.flagged_energy}</div>}
      {b.estimated !== null && <div>estimated (gap, spread): {b.estimated}</div>}
      <div>consumption (all deltas of its readings): {b.consumption ?? "—"}</div>
      <div>readings: {b.readings}</div>
      {b.null_deltas > 0 && <div>without delta: {b.null_deltas}</div>}
      {b.counter_resets > 0 && <div>counter resets: {b.counter_resets}</div>}
      {b.suspicious_jumps > 0 && <div>suspicious jumps: {b.suspicious_jump_delta}</div>}
      {(b.glitches ?? 0) > 0 && <div>glitches: {b.glitches}</div>}
      {row.replacements.map((r) => (
        <div key={r.at}>meter replaced at {formatTime(r.at)}</div>
      ))}
    </div>
  );
}

export function ConsumptionChart({
  buckets,
  size,
  unit,
  width,
  height = 280,
  epochs = [],
}: {
  buckets: ConsumptionBucket[];
  size: "hour" | "day";
  unit: string;
  width?: number;
  height?: number;
  epochs?: Epoch[];
}) {
  const rows = chartRows(buckets, size, epochs);
  const chart = (
    <ComposedChart data={rows} width={width} height={height} margin={{ top: 28, right: 16, bottom: 8, left: 8 }}>
      <defs>
        <pattern id="hatch-estimated" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)">
          <line x1="0" y1="0" x2="0" y2="6" stroke="#2f6db5" strokeWidth="2" />
        </pattern>
      </defs>
      <CartesianGrid strokeDasharray="3 3" vertical={false} />
      <XAxis dataKey="label" tick={{ fontSize: 11 }} interval="preserveStartEnd" />
      <YAxis tick={{ fontSize: 11 }} label={{ value: unit, angle: -90, position: "insideLeft", fontSize: 11 }} />
      <Tooltip content={<TooltipBody />} />
      <Bar dataKey="energy" isAnimationActive={false} shape={<BucketBar />}>
        {rows.length <= 31 && <LabelList dataKey="exact" position="top" fontSize={10} />}
      </Bar>
    </ComposedChart>
  );
  if (width) return chart;
  return (
    <ResponsiveContainer width="100%" height={height}>
      {chart}
    </ResponsiveContainer>
  );
}
