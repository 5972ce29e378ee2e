"""The whole slide path in one process, on the real emulators: upload → ingest (kind slide, slides
topic) → tile → shards → scores → finalize → one slide verdict with its artifacts."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from healer_core.schema import JobKind, JobMessage, JobState, SlideStage, Task
from healer_core.topics import topic_router
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.fakes import FakeEngine
from tests.service_helpers import png_bytes
from tests.slides.pipeline import Pipeline, pipeline, wait_until
from tests.test_service import queued_job

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


def deliver_twice_concurrently(p: Pipeline, job_id: str, timeout_s: float = 180.0) -> None:
    """Pub/Sub at its worst: every message delivered twice, all of a round at once (16 workers)."""
    deadline = time.monotonic() + timeout_s
    while not p.job(job_id).state.terminal:
        assert time.monotonic() < deadline, f"not terminal: {p.job(job_id).slide}"
        for topic in (p.slides, p.jobs):
            batch = topic.pull()
            messages = [JobMessage.from_data(r.message.data) for r in batch]
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(p.deliver, [m for m in messages for _ in range(2)]))
            for i, received in enumerate(batch):
                topic.settle(received, acked=any(200 <= s < 300 for s in statuses[2 * i : 2 * i + 2]))
        time.sleep(0.05)


def test_every_message_twice_and_concurrently_still_one_verdict(emulator_cfg, store, unique, small_slide) -> None:
    with pipeline(emulator_cfg.project, store, unique, SHARD_TILES=1, inference_env={"MAX_SHARDS_IN_FLIGHT": 16}) as p:
        message = p.upload(small_slide.path)
        deliver_twice_concurrently(p, message.job_id)
        job = p.job(message.job_id)
        shards = p.store.shards(message.job_id)
        # Late duplicates of everything, after the verdict: acknowledged, nothing changes.
        late = [message.for_shard(s.n) for s in shards] + [message.for_task(Task.FINALIZE)] * 3 + [message]
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(p.deliver, late)) == {204}
        after = p.job(message.job_id)
    assert job.state == JobState.DONE and after.verdict == job.verdict
    slide = after.slide
    assert slide.shards_total == len(shards) > 20 and slide.shards_done == slide.shards_total
    assert slide.tiles_scored == slide.tiles_total == job.verdict.slide.tiles_scored
    assert [e.event for e in after.history].count("done") == 1
    assert [e.event for e in after.history].count("scored") == 1  # one finalize claim
    assert all(s.attempts == 1 for s in shards)  # no shard scored twice
    assert sum(p.engine.batch_sizes) == slide.tiles_total  # every tile through the engine exactly once


def test_a_lost_finalize_publish_is_republished_by_the_sweep(emulator_cfg, store, unique, small_slide) -> None:
    from healer_ingest.slide_sweep import sweep_slides

    # The inference service's finalize publish fails (its slides topic does not exist).
    with pipeline(emulator_cfg.project, store, unique, inference_env={"SLIDES_TOPIC": f"missing-{unique}"}) as p:
        message = p.upload(small_slide.path)
        for _ in range(200):
            p.pump_once()
            slide = p.job(message.job_id).slide
            if slide.shards_total and slide.shards_done == slide.shards_total:
                break
        assert slide.stage == SlideStage.FINALIZING and slide.finalize_published_at is None
        assert ("shard", 503) in p.statuses  # the last shard's publish failed: redelivered, never lost
        router = topic_router(p.project, p.jobs.name, p.slides.name)
        counts = sweep_slides(p.store, router, unpublished_grace_s=0, stale_s=3600)
        assert counts["slide_finalize_republished"] == 1
        job = p.run(message.job_id)
        # The finalize message itself lost after its publish: the sweep publishes it again too.
        second = p.upload(small_slide.path, name="lab/second.svs")
        app: Any = p.inference.app
        app.state.runtime.shards.publisher = router  # this time the publish succeeds
        for _ in range(200):
            p.pump_once() if p.job(second.job_id).slide.stage != SlideStage.FINALIZING else None
            if p.job(second.job_id).slide.stage == SlideStage.FINALIZING:
                break
        assert [m.task for m in p.slides.drain()] == [Task.FINALIZE]  # lost
        assert p.job(second.job_id).slide.finalize_published_at is not None
        assert sweep_slides(p.store, router, unpublished_grace_s=0, stale_s=3600)["slide_finalize_republished"] == 1
        second_job = p.run(second.job_id)
    for done in (job, second_job):
        assert done.state == JobState.DONE and done.slide.shards_done == done.slide.shards_total
        assert [e.event for e in done.history].count("done") == 1


@pytest.fixture(scope="module")
def bad_slides(tmp_path_factory: pytest.TempPathFactory, small_slide: SynthSlide, sample_paths: list[Path]) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    synth.truncate(small_slide.path, folder / "truncated.svs", 0.6)
    synth.corrupt(small_slide.path, folder / "corrupt-tiles.svs", "tiles")
    synth.write_blank_slide(folder / "blank.svs", sample_paths, width=2048, height=1536)
    synth.write_strip_tiff(folder / "flatbed.tif", width=20_000, height=15_000)
    synth.write_mrxs_standin(folder / "case.mrxs")
    synth.write_dicom_standin(folder / "level0.dcm")
    return folder


@pytest.mark.parametrize(
    ("name", "code", "says", "at_ingest", "env"),
    [
        ("truncated.svs", "unreadable_slide", "truncated", False, {}),
        ("corrupt-tiles.svs", "unreadable_slide", "corrupt", False, {}),
        ("blank.svs", "no_tissue", "MIN_TISSUE", False, {}),
        ("small.svs", "too_large", "MAX_SLIDE_TILES", False, {"MAX_SLIDE_TILES": 5}),
        ("small.svs", "too_large", "MAX_SLIDE_BYTES", False, {"MAX_SLIDE_BYTES": 1000}),
        ("flatbed.tif", "unsupported_slide", "non-tiled", True, {}),
        ("case.mrxs", "unsupported_slide", "MIRAX", True, {}),
        ("level0.dcm", "unsupported_slide", "DICOM", True, {}),
    ],
)
def test_bad_slides_fail_with_their_codes(
    emulator_cfg, store, unique, small_slide, bad_slides, name, code, says, at_ingest, env
) -> None:
    path = small_slide.path if name == "small.svs" else bad_slides / name
    with pipeline(emulator_cfg.project, store, unique, **env) as p:
        message = p.upload(path)
        job = p.job(message.job_id) if at_ingest else p.run(message.job_id)
        if at_ingest:
            assert p.tasks_waiting() == []  # failed at ingest: no message at all
        assert p.slide.get("/readyz").status_code == 200  # the service is fine
    assert job.kind == JobKind.SLIDE and job.state == JobState.FAILED
    assert (job.error.code, job.error.retryable) == (code, False) and says in job.error.message, job.error
    assert path.name not in job.error.message  # names can carry patient identifiers


def test_single_images_are_neither_starved_nor_refused_while_a_shard_runs(
    emulator_cfg, store, unique, small_slide
) -> None:
    """MAX_QUEUE 2 and a shard of 16 tiles: the shard is never refused halfway (its tiles are
    reserved requests), and as many single images as MAX_QUEUE pushed while it runs are all taken
    (204, no 429: the shard's tiles do not take their places) and finish before it does (a single
    waits behind at most one batch of shard tiles)."""
    engine = FakeEngine(delay_s=0.15)
    env = {"MAX_QUEUE": 2, "MAX_BATCH_SIZE": 2, "EXPLAIN": "false"}
    with pipeline(emulator_cfg.project, store, unique, engine=engine, inference_env=env, SHARD_TILES=16) as p:
        message = p.upload(small_slide.path)
        (tile,) = [m for m in p.slides.drain()]
        assert p.deliver(tile) == 204
        shard_messages = p.jobs.drain()
        finished: list[str] = []
        images = [
            queued_job(p.store, p.inbox, f"lab/single-{i}.png", png_bytes(color=(i * 40, 90, 160))) for i in range(2)
        ]

        def push(name: str, m: JobMessage) -> int:
            status = p.deliver(m)
            finished.append(name)
            return status

        with ThreadPoolExecutor(4) as pool:
            shard = pool.submit(push, "shard", shard_messages[0])
            wait_until(lambda: p.store.get_shard(message.job_id, 0).state == JobState.RUNNING, 30, "the shard lease")
            time.sleep(0.3)  # its tiles are queued now
            singles = [pool.submit(push, f"image-{i}", m) for i, m in enumerate(images)]
            statuses = [f.result(timeout=120) for f in singles]
            assert shard.result(timeout=120) == 204
    assert statuses == [204, 204]
    assert finished[-1] == "shard"
    assert all(p.job(m.job_id).state == JobState.DONE for m in images)
    assert p.store.get_shard(message.job_id, 0).state == JobState.DONE
