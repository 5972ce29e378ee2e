"""Slide jobs as the pipeline leaves them, for the console's tests (API and browser).

A generated slide (slide_service.synth, tumor region known) is uploaded to the emulated inbox, a
slide job document is written through the store, and its verdict's artifacts are produced by the
slide library itself: tissue → tile plan → scores → aggregate → heatmap, GeoJSON and thumbnail in
the results bucket under `slides/<job_id>/`. The tile scores stand in for the model: tiles whose
centre lies in the known tumor region score high, the others low, so a test can check that what
the viewer draws lands on the tumor, which the tiny model's random scores cannot show. A slide that
went through the real pipeline is opened by tests/test_console_pipeline_slide_e2e.py (the console
only reads the job document and the objects it names, so both look the same to it).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image

from healer_core.ids import job_id_for
from healer_core.schema import Aggregation, Job, Slide, SlideStage, TileScore
from healer_core.store import JobStore
from slide_service.aggregate import TileScore as Scored
from slide_service.aggregate import aggregate
from slide_service.geojson import tiles_geojson
from slide_service.grid import plan_tiles
from slide_service.heatmap import render_heatmap
from slide_service.open import open_slide
from slide_service.survey import slide_geometry
from slide_service.synth import SynthSlide
from slide_service.tissue import detect_tissue
from tests.slide_docs import done_report, slide_job, slide_verdict

THRESHOLD, BAND, TOP_K = 0.5, 0.1, 8
# Small tiles so a small generated slide still has dozens of them (the geometry does not depend on it).
TILE_PX, TILE_MPP = 96, 1.0
FIXTURE_MODEL = "fixture/scores-from-known-tumor"
FIXTURE_REPORT = (
    "Test fixture report (no model was run): tiles in the generated tumor block score high, "
    "normal mucosa low. The real report comes from MedGemma 1.5 (SLIDE_REPORT_PATCHES)."
)


@dataclass(frozen=True)
class SeededSlide:
    """A slide job in the store, and what its verdict says."""

    job: Job
    scores: list[Scored]
    tumor: tuple[int, int, int, int]  # x, y, w, h in level-0 pixels
    width: int
    height: int


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def upload_slide(inbox: Any, slide: SynthSlide, name: str) -> int:
    """Upload the slide file to the inbox bucket; returns its generation."""
    blob = inbox.blob(name)
    blob.upload_from_filename(str(slide.path), content_type="image/tiff")
    blob.reload()
    return int(blob.generation)


def _slide_job(inbox: Any, name: str, generation: int, slide: SynthSlide, progress: Slide) -> Job:
    return slide_job(
        inbox.name, name, generation, content_type="image/tiff", size_bytes=slide.path.stat().st_size, slide=progress
    )


def score_slide(slide: SynthSlide) -> tuple[list[Scored], Image.Image, float, Slide]:
    """Scores by the known tumor region, the thumbnail and its downsample, and the slide's geometry."""
    tumor = slide.tumor
    with open_slide(slide.path) as opened:
        mask = detect_tissue(opened)
        plan = plan_tiles(opened.info, mask, TILE_PX, TILE_MPP, min_tissue=0.25, max_tiles=5000)
        info = opened.info
    scores = []
    for t in plan.tiles:
        inside = tumor.contains(t.x + t.w / 2, t.y + t.h / 2)
        jitter = (t.index * 37 % 10) / 100  # a little spread, so the colours are not all one
        scores.append(Scored(t.index, t.x, t.y, t.w, t.h, 0.86 + jitter if inside else 0.04 + jitter))
    return scores, mask.thumbnail, mask.downsample, slide_geometry(info, plan)


def seed_done_slide(store: JobStore, inbox: Any, results: Any, slide: SynthSlide, name: str) -> SeededSlide:
    """A finished slide job: the slide in the inbox, artifacts in the results bucket, the verdict."""
    generation = upload_slide(inbox, slide, name)
    job_id = job_id_for(inbox.name, name, generation)
    scores, thumbnail, downsample, geometry = score_slide(slide)
    agg = aggregate(scores, TOP_K, THRESHOLD, BAND)
    heatmap = render_heatmap(thumbnail, downsample, scores, threshold=THRESHOLD)
    artifacts = {
        "heatmap.png": (heatmap.png, "image/png"),
        "tiles.geojson": (json.dumps(tiles_geojson(job_id, scores, THRESHOLD, BAND)).encode(), "application/geo+json"),
        "thumbnail.png": (_png(thumbnail), "image/png"),
    }
    for file, (data, content_type) in artifacts.items():
        results.blob(f"slides/{job_id}/{file}").upload_from_string(data, content_type=content_type)
    n_shards = -(-len(scores) // 64)
    geometry = geometry.model_copy(
        update={
            "stage": SlideStage.DONE,
            "shards_total": n_shards,
            "shards_done": n_shards,
            "tiles_scored": len(scores),
        }
    )
    store.create(_slide_job(inbox, name, generation, slide, geometry))
    verdict = slide_verdict(
        agg.answer,
        agg.p_yes,
        aggregation=Aggregation(method=agg.method, top_k=agg.top_k),
        tiles_scored=agg.tiles_scored,
        tiles_positive=agg.tiles_positive,
        top_tiles=[TileScore(index=t.index, x=t.x, y=t.y, w=t.w, h=t.h, p_yes=t.p_yes) for t in agg.top_tiles],
        artifacts=f"gs://{results.name}/slides/{job_id}",
        report=done_report(FIXTURE_REPORT, FIXTURE_MODEL, "fixture", 16),
        explanation="",
        model_id=FIXTURE_MODEL,
        prompt_version="fixture",
    )
    lease = store.lease(job_id, "fixture", 60)
    assert store.finish(job_id, lease.token, verdict)
    tumor = slide.tumor
    return SeededSlide(store.get(job_id), scores, (tumor.x, tumor.y, tumor.w, tumor.h), slide.width, slide.height)


def seed_running_slide(
    store: JobStore, inbox: Any, slide: SynthSlide, name: str, scored: int, total: int, shards: tuple[int, int]
) -> Job:
    """A slide job mid-scoring: `scored` of `total` tiles, `shards` = (done, total)."""
    generation = upload_slide(inbox, slide, name)
    job_id = job_id_for(inbox.name, name, generation)
    progress = Slide(
        stage=SlideStage.SCORING,
        format="Aperio SVS",
        vendor="aperio",
        width=slide.width,
        height=slide.height,
        mpp=slide.mpp,
        tiles_total=total,
        tiles_scored=scored,
        shards_total=shards[1],
        shards_done=shards[0],
    )
    store.create(_slide_job(inbox, name, generation, slide, progress))
    store.lease(job_id, "fixture", 600)
    return store.get(job_id)
