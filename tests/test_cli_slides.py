"""Slide jobs in the CLI, on the emulators: `results` and `watch` rows, `submit --wait`'s bar over
tiles and its summary, and `healer slide` (verdict, report, top tiles, artifacts from the bucket).

The slide pipeline is built elsewhere; these tests write slide job documents through the store as
the pipeline will (a running slide with progress, a done one with its verdict and artifacts in an
emulated results bucket, a failed one) and check what a user sees.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

from healer.cli.errors import CliError
from healer.cli.follow import follow_with_progress, slide_bar
from healer.cli.jobs import _wait_and_report
from healer.stack.config import StackConfig
from healer_core.ids import job_id_for
from healer_core.schema import (
    Aggregation,
    Job,
    JobError,
    JobState,
    Slide,
    SlideStage,
    SlideVerdict,
    TileScore,
    Verdict,
)
from healer_core.store import JobStore
from tests.slide_docs import ARTIFACT_FILES, done_report, slide_job, slide_verdict
from tests.test_cli import _put, run

TINY = "healer/tiny-random-gemma3 (NOT MedGemma: answers are meaningless)"
TILE = 3584  # a 896 px tile at 1.0 µm/px on a 0.25 µm/px slide, in level-0 pixels
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


SCAN = {"width": 40000, "height": 30000, "mpp": 0.25, "objective": 40.0, "levels": 3}
TILING = {"tile_px": 896, "tile_mpp": 1.0}


def _geometry(**progress: Any) -> Slide:
    """An Aperio slide of 40000 x 30000 px at 0.25 µm/px, tiled at 1.0 µm/px."""
    return Slide(format="svs", vendor="aperio", **SCAN, **TILING, **progress)


def running_slide(store: JobStore, bucket: str, name: str = "lab-a/running.svs") -> Job:
    """Tiled into 400 tiles in 7 shards; 3 shards (192 tiles) scored so far."""
    progress = _geometry(stage=SlideStage.SCORING, tiles_total=400, shards_total=7, shards_done=3, tiles_scored=192)
    job = slide_job(bucket, name, state=JobState.RUNNING, attempts=1, slide=progress)
    store.create(job)
    return job


def failed_slide(store: JobStore, bucket: str, name: str = "lab-a/blank.svs", generation: int = 1) -> Job:
    """The slide service found no tissue."""
    error = JobError(code="no_tissue", message="No tissue was found on the slide.")
    job = slide_job(bucket, name, generation, state=JobState.FAILED, error=error, slide=_geometry())
    store.create(job)
    return job


TOP_TILES = [
    TileScore(index=17, x=7 * TILE, y=2 * TILE, w=TILE, h=TILE, p_yes=0.981),
    TileScore(index=18, x=8 * TILE, y=2 * TILE, w=TILE, h=TILE, p_yes=0.955),
    TileScore(index=9, x=8 * TILE, y=1 * TILE, w=TILE, h=TILE, p_yes=0.934),
    TileScore(index=26, x=7 * TILE, y=3 * TILE, w=TILE, h=TILE, p_yes=0.902),
    TileScore(index=25, x=6 * TILE, y=3 * TILE, w=TILE, h=TILE, p_yes=0.871),
]


@dataclass(frozen=True)
class DoneSlide:
    job: Job
    artifacts: dict[str, bytes]  # what the results bucket holds, by artifact


def done_slide(
    store: JobStore, bucket: str, results: Any, name: str = "lab-a/tumor.svs", generation: int = 1
) -> DoneSlide:
    """A done slide: its verdict, report and top tiles, and its artifacts written to `results`."""
    from PIL import Image

    job_id = job_id_for(bucket, name, generation)
    prefix = f"slides/{job_id}"
    verdict = slide_verdict(
        "yes",
        0.912,
        aggregation=Aggregation(method="top_k_mean", top_k=8),
        tiles_scored=40,
        tiles_positive=12,
        top_tiles=TOP_TILES,
        artifacts=f"gs://{results.name}/{prefix}",
        report=done_report(
            "Test report, written by the test: crowded irregular glands in the top tiles.", TINY, "slide-report-v1", 32
        ),
        model_id=TINY,
        model_revision="tiny-v1",
        prompt_version="crc-v1",
    )
    progress = _geometry(stage=SlideStage.DONE, tiles_total=40, shards_total=1, shards_done=1, tiles_scored=40)
    job = slide_job(bucket, name, generation, state=JobState.DONE, attempts=1, slide=progress, verdict=verdict)
    artifacts = {
        "heatmap": _png(Image.new("RGB", (80, 60), (220, 40, 40))),
        "thumbnail": _png(Image.new("RGB", (80, 60), (230, 200, 220))),
        "geojson": json.dumps(_geojson(TOP_TILES)).encode(),
    }
    for what, data in artifacts.items():
        results.blob(f"{prefix}/{ARTIFACT_FILES[what]}").upload_from_string(data)
    store.create(job)
    return DoneSlide(job, artifacts)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _geojson(tiles: list[TileScore]) -> dict[str, Any]:
    def polygon(t: TileScore) -> list[list[list[int]]]:
        return [[[t.x, t.y], [t.x + t.w, t.y], [t.x + t.w, t.y + t.h], [t.x, t.y + t.h], [t.x, t.y]]]

    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": polygon(t)},
            "properties": {"index": t.index, "p_yes": t.p_yes},
        }
        for t in tiles
    ]
    return {"type": "FeatureCollection", "features": features}


@pytest.fixture
def results_bucket(emulator_cfg: StackConfig, unique: str) -> Iterator[Any]:
    """A second emulated bucket, as RESULTS_BUCKET is on the local stack."""
    from google.cloud import storage  # type: ignore[attr-defined]

    yield storage.Client(project=emulator_cfg.project).create_bucket(f"results-{unique}")


def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # Console() outside the runner: wide enough not to fold


# ---- results and watch: slide rows next to image rows --------------------------------------


def test_results_shows_slide_rows_in_each_format(store: JobStore, results_bucket: Any, unique: str) -> None:
    bucket = f"b-{unique}"
    image = _put(store, bucket, "lab-a/tile.png", p_yes=0.9)
    running = running_slide(store, bucket)
    done = done_slide(store, bucket, results_bucket).job
    failed = failed_slide(store, bucket)
    coll = ["--collection", store.collection.id]

    code, out = run("results", *coll)
    assert code == 0, out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│ lab-a/")}
    assert "running" in rows["lab-a/running.svs"] and "slide · scoring 192/400 tiles, 3/7 shards" in out
    assert "yes" in rows["lab-a/tumor.svs"] and "0.912" in rows["lab-a/tumor.svs"]
    assert "slide · 12/40 tiles positive, report done" in out
    assert "failed" in rows["lab-a/blank.svs"] and "slide · no_tissue" in rows["lab-a/blank.svs"]
    assert "0.900" in rows["lab-a/tile.png"] and "p=0.9" in rows["lab-a/tile.png"]  # the image row as before
    assert "slide" not in rows["lab-a/tile.png"] and "4 job(s)" in out

    code, out = run("results", *coll, "--format", "json")
    assert code == 0, out
    by_id = {row["job_id"]: row for row in json.loads(out)}
    assert by_id[image.job_id]["kind"] == "image" and by_id[image.job_id]["slide"] is None
    assert by_id[running.job_id]["slide"]["tiles_scored"] == 192
    assert by_id[done.job_id]["verdict"]["slide"]["top_tiles"][0] == {
        "index": 17,
        "x": 7 * TILE,
        "y": 2 * TILE,
        "w": TILE,
        "h": TILE,
        "p_yes": 0.981,
    }
    assert by_id[failed.job_id]["error"]["code"] == "no_tissue"

    code, out = run("results", *coll, "--format", "csv")
    assert code == 0, out
    csv_rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out))}
    slide_columns = ("kind", "slide_stage", "tiles_total", "tiles_scored", "tiles_positive", "report_status")
    assert [csv_rows["lab-a/running.svs"][c] for c in slide_columns] == ["slide", "scoring", "400", "192", "", ""]
    assert [csv_rows["lab-a/tumor.svs"][c] for c in slide_columns] == ["slide", "done", "40", "40", "12", "done"]
    assert csv_rows["lab-a/tumor.svs"]["p_yes"] == "0.912" and csv_rows["lab-a/tumor.svs"]["answer"] == "yes"
    assert csv_rows["lab-a/blank.svs"]["error_code"] == "no_tissue"
    image_row = csv_rows["lab-a/tile.png"]
    assert image_row["kind"] == "image" and [image_row[c] for c in slide_columns[1:]] == [""] * 5
    assert (image_row["p_yes"], image_row["explanation"]) == ("0.9", "p=0.9")


def test_watch_shows_slide_progress(store: JobStore, unique: str) -> None:
    running_slide(store, f"b-{unique}")
    failed_slide(store, f"b-{unique}")
    code, out = run("watch", "--collection", store.collection.id, "--timeout", "1.5")
    assert code == 0, out
    assert "lab-a/running.svs" in out and "slide · scoring 192/400 tiles, 3/7 shards" in out
    assert "running: 1" in out and "failed: 1" in out and "(2 of them slides)" in out


# ---- submit --wait: a bar over tiles per slide, slides counted in the summary --------------


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=120, color_system=None), buf


def test_progress_shows_each_slide_over_its_tiles(store: JobStore, unique: str) -> None:
    image = _put(store, f"b-{unique}", "lab-a/tile.png", p_yes=0.9)
    slide = running_slide(store, f"b-{unique}")
    terminal, buf = _terminal()

    jobs = follow_with_progress(store, [image.job_id, slide.job_id], 1.0, terminal)  # the slide never ends
    assert jobs[slide.job_id].state == JobState.RUNNING
    seen = ANSI.sub("", buf.getvalue())
    assert "waiting for verdicts: 1 done, 0 failed, 1 running" in seen and "1/2" in seen
    assert re.search(r"lab-a/running\.svs · scoring .* 192/400 tiles", seen), seen


def test_progress_follows_a_slide_to_done(store: JobStore, unique: str) -> None:
    slide = running_slide(store, f"b-{unique}")
    terminal, buf = _terminal()

    def finish_later() -> None:
        time.sleep(1.0)
        store.collection.document(slide.job_id).update(
            {"slide.stage": "finalizing", "slide.shards_done": 7, "slide.tiles_scored": 400}
        )
        time.sleep(1.0)
        found = SlideVerdict(tiles_scored=400)
        verdict = Verdict(answer="no", p_yes=0.1, model_id=TINY, prompt_version="crc-v1", slide=found)
        store.collection.document(slide.job_id).update(
            {"state": "done", "slide.stage": "done", "verdict": verdict.model_dump(mode="python")}
        )

    writer = threading.Thread(target=finish_later)
    writer.start()
    try:
        jobs = follow_with_progress(store, [slide.job_id], 60.0, terminal)
    finally:
        writer.join()
    assert jobs[slide.job_id].state == JobState.DONE
    seen = ANSI.sub("", buf.getvalue())
    assert re.search(r"lab-a/running\.svs · done .* 400/400 tiles", seen), seen


def test_slide_bar_at_each_stage() -> None:
    queued = slide_job("b", "q.svs")
    assert slide_bar(queued) == {"description": "  q.svs · queued", "completed": 0, "total": None, "count": ""}
    tiling = queued.model_copy(update={"state": JobState.RUNNING, "slide": _geometry()})
    assert slide_bar(tiling)["description"] == "  q.svs · tiling" and slide_bar(tiling)["total"] is None  # pulses
    scoring = tiling.model_copy(update={"slide": _geometry(stage=SlideStage.SCORING, tiles_total=400, tiles_scored=64)})
    assert slide_bar(scoring) | {"description": ""} == {
        "description": "",
        "completed": 64,
        "total": 400,
        "count": "64/400 tiles",
    }
    error = JobError(code="no_tissue", message="No tissue was found on the slide.")
    failed = tiling.model_copy(update={"state": JobState.FAILED, "error": error})
    assert slide_bar(failed) == {  # ended before tiling: an empty bar, no pulse, no count
        "description": "  q.svs · failed: no_tissue",
        "completed": 0,
        "total": 1,
        "count": "",
    }


def test_wait_counts_slides_in_the_summary(
    store: JobStore, results_bucket: Any, unique: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    _wide(monkeypatch)
    bucket = f"b-{unique}"
    image = _put(store, bucket, "lab-a/tile.png", p_yes=0.9)
    done = done_slide(store, bucket, results_bucket).job
    failed = failed_slide(store, bucket)
    named = [(j.name, j.job_id) for j in (image, done, failed)]

    with pytest.raises(typer.Exit) as exit_info:
        _wait_and_report(named, store, 30.0)
    assert exit_info.value.exit_code == 1  # a failed job
    out = capsys.readouterr().out
    assert "slide · 12/40 tiles positive, report done" in out and "slide · no_tissue" in out
    assert "2 done, 1 failed, 0 unfinished (slides: 1 done, 1 failed, 0 unfinished)" in out

    running = running_slide(store, bucket)
    with pytest.raises(CliError, match="1 job\\(s\\) not finished") as timed_out:
        _wait_and_report([(image.name, image.job_id), (running.name, running.job_id)], store, 1.0)
    assert timed_out.value.exit_code == 3
    out = capsys.readouterr().out
    assert "1 done, 0 failed, 1 unfinished (slides: 0 done, 0 failed, 1 unfinished)" in out

    _wait_and_report([(image.name, image.job_id)], store, 30.0)  # images only: the line as before
    assert capsys.readouterr().out.rstrip().endswith("1 done, 0 failed, 0 unfinished")


# ---- healer slide ---------------------------------------------------------------------------


def test_slide_prints_the_verdict_and_fetches_the_artifacts(
    store: JobStore, results_bucket: Any, tmp_path: Path, unique: str
) -> None:
    done = done_slide(store, f"b-{unique}", results_bucket)
    job = done.job
    out_files = {"heatmap": tmp_path / "heat.png", "geojson": tmp_path / "tiles.json", "thumbnail": tmp_path / "t.png"}
    flags = [arg for what, path in out_files.items() for arg in (f"--{what}", str(path))]

    code, out = run("slide", job.job_id, "--collection", store.collection.id, *flags)
    assert code == 0, out
    assert "Slide verdict (screening aid, not a diagnosis)" in out
    assert re.search(r"answer\s+│ yes", out) and "0.912 (mean p_yes of the top 8 tiles)" in out
    assert "12 positive of 40 scored (40 planned)" in out
    assert "svs (aperio), 40000 x 30000 px, 0.25 µm/px, 3 levels" in out and "1 µm/px, 896 px" in out
    assert f"{TINY} @ tiny-v1" in out and "crc-v1" in out
    assert "Report (" in out and "prompt slide-report-v1; 32 patches)" in out
    assert "crowded irregular glands in the top tiles" in out
    assert "Top 5 of 5 tiles (level-0 pixels)" in out
    first = next(line for line in out.splitlines() if line.startswith("│ 1 "))
    assert [cell.strip() for cell in first.strip("│").split("│")] == [
        "1",
        "17",
        "25088",
        "7168",
        "3584",
        "3584",
        "0.981",
    ]
    for what, path in out_files.items():
        assert path.read_bytes() == done.artifacts[what], what
        assert f"wrote {path} ({len(done.artifacts[what]):,} bytes): the {what}" in out
        assert f"gs://{results_bucket.name}/slides/{job.job_id}/{ARTIFACT_FILES[what]}" in out  # Artifacts table
    assert json.loads(out_files["geojson"].read_text())["features"][0]["properties"] == {"index": 17, "p_yes": 0.981}
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # no temp left


def test_slide_by_object_name_takes_the_latest_generation(store: JobStore, results_bucket: Any, unique: str) -> None:
    bucket = f"b-{unique}"
    failed_slide(store, bucket, "lab-a/rescan.svs", generation=1)
    newest = done_slide(store, bucket, results_bucket, "lab-a/rescan.svs", generation=2).job
    coll = ["--collection", store.collection.id]

    code, out = run("slide", "lab-a/rescan.svs", "--bucket", bucket, *coll, "--top", "2")
    assert code == 0, out
    assert newest.job_id in out and "0.912" in out and "Top 2 of 5 tiles" in out
    code, out = run("slide", f"gs://{bucket}/lab-a/rescan.svs", *coll)
    assert code == 0 and newest.job_id in out, out

    store.collection.document(newest.job_id).update({"verdict.slide.report": {"status": "pending"}})
    code, out = run("slide", newest.job_id, *coll)
    assert code == 0 and "Report: pending (written after the tiles are scored)" in out, out
    assert "crowded irregular glands" not in out


def test_slide_errors_are_one_line(store: JobStore, results_bucket: Any, tmp_path: Path, unique: str) -> None:
    bucket = f"b-{unique}"
    image = _put(store, bucket, "lab-a/tile.png", p_yes=0.9)
    running = running_slide(store, bucket)
    failed = failed_slide(store, bucket)
    done = done_slide(store, bucket, results_bucket).job
    coll = ["--collection", store.collection.id]

    def one_line(*args: str) -> str:
        code, out = run("slide", *args, *coll)
        assert code == 1 and out.startswith("error: ") and len(out.strip().splitlines()) == 1, out
        return out.strip()

    assert one_line(image.job_id) == (
        f"error: job {image.job_id} is an image, not a slide: `healer results {image.job_id}` shows its verdict"
    )
    assert one_line(running.job_id) == (
        f"error: slide {running.job_id} is not done yet (running: scoring 192/400 tiles, 3/7 shards): "
        "follow it with `healer watch`"
    )
    assert (
        one_line(failed.job_id) == f"error: slide {failed.job_id} failed: no_tissue: No tissue was found on the slide."
    )
    assert "no job for gs://" in one_line("lab-a/never.svs", "--bucket", bucket)
    assert (
        one_line(done.job_id, "--heatmap", str(tmp_path / "nope" / "h.png"))
        == f"error: no such folder: {tmp_path / 'nope'}"
    )

    # A missing artifact: the verdict still prints, the others are fetched, the exit says which.
    results_bucket.blob(f"slides/{done.job_id}/tiles.geojson").delete()
    heat, tiles = tmp_path / "h.png", tmp_path / "tiles.json"
    code, out = run("slide", done.job_id, *coll, "--heatmap", str(heat), "--geojson", str(tiles))
    assert code == 1, out
    assert "Slide verdict" in out and heat.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not tiles.exists()
    assert out.strip().splitlines()[-1] == (
        f"error: slide {done.job_id}: missing geojson: "
        f"gs://{results_bucket.name}/slides/{done.job_id}/tiles.geojson was not found"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no partial or temporary file left
