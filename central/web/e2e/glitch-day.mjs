// The device page's day view of tests/e2e/glitch_day.py's meter, in headless Debian Chromium:
// waits for the glitch marker on yesterday's (UTC) bucket and saves a screenshot.
// Run by tests/e2e/glitch_day_test.sh --screenshot (CENTRAL_URL, VIEWER_TOKEN, SCREENSHOT set).
import assert from "node:assert/strict";
import { launchChromium, loggedInContext } from "./chromium.mjs";

const WAIT = { timeout: 30_000 };
const today = new Date();
today.setUTCHours(0, 0, 0, 0);
const day = new Date(today.getTime() - 86_400_000);
const browser = await launchChromium();
try {
  const context = await loggedInContext(browser, process.env.VIEWER_TOKEN, { timezoneId: "UTC" });
  const page = await context.newPage();
  await page.goto(`${process.env.CENTRAL_URL}/device?device_id=meter-glitch-e2e&metric_type=energy&bucket=day&days=3`);
  await page.locator('[data-testid="glitch-marker"]').first().waitFor(WAIT);
  const markers = await page.locator('[data-testid="glitch-marker"]').evaluateAll((ms) => ms.map((m) => m.dataset.start));
  assert.deepEqual(markers.map((s) => Date.parse(s)), [day.getTime()]);
  await page.locator('[data-testid="consumption-bar"]').first().scrollIntoViewIfNeeded();
  await page.mouse.move(0, 0); // no tooltip in the picture
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: false });
  console.log(`glitch-day: marker on ${day.toISOString()}; screenshot ${process.env.SCREENSHOT}`);
} finally {
  await browser.close();
}
