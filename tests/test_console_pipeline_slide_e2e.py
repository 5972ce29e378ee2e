"""The slide viewer in a real browser on a slide that went through the real pipeline.

A generated slide is dropped into the local stack's inbox (`stack_cfg`: ingest → the slide
service's tiling → shards scored by the inference service on the tiny checkpoint → finalize →
the report), then opened in the stack's own console by console/web/e2e/slide.mjs (headless Debian
Chromium). What this proves, next to tests/test_console_slide_e2e.py:

- here, the console shows what the pipeline wrote: Deep Zoom tiles at several levels of the real
  slide, the heatmap and tile outlines that finalize wrote lined up with the tile grid and the
  tissue (the tiny model's scores are random, so the check is geometric: the overlay paints
  exactly the scored tiles, the outlines run along their edges, and they sit on tissue), a
  top-tile click moving the viewport, and the MedGemma-path report written by the inference
  service;
- there, with scores made from the generated slide's known tumor region (tests/slide_jobs.py),
  that what is hot in the overlay is the tumor, and the list's progress and resumable upload.

Saves docs/screenshots/console-slide-pipeline-{list,viewer,zoom}.png for docs/CONSOLE.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.cloud import firestore, storage  # type: ignore[attr-defined]
from PIL import Image

from healer.stack.config import StackConfig
from healer_core.schema import Job, TileRef
from healer_core.slide_store import SlideStore
from healer_core.store import JobStore
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.browser import SCREENSHOTS, ensure_chromium, ensure_frontend, run_e2e
from tests.stack_jobs import reported, terminal

pytestmark = pytest.mark.slow
NAME = "console-slide-pipeline"
Box = tuple[int, int, int, int]


@pytest.fixture(scope="module")
def pipeline_slide(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> SynthSlide:
    """A 10X scan (1 µm/px) of 6144 x 4608 px: 896-px tiles are 896 level-0 pixels, ~20 of them tissue."""
    folder = tmp_path_factory.mktemp("pipeline-slide")
    return synth.write_slide(folder / "slide-31.svs", sample_paths, width=6144, height=4608, mpp=1.0, seed=5)


@pytest.fixture(scope="module")
def through_the_stack(stack_cfg: StackConfig, pipeline_slide: SynthSlide) -> tuple[Job, list[TileRef], list[float]]:
    """The slide uploaded to the stack's inbox, its verdict, then its report: the job and its scored tiles."""
    blob = storage.Client(project=stack_cfg.project).bucket(stack_cfg.bucket).blob("lab-a/case 31/slide-31.svs")
    blob.upload_from_filename(str(pipeline_slide.path))
    db = firestore.Client(project=stack_cfg.project)
    doc = terminal(db, stack_cfg, blob)
    assert (doc["kind"], doc["state"]) == ("slide", "done"), doc.get("error")
    assert reported(db, stack_cfg, doc["job_id"])["status"] == "done"
    store = SlideStore.of(JobStore(db, stack_cfg.jobs_collection))
    job = store.get(doc["job_id"])
    assert job is not None
    tiles: list[TileRef] = []
    scores: list[float] = []
    for shard in store.shards(job.job_id):
        tiles += shard.tiles
        scores += shard.scores or []
    assert len(tiles) == len(scores) == job.verdict.slide.tiles_scored
    return job, tiles, scores


def _box(rect: tuple[float, float, float, float], bounds: list[float], size: tuple[int, int]) -> Box:
    """A level-0 rectangle (x, y, w, h) in screenshot pixels, given the visible level-0 bounds."""
    bx, by, bw, bh = bounds
    x, y, w, h = rect
    sx, sy = size[0] / bw, size[1] / bh
    return round((x - bx) * sx), round((y - by) * sy), round((x + w - bx) * sx), round((y + h - by) * sy)


def _shrink(box: Box, by: int) -> Box:
    return box[0] + by, box[1] + by, box[2] - by, box[3] - by


def _clip(box: Box, to: Box) -> Box:
    """`box` within `to` (edge tiles run past the slide: the part outside is no slide at all)."""
    return max(box[0], to[0]), max(box[1], to[1]), min(box[2], to[2]), min(box[3], to[3])


def _band(image: np.ndarray, ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
    """image[ys, xs] with the ranges clamped to the image (no wrap-around at negative starts)."""
    return image[max(ys[0], 0) : max(ys[1], 0), max(xs[0], 0) : max(xs[1], 0)]


def _shot(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.int16)


def test_a_pipeline_slide_in_the_viewer(
    stack_cfg: StackConfig,
    pipeline_slide: SynthSlide,
    through_the_stack: tuple[Job, list[TileRef], list[float]],
    tmp_path: Path,
) -> None:
    chromium = ensure_chromium()
    ensure_frontend()
    job, tiles, scores = through_the_stack
    assert job.verdict is not None and job.verdict.slide is not None
    found, report = job.verdict.slide, job.verdict.slide.report
    target = found.top_tiles[1]
    shots = tmp_path / "shots"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    seen = run_e2e(
        "slide.mjs",
        *("--url", f"http://{stack_cfg.host}:{stack_cfg.console_port}", "--job", job.job_id),
        *("--name", NAME, "--out", str(SCREENSHOTS), "--shots", str(shots)),
        *("--tile-index", str(target.index), "--tile", f"{target.x},{target.y},{target.w},{target.h}"),
        *("--chromium", str(chromium)),
    )

    # The list row and the report, as the pipeline wrote them.
    assert f"{found.tiles_positive} of {found.tiles_scored} tiles positive" in seen["list"]["done_summary"]
    assert "report ready" in seen["list"]["done_summary"]
    assert seen["report"]["status"] == "done"
    shown = " ".join(seen["report"]["text"].split())
    assert " ".join(report.text.split()) in shown and report.model_id in shown and "crc-report-v1" in shown
    assert f"{report.patches} patches" in shown and report.patches == len(tiles)

    # Deep Zoom tiles at several levels, down to full resolution (level 13 of a 6144 px slide).
    assert len(seen["home_levels"]) >= 3
    assert set(seen["levels"]) > set(seen["home_levels"]) and max(seen["levels"]) == 13
    assert seen["zoomed_bounds"][2] < seen["home_bounds"][2] / 3

    # The overlay lines up with the tile grid: at full opacity it changes the picture inside every
    # scored tile and nowhere else on the slide (the scores are random; where they are is not).
    on, off, outlined = (_shot(shots / f"{name}.png") for name in ("heatmap-on", "heatmap-off", "outlines-on"))
    assert seen["outline_bounds"] == seen["shot_bounds"]
    size = (on.shape[1], on.shape[0])
    bounds = seen["shot_bounds"]
    painted = np.abs(on - off).max(axis=2) > 24
    slide_box = _box((0, 0, pipeline_slide.width, pipeline_slide.height), bounds, size)
    tile_px = _box((0, 0, tiles[0].w, tiles[0].h), [0, 0, *bounds[2:]], size)[2]
    margin = max(3, tile_px // 8)
    boxes = [_box((t.x, t.y, t.w, t.h), bounds, size) for t in tiles]
    scored = np.zeros(painted.shape, bool)
    for box in boxes:
        x0, y0, x1, y1 = _shrink(_clip(box, slide_box), margin)
        assert painted[y0:y1, x0:x1].mean() > 0.9, (box, painted[y0:y1, x0:x1].mean())
        x0, y0, x1, y1 = _shrink(box, -margin)
        scored[max(y0, 0) : y1, max(x0, 0) : x1] = True
    inside = np.zeros(painted.shape, bool)
    sx0, sy0, sx1, sy1 = _shrink(slide_box, margin)
    inside[sy0:sy1, sx0:sx1] = True
    elsewhere = inside & ~scored
    assert elsewhere.sum() > 0.1 * inside.sum()  # the slide has glass enough to tell
    assert painted[elsewhere].mean() < 0.02, painted[elsewhere].mean()

    # ... and with the tissue: every scored tile holds tissue, the rest of the slide hardly any.
    rgb = off.astype(np.float32) / 255
    saturation = (rgb.max(axis=2) - rgb.min(axis=2)) / np.maximum(rgb.max(axis=2), 1e-6)
    tissue = saturation > 0.15
    for box in boxes:
        x0, y0, x1, y1 = _clip(box, slide_box)
        assert tissue[y0:y1, x0:x1].mean() > 0.2, box
    assert tissue[elsewhere].mean() < 0.1

    # The outlines run along the scored tiles' edges: nearly every stroke pixel is on one, and
    # every edge of every scored tile has its stroke.
    stroke = np.abs(outlined - off).max(axis=2) > 30
    near_edge = np.zeros(stroke.shape, bool)
    for x0, y0, x1, y1 in boxes:
        for xa, ya, xb, yb in ((x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)):
            near_edge[max(ya - 3, 0) : yb + 4, max(xa - 3, 0) : xb + 4] = True
        for edge in (_band(stroke, (y0 - 3, y0 + 4), (x0, x1)), _band(stroke, (y1 - 3, y1 + 4), (x0, x1))):
            assert edge.any(axis=0).mean() > 0.8, (x0, y0, x1, y1)
        for edge in (_band(stroke, (y0, y1), (x0 - 3, x0 + 4)), _band(stroke, (y0, y1), (x1 - 3, x1 + 4))):
            assert edge.any(axis=1).mean() > 0.8, (x0, y0, x1, y1)
    assert stroke.sum() > 0 and stroke[~near_edge].sum() < 0.01 * stroke.sum()

    # A top-tile click moves the viewport onto that tile; its tooltip names it.
    bx, by, bw, bh = seen["after_click"]
    assert bx <= target.x and target.x + target.w <= bx + bw and by <= target.y and target.y + target.h <= by + bh
    # The tile and half a tile around it fill the frame's height (the frame is wider than tall).
    assert bh <= 2.1 * target.h and bw < seen["before_click"][2] / 2
    assert abs(bx + bw / 2 - (target.x + target.w / 2)) < target.w / 2
    assert seen["tooltip"] == f"tile {target.index} · p(yes) {target.p_yes:.3f}"
    assert seen["direct_link"] is True  # /jobs/<id>, as `make demo` prints it, opens the viewer
    assert scores[[t.index for t in tiles].index(target.index)] == pytest.approx(target.p_yes)

    for part in ("list", "viewer", "zoom"):
        with Image.open(SCREENSHOTS / f"{NAME}-{part}.png") as shot:
            assert shot.format == "PNG" and shot.width >= 1200
