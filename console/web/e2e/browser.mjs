// What every e2e script here shares: headless Chromium (Debian's, driven by playwright-core)
// launched the same way, one page whose browser-console errors fail the run, and one JSON line
// printed at the end with what the script saw (with `error` and exit status 1 on any failure).

import { chromium } from "playwright-core";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Run `check(page)` in a fresh 1440x1000 page of Chromium at `executablePath`, filling `result`;
 * print `result` as one JSON line and exit non-zero when `check` throws or the page logged errors.
 */
export async function inBrowser(executablePath, result, check) {
  const browser = await chromium.launch({ executablePath, args: ARGS });
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on("console", (msg) => msg.type() === "error" && consoleErrors.push(msg.text()));
    await check(page);
    result.console_errors = consoleErrors;
    if (consoleErrors.length) throw new Error(`browser console errors: ${consoleErrors.join(" | ")}`);
  } catch (error) {
    result.error = String(error && error.stack ? error.stack : error);
    console.log(JSON.stringify(result));
    await browser.close();
    process.exit(1);
  }
  await browser.close();
  console.log(JSON.stringify(result));
}
