// First-load time of the dashboard on loopback, in headless Chromium (run by
// `central/web/run-tests.sh --bench` after the e2e tests seeded the database).
//
// Each load is a new browser context (empty HTTP cache, like a first visit) with the viewer token
// already in sessionStorage. Per load: Navigation Timing (response end, DOMContentLoaded, load)
// and "data shown": when the page's data table (Fleet) or chart bars (Device) entered the DOM,
// recorded by a MutationObserver in the page (no polling from outside). Prints a Markdown table
// of medians (and min–max) over LOADS loads, plus bytes transferred.
import { launchChromium, loggedInContext } from "./chromium.mjs";

const base = process.env.CENTRAL_URL;
const token = process.env.VIEWER_TOKEN;
const LOADS = Number(process.env.BENCH_LOADS ?? 9);

const pages = [
  { name: "Fleet (`/`)", path: "/", selector: '[data-testid="meters"] tbody tr' },
  { name: "Device, 7 days per day (`/device?...`)", path: "/device?device_id=m-north-1&metric_type=energy&bucket=day&days=7", selector: '[data-testid="consumption-bar"]' },
];

function watchFor(selector) {
  // runs in the page before any of its scripts
  const record = () => {
    if (!window.__shownAt && document.querySelector(selector)) {
      window.__shownAt = performance.now();
      return true;
    }
    return false;
  };
  new MutationObserver((_, observer) => record() && observer.disconnect()).observe(document, { childList: true, subtree: true });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (xs) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

const browser = await launchChromium();
const rows = [];
for (const target of pages) {
  const samples = { responseEnd: [], dcl: [], load: [], shown: [], bytes: [] };
  for (let i = 0; i < LOADS + 1; i++) {
    const context = await loggedInContext(browser, token, { timezoneId: "Europe/Berlin" });
    await context.addInitScript(watchFor, target.selector);
    const page = await context.newPage();
    await page.goto(base + target.path, { waitUntil: "load" });
    await page.waitForFunction(() => window.__shownAt !== undefined, null, { timeout: 20_000 });
    const m = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      const resources = performance.getEntriesByType("resource");
      return {
        responseEnd: nav.responseEnd, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, shown: window.__shownAt,
        bytes: nav.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
      };
    });
    await context.close();
    if (i === 0) continue; // the first load also warms the server's file and database caches
    for (const key of Object.keys(samples)) samples[key].push(m[key]);
  }
  rows.push(`| ${target.name} | ${fmt(samples.responseEnd)} | ${fmt(samples.dcl)} | ${fmt(samples.load)} | ${fmt(samples.shown)} | ${(median(samples.bytes) / 1024).toFixed(1)} |`);
}
await browser.close();
console.log(`\nFirst load on loopback, new browser context each time (empty cache), median (min–max) of ${LOADS} loads, ms:\n`);
console.log("| page | response end | DOMContentLoaded | load | data shown | KiB transferred |");
console.log("|---|---|---|---|---|---|");
for (const row of rows) console.log(row);
