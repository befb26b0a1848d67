import { parseExact } from "./api";
import { formatDuration, lastLocalDays } from "./time";

test("decimals keep every digit the API wrote; other numbers and strings are untouched", () => {
  const text =
    '{"items":[{"value":1234567890123456789012345678.900000000000000000000000000001,"delta":-0.25,"revision":2,' +
    '"payload_text":"{\\"value\\":1.50}"}],"consumption":null,"total":{"consumption":19903}}';
  const parsed = parseExact<{ items: { value: string; delta: string; revision: number; payload_text: string }[]; consumption: null; total: { consumption: string } }>(text);
  expect(parsed.items[0].value).toBe("1234567890123456789012345678.900000000000000000000000000001");
  expect(parsed.items[0].delta).toBe("-0.25");
  expect(parsed.items[0].revision).toBe(2);
  expect(parsed.items[0].payload_text).toBe('{"value":1.50}');
  expect(parsed.consumption).toBeNull();
  expect(parsed.total.consumption).toBe("19903");
});

test("local-day ranges follow the browser zone across a DST change (TZ=Europe/Berlin)", () => {
  expect(Intl.DateTimeFormat().resolvedOptions().timeZone).toBe("Europe/Berlin");
  // 2026-10-25 is 25 hours long in Berlin
  expect(lastLocalDays(2, new Date("2026-10-25T12:00:00Z"))).toEqual({
    from: "2026-10-23T22:00:00.000Z",
    to: "2026-10-25T23:00:00.000Z",
  });
  expect(lastLocalDays(1, new Date("2026-03-29T12:00:00Z"))).toEqual({
    from: "2026-03-28T23:00:00.000Z",
    to: "2026-03-29T22:00:00.000Z",
  });
});

test("durations for people", () => {
  expect(formatDuration(null)).toBe("—");
  expect(formatDuration(2.5)).toBe("2.5 s");
  expect(formatDuration(60)).toBe("1 min");
  expect(formatDuration(3 * 3600 + 300)).toBe("3 h 5 min");
  expect(formatDuration(-90061)).toBe("−1 d 1 h");
});
