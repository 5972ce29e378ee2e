"""The slide viewer in a real browser: Deep Zoom tiles at several levels, the heatmap lined up with
the tissue, a top-tile click moving the viewport, tile values on hover, slide rows in the list and a
resumable slide upload with progress.

Headless Debian Chromium, driven by playwright-core (console/web/e2e/slide.mjs), against a console
served in-process on the emulators, over slide jobs written by tests/slide_jobs.py: a generated slide
whose tumor region is known, its verdict's heatmap and GeoJSON made by the slide library: the check
that what is hot is the tumor. A slide through the real pipeline (tiny model, random scores) is
tests/test_console_pipeline_slide_e2e.py. Saves the screenshots used by docs/CONSOLE.md.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image

from console.backend.app import create_app
from console.backend.settings import ConsoleSettings
from console.backend.slide_settings import SlideViewerSettings
from healer_core.ids import job_id_for
from healer_core.schema import Job, Timings, Verdict
from healer_core.store import JobStore
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.browser import SCREENSHOTS, WEB, ensure_chromium, ensure_frontend, run_e2e
from tests.slide_jobs import SeededSlide, seed_done_slide, seed_running_slide

pytestmark = [pytest.mark.emulator, pytest.mark.slow]
CHUNK = 256 * 1024


def _serve(app: Any) -> Iterator[str]:
    """The app on an ephemeral port of this machine, in a thread, for as long as the generator lives."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the console did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _seed_image(store: JobStore, inbox: Any, sample: Path) -> str:
    """A finished single-image job, to show that image rows stay as they are."""
    name = f"lab-a/case 16/{sample.name}"
    blob = inbox.blob(name)
    blob.upload_from_filename(str(sample))
    blob.reload()
    job_id = job_id_for(inbox.name, name, int(blob.generation))
    store.create(Job(job_id=job_id, bucket=inbox.name, name=name, generation=int(blob.generation)))
    lease = store.lease(job_id, "fixture", 60)
    verdict = Verdict(
        answer="no",
        p_yes=0.07,
        explanation="Fixture verdict of a single tile.",
        model_id="fixture",
        prompt_version="fixture",
        timings_ms=Timings(download=3, decode=4, queue=1, inference=180, total=188),
    )
    assert store.finish(job_id, lease.token, verdict)
    return job_id


@pytest.fixture(scope="module")
def slides_dir(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> dict[str, SynthSlide]:
    root = tmp_path_factory.mktemp("e2e-slides")
    return {
        "case": synth.write_slide(root / "case-17.svs", sample_paths, width=8192, height=6144, pen=True),
        "upload": synth.write_slide(root / "biopsy-21.svs", sample_paths, width=4096, height=3072, seed=3),
    }


@pytest.fixture(scope="module")
def console(emulator_cfg: Any, slides_dir: dict[str, SynthSlide], sample_paths: list[Path]) -> Iterator[dict[str, Any]]:
    from google.cloud import firestore, storage  # type: ignore[attr-defined]

    unique = uuid.uuid4().hex[:8]
    client = storage.Client(project=emulator_cfg.project)
    inbox, results = client.create_bucket(f"inbox-{unique}"), client.create_bucket(f"results-{unique}")
    store = JobStore(firestore.Client(project=emulator_cfg.project), f"jobs-{unique}")
    _seed_image(store, inbox, next((p for p in sample_paths if "normal" in p.name), sample_paths[0]))
    running = seed_running_slide(store, inbox, slides_dir["case"], "lab-a/case 18/slide-18.svs", 37, 120, (1, 2))
    done = seed_done_slide(store, inbox, results, slides_dir["case"], "lab-a/case 17/slide-17.svs")
    ensure_frontend()
    settings = ConsoleSettings(
        PROJECT_ID=emulator_cfg.project,
        HEALER_BUCKET=inbox.name,
        JOBS_COLLECTION=store.collection.id,
        STORAGE_EMULATOR_HOST=emulator_cfg.storage_url,
        CONSOLE_STATIC_DIR=WEB / "dist",
    )
    slide_settings = SlideViewerSettings(RESULTS_BUCKET=results.name, CONSOLE_UPLOAD_CHUNK_BYTES=CHUNK)
    for url in _serve(create_app(settings, store=store, slide_settings=slide_settings)):
        yield {"url": url, "inbox": inbox, "done": done, "running": running}


def _box(rect: tuple[float, float, float, float], bounds: list[float], size: tuple[int, int]) -> tuple[int, ...]:
    """A level-0 rectangle (x, y, w, h) in screenshot pixels, given the visible level-0 bounds."""
    bx, by, bw, bh = bounds
    x, y, w, h = rect
    sx, sy = size[0] / bw, size[1] / bh
    return round((x - bx) * sx), round((y - by) * sy), round((x + w - bx) * sx), round((y + h - by) * sy)


def _fraction(mask: np.ndarray, box: tuple[int, ...]) -> float:
    x0, y0, x1, y1 = box
    return float(mask[y0:y1, x0:x1].mean())


def test_slide_viewer_in_the_browser(
    console: dict[str, Any], slides_dir: dict[str, SynthSlide], tmp_path: Path
) -> None:
    chromium = ensure_chromium()
    done: SeededSlide = console["done"]
    top = done.job.verdict.slide.top_tiles
    target = top[3]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = tmp_path / "shots"
    upload = slides_dir["upload"].path
    seen = run_e2e(
        "slide.mjs",
        *("--url", console["url"], "--job", done.job.job_id, "--running", console["running"].job_id),
        *("--upload", str(upload), "--out", str(SCREENSHOTS), "--shots", str(shots)),
        *("--tile-index", str(target.index), "--tile", f"{target.x},{target.y},{target.w},{target.h}"),
        *("--chromium", str(chromium)),
    )

    # The list: a running slide shows its progress, a finished one its counts and report status.
    listing = seen["list"]
    assert listing["running_kind"] == "slide" and listing["running_progress"] == [37, 120]
    assert "37 / 120 tiles" in listing["running_text"] and "scoring" in listing["running_text"]
    positive = done.job.verdict.slide.tiles_positive
    assert f"{positive} of {done.job.verdict.slide.tiles_scored} tiles positive" in listing["done_summary"]
    assert "report ready" in listing["done_summary"] and listing["done_answer"] == "Suspicious"
    assert listing["image_rows"] >= 1

    # The upload went resumable, in chunks, with progress in between, and arrived whole.
    up = seen["upload"]
    assert up["status"].startswith("Uploaded") and up["resumable"], up
    assert len([p for p in up["progress"] if 0 < p < 1]) >= 3, up["progress"]
    stored = console["inbox"].get_blob(up["object_name"])
    assert stored is not None and stored.download_as_bytes() == upload.read_bytes()

    # Tiles at several zoom levels: the home view, then deeper levels when zooming in, down to
    # full resolution (level 13 of an 8192 px slide) at the top tile.
    assert len(seen["home_levels"]) >= 3
    assert set(seen["levels"]) > set(seen["home_levels"]) and max(seen["levels"]) == 13
    assert seen["zoomed_bounds"][2] < seen["home_bounds"][2] / 3

    # The overlay lines up with the tissue: hot pixels over the known tumor, cold over normal tissue,
    # and neither when the heatmap is off (the colour is the overlay's, not the stain's).
    on = np.asarray(Image.open(shots / "heatmap-on.png").convert("RGB"), np.int16)
    off = np.asarray(Image.open(shots / "heatmap-off.png").convert("RGB"), np.int16)
    size = (on.shape[1], on.shape[0])
    hot_on = (on[..., 0] - on[..., 2]) > 60
    hot_off = (off[..., 0] - off[..., 2]) > 60
    cold_on = (on[..., 2] - on[..., 0]) > 20
    cold_off = (off[..., 2] - off[..., 0]) > 20
    tile = max(s.w for s in done.scores)
    x, y, w, h = done.tumor
    tumor_core = _box((x + tile, y + tile, w - 2 * tile, h - 2 * tile), seen["shot_bounds"], size)
    normal = slides_dir["case"].regions[0]
    normal_core = _box(
        (normal.x + tile, normal.y + tile, normal.w - 2 * tile, normal.h - 2 * tile), seen["shot_bounds"], size
    )
    assert _fraction(hot_on, tumor_core) > 0.9, _fraction(hot_on, tumor_core)
    assert _fraction(hot_off, tumor_core) < 0.1, _fraction(hot_off, tumor_core)
    assert _fraction(hot_on, normal_core) < 0.02 and _fraction(cold_on, normal_core) > 0.8
    assert _fraction(cold_off, normal_core) < 0.1
    rows, cols = np.nonzero(hot_on)
    hot_box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    slack = _box((0, 0, tile, tile), [0, 0, *seen["shot_bounds"][2:]], size)[2] + 2
    for got, want in zip(hot_box, _box(done.tumor, seen["shot_bounds"], size), strict=True):
        assert abs(got - want) <= slack, (hot_box, done.tumor, seen["shot_bounds"])

    # A top-tile click moves the viewport onto that tile.
    bx, by, bw, bh = seen["after_click"]
    assert bx <= target.x and target.x + target.w <= bx + bw and by <= target.y and target.y + target.h <= by + bh
    assert bw < done.width / 4 < seen["before_click"][2]
    assert abs(bx + bw / 2 - (target.x + target.w / 2)) < target.w / 2
    assert seen["tooltip"] == f"tile {target.index} · p(yes) {target.p_yes:.3f}"
    assert seen["direct_link"] is True  # /jobs/<id>, as `make demo` prints it, opens the viewer

    for name in ("console-slide-list.png", "console-slide-viewer.png", "console-slide-zoom.png"):
        with Image.open(SCREENSHOTS / name) as shot:
            assert shot.format == "PNG" and shot.width >= 1200
