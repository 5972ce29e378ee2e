"""The whole slide path in one process, on the real emulators: upload → ingest (kind slide, slides
topic) → tile → shards → scores → finalize → one slide verdict with its artifacts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from healer_core.schema import JobKind, JobState, SlideStage, Task
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.slides.pipeline import pipeline

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> SynthSlide:
    """4096 x 3072 at 0.5 µm/px: 224 px tiles at 1 µm/px are 448 px on it, ~30 of them tissue."""
    folder = tmp_path_factory.mktemp("flow")
    return synth.write_slide(folder / "case-1.svs", sample_paths, width=4096, height=3072, mpp=0.5)


def test_a_slide_becomes_one_verdict_with_artifacts(emulator_cfg, store, unique, small_slide) -> None:
    with pipeline(emulator_cfg.project, store, unique) as p:
        message = p.upload(small_slide.path)
        queued = p.job(message.job_id)
        assert (queued.kind, queued.state, message.task) == (JobKind.SLIDE, JobState.QUEUED, Task.TILE)
        assert queued.slide is not None and queued.slide.vendor == "aperio"
        job = p.run(message.job_id)
    assert job.state == JobState.DONE, job.error
    slide, verdict = job.slide, job.verdict
    assert slide.stage == SlideStage.DONE and slide.shards_done == slide.shards_total > 1
    assert slide.tiles_scored == slide.tiles_total
    assert verdict.slide.tiles_scored == slide.tiles_total
    assert verdict.answer in ("yes", "no", "indeterminate") and 0 <= verdict.p_yes <= 1
    assert verdict.model_id == "fake/engine" and verdict.explanation.count(".") >= 1
    print(verdict.explanation, verdict.slide.heatmap_uri, slide)
    heatmap = p.results.blob(f"slides/{job.job_id}/heatmap.png").download_as_bytes()
    assert Image.open(io.BytesIO(heatmap)).format == "PNG"
    geojson = json.loads(p.results.blob(f"slides/{job.job_id}/tiles.geojson").download_as_bytes())
    assert len(geojson["features"]) == slide.tiles_total
