// Exact sums of the API's decimal texts (BigInt, never through a double), for the few numbers
// the dashboard adds up itself: a bucket's energy is its trusted + flagged + estimated parts.

function scaled(text: string, digits: number): bigint {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  const value = BigInt(whole + fraction.padEnd(digits, "0"));
  return negative ? -value : value;
}

/** The exact sum of canonical decimal texts, as canonical text; null when all are null. */
export function addExact(...terms: (string | null | undefined)[]): string | null {
  const present = terms.filter((t): t is string => t !== null && t !== undefined);
  if (present.length === 0) return null;
  const digits = Math.max(...present.map((t) => (t.split(".")[1] ?? "").length));
  const sum = present.reduce((acc, t) => acc + scaled(t, digits), 0n);
  const negative = sum < 0n;
  const text = (negative ? -sum : sum).toString().padStart(digits + 1, "0");
  const whole = text.slice(0, text.length - digits);
  const fraction = text.slice(text.length - digits).replace(/0+$/, "");
  return (negative ? "-" : "") + whole + (fraction ? "." + fraction : "");
}
