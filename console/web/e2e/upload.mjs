// End-to-end check of the review console in headless Chromium (Debian's, driven by playwright-core).
//
//   node console/web/e2e/upload.mjs --url http://127.0.0.1:8090 --out docs/screenshots \
//        [--hostile bad.png] [--timeout 300] image1.tif image2.png
//
// Uploads the images through the page's file input (the drop zone's), waits until every one has a
// verdict in the live list, opens one, and saves console-list.png and console-detail.png under --out.
// A --hostile file must end up failed with its error explained in plain words.
// Prints one JSON line with what it saw; exits non-zero on any failure.

import { mkdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { inBrowser } from "./browser.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: "http://127.0.0.1:8090" },
    out: { type: "string", default: "docs/screenshots" },
    hostile: { type: "string" },
    timeout: { type: "string", default: "300" },
    chromium: { type: "string", default: process.env.CHROMIUM_PATH || "/usr/bin/chromium" },
  },
});
if (positionals.length < 1) {
  console.error("usage: upload.mjs --url URL --out DIR [--hostile FILE] IMAGE...");
  process.exit(2);
}
const timeoutMs = Number(values.timeout) * 1000;
const images = positionals.map((p) => resolve(p));
const hostile = values.hostile ? resolve(values.hostile) : null;
const folder = `e2e-${Date.now().toString(36)}`;
mkdirSync(values.out, { recursive: true });

const result = { folder, rows: [], detail: null };
await inBrowser(values.chromium, result, async (page) => {
  page.setDefaultTimeout(30_000);

  await page.goto(values.url, { waitUntil: "networkidle" });
  await page.getByTestId("screening-banner").waitFor();

  // Upload through the drop zone's file input, into a folder of this run's own.
  await page.getByPlaceholder("e.g. case-2031").fill(folder);
  const files = hostile ? [...images, hostile] : images;
  await page.getByTestId("file-input").setInputFiles(files);
  await page.waitForFunction(
    (n) => {
      const statuses = [...document.querySelectorAll('[data-testid="upload-status"]')].map((e) => e.textContent ?? "");
      return statuses.filter((s) => s.startsWith("Uploaded")).length >= n;
    },
    files.length,
    { timeout: 60_000 },
  );

  // Every image gets a verdict in the live list (the page polls; no reload).
  const rowFor = (file, state = "") =>
    page.locator(
      `[data-testid="job-row"][data-name*="/${folder}/"][data-name$="/${basename(file)}"]` +
        (state ? `[data-state="${state}"]` : ""),
    );
  for (const image of images) {
    await rowFor(image, "done").waitFor({ timeout: timeoutMs });
  }
  if (hostile) {
    const row = rowFor(hostile, "failed");
    await row.waitFor({ timeout: timeoutMs });
    result.hostile = (await row.getByTestId("error-description").textContent())?.trim();
  }
  for (const image of images) {
    const row = rowFor(image);
    result.rows.push({
      file: basename(image),
      state: await row.getAttribute("data-state"),
      answer: (await row.getByTestId("answer").textContent())?.trim(),
      job_id: await row.getAttribute("data-job-id"),
    });
  }
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(values.out, "console-list.png"), fullPage: true });

  // Open the first image: preview (server-rendered PNG), verdict and history.
  await rowFor(images[0]).click();
  await page.getByTestId("job-detail").waitFor();
  await page.getByTestId("explanation").waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid="preview"]');
    return img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
  });
  result.detail = {
    url: page.url(),
    preview: await page.getByTestId("preview").evaluate((img) => [img.naturalWidth, img.naturalHeight]),
    history: await page.getByTestId("history").locator("li").count(),
  };
  await page.screenshot({ path: join(values.out, "console-detail.png"), fullPage: true });
});
