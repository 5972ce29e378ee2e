"""Killing the services mid-work (issue 12, "Reliability"): the slide service SIGKILLed mid-tiling,
the inference service SIGKILLed mid-shard. Real uvicorn processes, the real emulators; messages a
killed service never answered are delivered again (as Pub/Sub does). Every slide ends with exactly
one verdict, every shard counted once, every tile scored once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from healer_core.schema import JobMessage, JobState, SlideStage, Task
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.processes import UvicornProcess
from tests.slides.pipeline import SLIDE_ENV, Pipeline, pipeline, wait_until

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> SynthSlide:
    return synth.write_slide(
        tmp_path_factory.mktemp("rel") / "case.svs", sample_paths, width=4096, height=3072, mpp=0.5
    )


def slide_service_env(p: Pipeline) -> dict[str, Any]:
    s = p.slide_settings
    return {
        **SLIDE_ENV,
        "LEASE_SECONDS": 3,
        "JOBS_COLLECTION": s.jobs_collection,
        "JOBS_TOPIC": s.jobs_topic,
        "SLIDES_TOPIC": s.slides_topic,
        "WORK_BUCKET": s.work_bucket,
        "RESULTS_BUCKET": s.results_bucket,
    }


def deliver_in_background(p: Pipeline, message: JobMessage) -> threading.Thread:
    thread = threading.Thread(target=p.deliver, args=(message,), daemon=True)
    thread.start()
    return thread


def events(p: Pipeline, job_id: str) -> list[str]:
    return [e.event for e in p.job(job_id).history]


def test_slide_service_killed_mid_tiling(emulator_cfg, store, unique, slide, processes, tmp_path) -> None:
    with pipeline(emulator_cfg.project, store, unique) as p:
        env = slide_service_env(p)
        doomed = UvicornProcess("slide_service.app:create_app", tmp_path / "doomed.log", **env)
        processes.append(doomed)
        p.slide_url = doomed.url
        message = p.upload(slide.path)
        (received,) = p.slides.pull()
        cut = deliver_in_background(p, JobMessage.from_data(received.message.data))
        wait_until(lambda: p.job(message.job_id).state == JobState.RUNNING, 30, "the tiling lease")
        doomed.stop()
        cut.join(30)
        p.slides.settle(received, acked=False)  # never answered: Pub/Sub delivers it again
        mid = p.job(message.job_id)
        assert mid.slide.stage == SlideStage.TILING and mid.slide.shards_total == 0  # killed before the hand-off
        successor = UvicornProcess("slide_service.app:create_app", tmp_path / "successor.log", **env)
        processes.append(successor)
        p.slide_url = successor.url
        job = p.run(message.job_id, timeout_s=180)
        shards = p.store.shards(message.job_id)
        history = events(p, message.job_id)
        details = [e.detail for e in p.job(message.job_id).history]
    assert job.state == JobState.DONE and job.verdict is not None
    assert history.count("leased") == 3 and history.count("tiled") == 1  # two tilings, one finalize
    assert "tiling attempt 2 (previous lease expired)" in details
    assert history.count("done") == 1
    assert job.slide.shards_done == job.slide.shards_total == len(shards)
    assert job.slide.tiles_scored == job.slide.tiles_total == job.verdict.slide.tiles_scored
    assert all(s.attempts == 1 and s.state == JobState.DONE for s in shards)


def test_inference_service_killed_mid_shard(emulator_cfg, store, unique, slide, processes, tmp_path) -> None:
    with pipeline(emulator_cfg.project, store, unique) as p:
        env = {
            # The budget stays below the lease (main's settings refuse anything else).
            "LEASE_SECONDS": 6,
            "INFERENCE_BUDGET_SECONDS": 5,
            "JOBS_COLLECTION": store.collection.id,
            "JOBS_TOPIC": p.jobs.name,
            "SLIDES_TOPIC": p.slides.name,
            "BATCH_WINDOW_MS": 1,
            "MAX_BATCH_SIZE": 4,
        }
        doomed = UvicornProcess(
            "tests.reliability_app:create_app", tmp_path / "doomed.log", FAKE_ENGINE_DELAY_S=30, **env
        )
        processes.append(doomed)
        p.inference_url = doomed.url
        message = p.upload(slide.path)
        (tile,) = p.slides.pull()
        assert p.deliver(JobMessage.from_data(tile.message.data)) == 204  # the tile step, in process
        p.slides.settle(tile, acked=True)
        first = p.jobs.pull(max_messages=1)[0]
        shard_message = JobMessage.from_data(first.message.data)
        assert shard_message.task == Task.SHARD
        cut = deliver_in_background(p, shard_message)
        n = shard_message.shard
        wait_until(lambda: p.store.get_shard(message.job_id, n).state == JobState.RUNNING, 30, "the shard lease")
        doomed.stop()
        cut.join(30)
        p.jobs.settle(first, acked=False)
        assert p.store.get_shard(message.job_id, n).state == JobState.RUNNING  # the dead worker's lease remains
        successor = UvicornProcess("tests.reliability_app:create_app", tmp_path / "successor.log", **env)
        processes.append(successor)
        p.inference_url = successor.url
        job = p.run(message.job_id, timeout_s=180)
        shards = {s.n: s for s in p.store.shards(message.job_id)}
    assert job.state == JobState.DONE and [e.event for e in job.history].count("done") == 1
    assert shards[n].attempts == 2 and shards[n].state == JobState.DONE
    assert all(s.attempts == 1 for k, s in shards.items() if k != n)
    assert job.slide.shards_done == job.slide.shards_total == len(shards)
    assert job.slide.tiles_scored == job.slide.tiles_total == job.verdict.slide.tiles_scored
