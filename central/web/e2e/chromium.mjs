// Debian's Chromium driven by playwright-core (never a downloaded browser).
//
// The flags keep Chromium off the network it would otherwise try to reach at start (closed here,
// so its connection attempts fail by the dozen). Playwright gives every launch a fresh, empty
// temporary profile itself (it refuses --user-data-dir in args), and deletes it on close.
import { chromium } from "playwright-core";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 60_000,
  });
}

/** A fresh browser context with the viewer token already in sessionStorage (skips the login). */
export async function loggedInContext(browser, token, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  await context.addInitScript((t) => sessionStorage.setItem("meter-central-viewer-token", t), token);
  return context;
}
