// The slide viewer in headless Chromium (Debian's, driven by playwright-core).
//
//   node console/web/e2e/slide.mjs --url http://127.0.0.1:PORT --job DONE_ID [--running RUNNING_ID] \
//        [--upload slide.svs] [--name console-slide] --out docs/screenshots --shots /tmp/shots \
//        --tile-index N --tile X,Y,W,H
//
// 1. The job list: the finished slide's counts and report status (and, with --running, the running
//    slide's progress).
// 2. With --upload: uploads it through the page (resumable, in chunks) and records the progress shown.
// 3. Opens the finished slide: waits for the viewer's tiles, records its report as shown, zooms in
//    and out (recording which Deep Zoom levels were fetched), lays the heatmap over the slide at full
//    opacity and screenshots the viewer with it on and off, then with the tile outlines alone (for
//    the alignment checks), then clicks the gallery's top tile --tile-index (level-0 square --tile)
//    and records the viewport before and after, and hovers that tile's centre (the tooltip names it
//    with its p_yes).
// Saves NAME-list.png, NAME-viewer.png and NAME-zoom.png under --out (NAME: --name, default
// console-slide); the viewer-only screenshots (heatmap-on, heatmap-off, outlines-on) go under
// --shots. Prints one JSON line with what it saw; exits non-zero on failure.

import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { inBrowser } from "./browser.mjs";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    job: { type: "string" },
    running: { type: "string" },
    upload: { type: "string" },
    out: { type: "string", default: "docs/screenshots" },
    shots: { type: "string" },
    "tile-index": { type: "string" },
    tile: { type: "string" },
    name: { type: "string", default: "console-slide" },
    chromium: { type: "string", default: process.env.CHROMIUM_PATH || "/usr/bin/chromium" },
  },
});
for (const need of ["url", "job", "shots", "tile-index", "tile"]) {
  if (!values[need]) {
    console.error(`missing --${need}`);
    process.exit(2);
  }
}
mkdirSync(values.out, { recursive: true });
mkdirSync(values.shots, { recursive: true });
const folder = `e2e-${Date.now().toString(36)}`;

const result = { folder };
const levels = new Set();
await inBrowser(values.chromium, result, async (page) => {
  page.on("request", (request) => {
    const match = /\/slide_files\/(\d+)\/\d+_\d+\.jpeg$/.exec(request.url());
    if (match) levels.add(Number(match[1]));
  });
  page.setDefaultTimeout(60_000);

  // 1. The list.
  await page.goto(values.url, { waitUntil: "networkidle" });
  const done = page.locator(`[data-testid="job-row"][data-job-id="${values.job}"]`);
  await done.getByTestId("slide-summary").waitFor();
  result.list = {
    done_summary: (await done.getByTestId("slide-summary").textContent())?.trim(),
    done_answer: (await done.getByTestId("answer").textContent())?.trim(),
    image_rows: await page.locator('[data-testid="job-row"][data-kind="image"]').count(),
  };
  if (values.running) {
    const running = page.locator(`[data-testid="job-row"][data-job-id="${values.running}"]`);
    await running.getByTestId("slide-progress").waitFor();
    Object.assign(result.list, {
      running_kind: await running.getAttribute("data-kind"),
      running_progress: [
        Number(await running.getByTestId("slide-progress").getAttribute("data-scored")),
        Number(await running.getByTestId("slide-progress").getAttribute("data-total")),
      ],
      running_text: (await running.getByTestId("slide-progress").textContent())?.trim(),
    });
  }

  // 2. Upload a slide: resumable, chunk by chunk, with progress.
  if (values.upload) {
    await page.getByPlaceholder("e.g. case-2031").fill(folder);
    await page.getByTestId("file-input").setInputFiles(resolve(values.upload));
    const item = page.getByTestId("upload-item").first();
    const progress = new Set();
    for (let i = 0; i < 2400; i++) {
      const status = (await item.getByTestId("upload-status").textContent()) ?? "";
      progress.add(await item.getAttribute("data-progress"));
      if (status.startsWith("Uploaded") || /fail|refused|error/i.test(status)) break;
      await page.waitForTimeout(25);
    }
    result.upload = {
      status: (await item.getByTestId("upload-status").textContent())?.trim(),
      object_name: await item.locator("span[title]").first().getAttribute("title"),
      progress: [...progress].map(Number).sort((a, b) => a - b),
      resumable: (await item.textContent())?.includes("resumable"),
    };
  }
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(values.out, `${values.name}-list.png`), fullPage: true });

  // 3. The viewer.
  await done.click();
  const viewer = page.getByTestId("slide-viewer");
  const frame = page.getByTestId("viewer-frame");
  await page.locator('[data-testid="slide-viewer"][data-loaded="true"]').waitFor();
  await page.locator('[data-testid="slide-viewer"][data-overlay="ready"]').waitFor();
  await page.getByTestId("top-tile").first().locator("img").evaluate((img) =>
    img.complete ? null : new Promise((ok) => img.addEventListener("load", ok, { once: true })),
  );
  const bounds = async () => (await viewer.getAttribute("data-bounds")).split(",").map(Number);
  const settle = async () => {
    // The viewport is still when two readings 300 ms apart agree and every tile is in.
    let last = "";
    for (let i = 0; i < 100; i++) {
      await page.waitForTimeout(300);
      const now = await viewer.getAttribute("data-bounds");
      if (now === last && (await viewer.getAttribute("data-loaded")) === "true") return;
      last = now;
    }
  };
  await settle();
  result.home_levels = [...levels].sort((a, b) => a - b);
  const report = page.getByTestId("report");
  result.report = { status: await report.getAttribute("data-status"), text: (await report.textContent())?.trim() };
  await page.screenshot({ path: join(values.out, `${values.name}-viewer.png`), fullPage: true });

  // Zoom in three steps and back out: more levels of the pyramid are fetched.
  for (let i = 0; i < 3; i++) {
    await page.getByRole("button", { name: "Zoom in" }).click();
    await settle();
  }
  result.zoomed_bounds = await bounds();
  await page.getByTestId("viewer-home").click();
  await settle();
  result.home_bounds = await bounds();

  const box = await frame.boundingBox();
  result.frame = [box.x, box.y, box.width, box.height];
  result.top_tiles = await page.getByTestId("top-tile").evaluateAll((buttons) =>
    buttons.map((b) => ({ index: Number(b.dataset.index), p: b.textContent })),
  );

  // The heatmap at full opacity, outlines off: on and off, same view, for the alignment check.
  await page.getByTestId("toggle-outlines").uncheck();
  await page.getByTestId("heatmap-opacity").fill("100");
  await settle();
  await page.mouse.move(0, 0);
  await frame.screenshot({ path: join(values.shots, "heatmap-on.png") });
  await page.getByTestId("toggle-heatmap").uncheck();
  await settle();
  await frame.screenshot({ path: join(values.shots, "heatmap-off.png") });
  result.shot_bounds = await bounds();
  // The outlines alone over the slide, same view: their strokes are the difference with heatmap-off.
  await page.getByTestId("toggle-outlines").check();
  await settle();
  await frame.screenshot({ path: join(values.shots, "outlines-on.png") });
  result.outline_bounds = await bounds();
  await page.getByTestId("toggle-heatmap").check();
  await page.getByTestId("heatmap-opacity").fill("45");
  await page.getByTestId("toggle-outlines").check();

  // Click a top tile in the gallery: the viewer moves to it.
  const target = page.locator(`[data-testid="top-tile"][data-index="${values["tile-index"]}"]`);
  result.before_click = await bounds();
  await target.click();
  await settle();
  result.after_click = await bounds();
  // Hover the tile's centre, now that it fills the view: the tooltip names it with its p_yes.
  const [ax, ay, aw, ah] = result.after_click;
  const [tx, ty, tw, th] = values.tile.split(",").map(Number);
  // The click scrolled the gallery into view: bring the viewer's toolbar back to the top.
  await frame.evaluate((el) => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 90));
  const now = await frame.boundingBox();
  await page.mouse.move(now.x + ((tx + tw / 2 - ax) / aw) * now.width, now.y + ((ty + th / 2 - ay) / ah) * now.height, {
    steps: 4,
  });
  await page.getByTestId("tile-tooltip").waitFor();
  result.tooltip = (await page.getByTestId("tile-tooltip").textContent())?.trim();
  result.levels = [...levels].sort((a, b) => a - b);
  await page.screenshot({ path: join(values.out, `${values.name}-zoom.png`), fullPage: false });

  // The job's own address (what `make demo` prints): opened directly, it shows the slide's viewer.
  await page.goto(`${values.url}/jobs/${values.job}`, { waitUntil: "networkidle" });
  await page.locator('[data-testid="slide-viewer"][data-loaded="true"]').waitFor();
  result.direct_link = page.url().endsWith(`/jobs/${values.job}`);
});
