const SEVERE = new Set(["counter_reset", "suspicious_jump", "implausible_rate", "timestamp_conflict", "negative_value", "future_timestamp"]);

export function Flags({ flags }: { flags: string[] }) {
  if (flags.length === 0) return <span className="muted">—</span>;
  return (
    <>
      {flags.map((f) => (
        <span key={f} className={`badge flag ${SEVERE.has(f) ? "bad" : ""}`} data-flag={f}>
          {f}
        </span>
      ))}
    </>
  );
}
