// Consumption per bucket as bars (recharts). What makes a total doubtful is drawn on the bar:
// amber when it contains a suspicious jump, hatched when a reading in it has no delta (first
// reading, reset: consumption across it is unknown), and a red "R" above each bucket with a
// counter reset. Every bar carries its exact numbers as data-* attributes and a tooltip.
import { Bar, CartesianGrid, ComposedChart, LabelList, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { ConsumptionBucket } from "../api";
import { formatBucket } from "../time";

export interface ChartRow {
  label: string;
  start: string;
  consumption: number;
  exact: string | null;
  bucket: ConsumptionBucket;
}

export function chartRows(buckets: ConsumptionBucket[], size: "hour" | "day"): ChartRow[] {
  return buckets.map((b) => ({
    label: formatBucket(b.start, size),
    start: b.start,
    consumption: b.consumption === null ? 0 : Number(b.consumption),
    exact: b.consumption,
    bucket: b,
  }));
}

function barColor(b: ConsumptionBucket): string {
  if (b.suspicious_jumps > 0) return "#d68a00";
  return "#2f6db5";
}

interface BarShapeProps {
  x?: number;
  y?: number;
  width?: number;
  height?: number;
  payload?: ChartRow;
}

function BucketBar(props: BarShapeProps) {
  const { x = 0, y = 0, width = 0, height = 0, payload } = props;
  if (!payload) return null;
  const b = payload.bucket;
  const markY = 4; // in the top margin, above every value label
  return (
    <g
      data-testid="consumption-bar"
      data-start={b.start}
      data-consumption={b.consumption ?? ""}
      data-resets={b.counter_resets}
      data-null-deltas={b.null_deltas}
      data-jumps={b.suspicious_jumps}
    >
      <title>{`${payload.label}: ${b.consumption ?? "no delta"}`}</title>
      <rect x={x} y={y} width={width} height={Math.max(height, 0)} fill={barColor(b)} />
      {b.null_deltas > 0 && height > 0 && <rect x={x} y={y} width={width} height={height} fill="url(#hatch)" />}
      {b.counter_resets > 0 && (
        <g data-testid="reset-marker" data-start={b.start}>
          <title>{`${b.counter_resets} counter reset(s): consumption across a reset is unknown`}</title>
          <rect x={x + width / 2 - 9} y={markY} width={18} height={16} rx={3} fill="#c62828" />
          <text x={x + width / 2} y={markY + 12} textAnchor="middle" fontSize={11} fill="#fff" fontWeight="bold">
            R
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
      <div>consumption: {b.consumption ?? "—"}</div>
      <div>readings: {b.readings}</div>
      {b.null_deltas > 0 && <div>without delta: {b.null_deltas}</div>}
      {b.counter_resets > 0 && <div>counter resets: {b.counter_resets}</div>}
      {b.suspicious_jumps > 0 && <div>suspicious jumps: {b.suspicious_jump_delta}</div>}
    </div>
  );
}

export function ConsumptionChart({
  buckets,
  size,
  unit,
  width,
  height = 280,
}: {
  buckets: ConsumptionBucket[];
  size: "hour" | "day";
  unit: string;
  width?: number;
  height?: number;
}) {
  const rows = chartRows(buckets, size);
  const chart = (
    <ComposedChart data={rows} width={width} height={height} margin={{ top: 28, right: 16, bottom: 8, left: 8 }}>
      <defs>
        <pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
          <line x1="0" y1="0" x2="0" y2="6" stroke="#fff" strokeWidth="2" />
        </pattern>
      </defs>
      <CartesianGrid strokeDasharray="3 3" vertical={false} />
      <XAxis dataKey="label" tick={{ fontSize: 11 }} interval="preserveStartEnd" />
      <YAxis tick={{ fontSize: 11 }} label={{ value: unit, angle: -90, position: "insideLeft", fontSize: 11 }} />
      <Tooltip content={<TooltipBody />} />
      <Bar dataKey="consumption" isAnimationActive={false} shape={<BucketBar />}>
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
