// Times are stored and queried in UTC and shown in the browser's zone.

export function browserZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dateOnly = new Intl.DateTimeFormat(undefined, {
  weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
});
const hourOnly = new Intl.DateTimeFormat(undefined, {
  month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
});

export function formatTime(iso: string | null | undefined): string {
  return iso ? dateTime.format(new Date(iso)) : "—";
}

export function formatBucket(iso: string, bucket: "hour" | "day"): string {
  return (bucket === "day" ? dateOnly : hourOnly).format(new Date(iso));
}

/** "3 min", "2 h 5 min", "4 d 1 h": a duration for people. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  const sign = seconds < 0 ? "−" : "";
  let s = Math.abs(seconds);
  if (s < 60) return `${sign}${Number(s.toFixed(s < 10 ? 1 : 0))} s`;
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  if (d > 0) return `${sign}${d} d${h ? ` ${h} h` : ""}`;
  if (h > 0) return `${sign}${h} h${m ? ` ${m} min` : ""}`;
  return `${sign}${m} min`;
}

/** [from, to) covering the last `days` local days up to the end of today, as RFC 3339 UTC. */
export function lastLocalDays(days: number, now: Date = new Date()): { from: string; to: string } {
  const end = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1 - days);
  return { from: start.toISOString(), to: end.toISOString() };
}
