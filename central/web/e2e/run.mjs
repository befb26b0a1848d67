// End-to-end tests: headless Chromium against the real central service (uvicorn) and PostgreSQL,
// seeded through the ingest API. Started by central/web/run-tests.sh, which provides:
//   CENTRAL_URL, GW_NORTH_TOKEN, GW_SOUTH_TOKEN, VIEWER_TOKEN; SCREENSHOT_DIR (optional).
// Every wait is for a condition with a deadline (Playwright's auto-waiting), never a sleep.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium, loggedInContext } from "./chromium.mjs";
import { decimalText, expectedPerDay, seed, seedLab } from "./seed.mjs";

const base = process.env.CENTRAL_URL;
const viewer = process.env.VIEWER_TOKEN;
const screenshots = process.env.SCREENSHOT_DIR ?? new URL("./out", import.meta.url).pathname;
const ZONE = "Europe/Berlin"; // the browser's zone in these tests; the API is asked in this zone
const WAIT = { timeout: 20_000 };
mkdirSync(screenshots, { recursive: true });

async function api(path) {
  const response = await fetch(base + path, { headers: { Authorization: `Bearer ${viewer}` } });
  const text = await response.text();
  assert.equal(response.status, 200, `${path}: ${text.slice(0, 200)}`);
  // value/delta/consumption as exact text, the way the dashboard reads them
  return JSON.parse(text.replace(/"(value|delta|consumption|suspicious_jump_delta|trusted|flagged_energy|estimated)":(-?[0-9.]+)(?=[,}\]])/g, '"$1":"$2"'));
}

const seeded = await seed(base, { north: process.env.GW_NORTH_TOKEN, south: process.env.GW_SOUTH_TOKEN });
const browser = await launchChromium();
const context = await loggedInContext(browser, viewer, { timezoneId: ZONE });
const failures = [];
const tests = [];
const test = (name, body) => tests.push({ name, body });

test("login: a pasted viewer token opens the Fleet page; it is kept in sessionStorage only", async () => {
  const fresh = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: ZONE });
  const page = await fresh.newPage();
  await page.goto(base + "/");
  await page.getByText("/usr/bin/python3 -m central viewer create ops").waitFor(WAIT);
  await page.screenshot({ path: join(screenshots, "login.png") });
  await page.getByLabel("Viewer token").fill("mvw_not-a-real-token");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByText("does not know this token").waitFor(WAIT);
  await page.getByLabel("Viewer token").fill(viewer);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator('[data-testid="gateways"]').waitFor(WAIT);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("meter-central-viewer-token")), viewer);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  await fresh.close();
});

test("Fleet lists the seeded gateways with the right backlog lag, skew and rejections", async () => {
  const page = await context.newPage();
  await page.goto(base + "/");
  const north = page.locator('tr[data-gateway="gw-north"]');
  const south = page.locator('tr[data-gateway="gw-south"]');
  await north.waitFor(WAIT);
  const gateways = Object.fromEntries((await api("/api/v1/gateways")).items.map((g) => [g.gateway_id, g]));
  assert.equal(gateways["gw-north"].backlog_lag_seconds, 600);
  assert.equal(await north.locator('[data-testid="backlog-lag"]').getAttribute("data-seconds"), "600");
  assert.equal(await north.locator('[data-testid="backlog-lag"]').textContent(), "10 min");
  assert.equal(await north.locator('[data-testid="backlog-records"]').textContent(), "120");
  assert.equal(await south.locator('[data-testid="backlog-lag"]').textContent(), "none");
  assert.match(await south.locator('[data-testid="rejected"]').textContent(), /^1 \(last: wrong_unit/);
  const skew = gateways["gw-south"].clock_skew_seconds;
  assert.ok(skew < -41 && skew > -60, `gw-south skew ${skew}`);
  assert.match(await south.locator('[data-testid="clock-skew"]').textContent(), /^−4\d s$/);
  // the meter silent for 3 hours (usual interval 15 min) is listed first and marked
  assert.equal(await page.locator("tr[data-device]").first().getAttribute("data-device"), "m-north-2");
  await page.locator('tr[data-device="m-north-2"]').getByText("gone silent").waitFor(WAIT);
  assert.equal(await page.locator('tr[data-device="m-north-1"] .badge').count(), 0);
  await page.screenshot({ path: join(screenshots, "fleet.png"), fullPage: true });
  await page.close();
});

test("Device: chart and table show the seeded consumption per day, equal to the API's; the reset is marked", async () => {
  const page = await context.newPage();
  const consumptionCall = page.waitForRequest((r) => r.url().includes("/api/v1/consumption"), WAIT);
  await page.goto(base + "/device?device_id=m-north-1&metric_type=energy&bucket=day&days=7");
  const requestUrl = new URL((await consumptionCall).url());
  assert.equal(requestUrl.searchParams.get("tz"), ZONE);
  await page.locator('[data-testid="buckets"]').waitFor(WAIT);
  const fromApi = await api(requestUrl.pathname + requestUrl.search);
  assert.equal(fromApi.buckets.length, 7);

  // by hand, from what was uploaded: per Berlin day, the sum of the deltas
  const expected = expectedPerDay(seeded.north1, ZONE);
  const berlinDay = new Intl.DateTimeFormat("en-CA", { timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit" });
  for (const b of fromApi.buckets) {
    const e = expected.get(berlinDay.format(new Date(b.start)));
    assert.equal(b.consumption, e && e.hasDelta ? decimalText(e.sum) : null, `API bucket ${b.start}`);
    assert.equal(b.readings, e ? e.readings : 0);
    assert.equal(b.counter_resets, e ? e.resets : 0);
  }
  assert.ok(fromApi.buckets.filter((b) => b.readings > 0).length >= 3);

  const rows = await page.locator('[data-testid="buckets"] tbody tr').evaluateAll((trs) =>
    trs.map((tr) => ({ start: tr.dataset.start, consumption: tr.querySelector('[data-testid="bucket-consumption"]').textContent })));
  assert.deepEqual(rows, fromApi.buckets.map((b) => ({ start: b.start, consumption: b.consumption ?? "—" })));
  const bars = await page.locator('[data-testid="consumption-bar"]').evaluateAll((gs) =>
    gs.map((g) => ({ start: g.dataset.start, consumption: g.dataset.consumption })));
  assert.deepEqual(bars, fromApi.buckets.map((b) => ({ start: b.start, consumption: b.consumption ?? "" })));
  // the value labels drawn on the chart are the API's numbers too
  const labels = await page.locator(".recharts-label-list text").allTextContents();
  assert.deepEqual(labels.filter((t) => t !== ""), fromApi.buckets.filter((b) => b.consumption !== null).map((b) => b.consumption));

  const resetBuckets = fromApi.buckets.filter((b) => b.counter_resets > 0).map((b) => b.start);
  assert.equal(resetBuckets.length, 1);
  const markers = await page.locator('[data-testid="reset-marker"]').evaluateAll((ms) => ms.map((m) => m.dataset.start));
  assert.deepEqual(markers, resetBuckets);
  assert.equal(await page.locator(`[data-testid="buckets"] tr[data-start="${resetBuckets[0]}"] [data-testid="bucket-resets"]`).textContent(), "1 reset");
  const resetReading = seeded.readings.find((r) => r.device === "m-north-1" && r.flags.includes("counter_reset"));
  const row = page.locator(`[data-testid="readings"] tr[data-event-id="${resetReading.event_id}"]`);
  await row.locator('[data-flag="counter_reset"]').waitFor(WAIT);
  assert.equal(await row.locator('[data-testid="reading-delta"]').textContent(), "—");
  assert.equal(await row.locator('[data-testid="reading-value"]').textContent(), `${resetReading.valueText} kWh`);
  assert.equal(await page.locator('[data-testid="readings"] tbody tr').count(), seeded.north1.length);
  await page.locator('[data-testid="consumption-bar"]').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(screenshots, "device.png"), fullPage: false });

  // the reset reading's raw payload opens
  await row.locator('[data-testid="raw-link"]').click();
  await page.locator('[data-testid="raw-payload"]').waitFor(WAIT);
  assert.equal(new URL(page.url()).pathname, "/raw");
  assert.equal(await page.locator('[data-testid="raw-payload"]').textContent(), resetReading.payload);
  assert.equal(await page.locator('[data-testid="raw-topic"]').textContent(), "site/m-north-1/energy");
  await page.screenshot({ path: join(screenshots, "raw.png") });
  await page.goBack();
  await page.locator('[data-testid="buckets"]').waitFor(WAIT);
  await page.close();
});

test("Quality: flag counts equal the API's; the flagged list filters by flag", async () => {
  const page = await context.newPage();
  const call = page.waitForRequest((r) => r.url().includes("/api/v1/flag_counts"), WAIT);
  await page.goto(base + "/quality?days=7");
  const url = new URL((await call).url());
  await page.locator('[data-testid="flag-summary"]').waitFor(WAIT);
  const counts = await api(url.pathname + url.search);
  assert.deepEqual(counts.total.flags, { counter_reset: 1, first_reading: 3, suspicious_jump: 1 });
  const summary = await page.locator('[data-testid="flag-summary"]').textContent();
  assert.equal(summary, `${counts.total.flagged} of ${counts.total.readings} readings flagged: counter_reset 1, first_reading 3, suspicious_jump 1`);
  await page.locator(".recharts-bar-rectangle").first().waitFor(WAIT);
  assert.equal(await page.locator('[data-testid="readings"] tbody tr').count(), 5);
  await page.screenshot({ path: join(screenshots, "quality.png"), fullPage: true });
  await page.locator('[data-testid="flag-filter"]').selectOption("suspicious_jump");
  await page.waitForURL(/flag=suspicious_jump/, WAIT);
  // the list reloads for the new filter: wait until it holds only suspicious jumps
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="readings"] tbody tr')];
    return rows.length > 0 && rows.every((r) => r.querySelector('[data-flag="suspicious_jump"]'));
  }, null, WAIT);
  const only = page.locator('[data-testid="readings"] tbody tr');
  assert.equal(await only.count(), 1);
  assert.equal(await only.locator("[data-flag]").count(), 1);
  await page.close();
});

test("an unknown raw event and a revoked-looking token say what to do", async () => {
  const page = await context.newPage();
  await page.goto(base + "/raw?gateway_id=gw-north&buffer_id=00000000-0000-0000-0000-000000000000&seq=1");
  await page.getByRole("alert").getByText("may not have sent it yet").waitFor(WAIT);
  await page.close();
  const stale = await loggedInContext(browser, "mvw_revoked", { timezoneId: ZONE });
  const stalePage = await stale.newPage();
  await stalePage.goto(base + "/device?device_id=m-north-1");
  await stalePage.getByRole("alert").first().getByText("Log out and paste a valid viewer token").waitFor(WAIT);
  await stale.close();
});

// Last, so that its gateway and flags do not change what the tests above count fleet-wide.
test("Device (protocol 2): glitch marker, hatched estimated hours, replacement line, trusted total first, why a reading is flagged", async () => {
  const lab = await seedLab(base, process.env.GW_LAB_TOKEN);
  const page = await context.newPage();
  const consumptionCall = page.waitForRequest((r) => r.url().includes("/api/v1/consumption"), WAIT);
  await page.goto(base + "/device?device_id=m-lab-1&metric_type=energy&bucket=hour&days=3");
  const requestUrl = new URL((await consumptionCall).url());
  await page.locator('[data-testid="buckets"]').waitFor(WAIT);
  const fromApi = await api(requestUrl.pathname + requestUrl.search);

  // the trusted total comes first and is the by-hand sum (glitch and gap excluded)
  assert.equal(fromApi.total.trusted, decimalText(lab.trusted));
  assert.equal(fromApi.total.estimated, "10");
  const firstTotal = page.locator("section p[data-testid]").first();
  assert.equal(await firstTotal.getAttribute("data-testid"), "trusted-total");
  assert.match(await firstTotal.textContent(), new RegExp(`^Trusted ${decimalText(lab.trusted).replace(".", "\\.")} kWh`));

  // the glitch: a marker in its hour, no bar of its own
  const hourOf = (ms) => fromApi.buckets.find((b) => Date.parse(b.start) <= ms && ms < Date.parse(b.end)).start;
  const glitchMarkers = await page.locator('[data-testid="glitch-marker"]').evaluateAll((ms) => ms.map((m) => m.dataset.start));
  assert.deepEqual(glitchMarkers, [hourOf(lab.glitch.t)]);
  // the gap: 1 kWh estimated in each of the ten silent hours, drawn hatched
  const estimated = fromApi.buckets.filter((b) => b.estimated !== null);
  assert.deepEqual(estimated.map((b) => b.start), Array.from({ length: 10 }, (_, k) => hourOf(lab.silence[0] + k * 3600_000)));
  assert.ok(estimated.every((b) => b.estimated === "1"));
  const hatched = await page.locator('[data-testid="consumption-bar"]').evaluateAll((gs) =>
    gs.filter((g) => g.querySelector('[data-testid="segment-estimated"] rect[fill="url(#hatch-estimated)"]')).map((g) => g.dataset.start));
  assert.deepEqual(hatched, estimated.map((b) => b.start));
  // the replacement: a vertical line at the operator's time
  const epochs = await api("/api/v1/epochs?device_id=m-lab-1");
  assert.deepEqual(epochs.items.map((e) => [e.at, e.withdrawn]), [[lab.at, false]]);
  await page.locator('[data-testid="replacement-line"]').waitFor({ ...WAIT, state: "attached" }); // a line has no area: never "visible"
  assert.deepEqual(await page.locator('[data-testid="replacement-line"]').evaluateAll((ls) => ls.map((l) => l.dataset.at)), [lab.at]);

  // why: the glitch's neighbours and the rule that decided
  const row = page.locator(`[data-testid="readings"] tr[data-event-id="${lab.glitch.event_id}"]`);
  await row.locator('[data-testid="why-button"]').click();
  const panel = page.locator('[data-testid="why-panel"]');
  await panel.locator('[data-testid="why-neighbours"]').waitFor(WAIT);
  await panel.locator('[data-testid="why-rule"][data-flag="glitch"]').getByText("glitch_window").waitFor(WAIT);
  const around = lab.readings.filter((r) => Math.abs(r.t - lab.glitch.t) <= 4 * 3600_000).map((r) => `${r.valueText} kWh`);
  assert.deepEqual(await panel.locator('[data-testid="why-value"]').allTextContents(), around);
  await panel.scrollIntoViewIfNeeded();
  await page.mouse.move(0, 0); // no tooltip in the pictures
  await page.screenshot({ path: join(screenshots, "device-quality-why.png"), fullPage: false });
  await page.locator('[data-testid="consumption-bar"]').first().scrollIntoViewIfNeeded();
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(screenshots, "device-quality.png"), fullPage: false });
  await page.close();
});

for (const { name, body } of tests) {
  const started = performance.now();
  try {
    await body();
    console.log(`ok   ${name} (${Math.round(performance.now() - started)} ms)`);
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}\n${error.stack ?? error}`);
  }
}
await browser.close();
console.log(`e2e: ${tests.length - failures.length} passed, ${failures.length} failed; screenshots in ${screenshots}`);
process.exit(failures.length ? 1 : 0);
