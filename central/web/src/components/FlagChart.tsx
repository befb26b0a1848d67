// Flag counts per bucket as stacked bars (recharts), one colour per flag name.
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { FlagBucket } from "../api";
import { FLAGS } from "../api";
import { formatBucket } from "../time";

const COLORS = ["#2f6db5", "#c62828", "#d68a00", "#6a1b9a", "#00838f", "#558b2f", "#ad1457", "#4e342e", "#37474f", "#ef6c00", "#283593", "#00695c", "#827717"];

export function FlagChart({ buckets, size, width, height = 260 }: { buckets: FlagBucket[]; size: "hour" | "day"; width?: number; height?: number }) {
  const present = FLAGS.filter((f) => buckets.some((b) => (b.flags[f] ?? 0) > 0));
  const rows = buckets.map((b) => ({ label: formatBucket(b.start, size), ...Object.fromEntries(present.map((f) => [f, b.flags[f] ?? 0])) }));
  const chart = (
    <BarChart data={rows} width={width} height={height} margin={{ top: 8, right: 16, bottom: 8, left: 8 }}>
      <CartesianGrid strokeDasharray="3 3" vertical={false} />
      <XAxis dataKey="label" tick={{ fontSize: 11 }} interval="preserveStartEnd" />
      <YAxis allowDecimals={false} tick={{ fontSize: 11 }} />
      <Tooltip />
      <Legend />
      {present.map((f) => (
        <Bar key={f} dataKey={f} stackId="flags" fill={COLORS[FLAGS.indexOf(f) % COLORS.length]} isAnimationActive={false} />
      ))}
    </BarChart>
  );
  if (width) return chart;
  return (
    <ResponsiveContainer width="100%" height={height}>
      {chart}
    </ResponsiveContainer>
  );
}
