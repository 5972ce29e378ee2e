"""The sweep (reconcile) covers slides and shards, on the Firestore emulator, with a publisher
that records what it would publish (a fake written here: the messages are what is checked)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from healer_ingest.reconcile import sweep_stuck
from healer_ingest.slide_sweep import sweep_slides

from healer_core.schema import JobMessage, JobState, SlideStage, Task
from healer_core.slide_store import Provenance, SlideStore, StepStatus
from healer_core.store import JobStore
from healer_core.topics import TopicRouter
from tests.slides.test_slide_store import slide_job, tiled

pytestmark = pytest.mark.emulator


class Recorder:
    """A Publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[JobMessage] = []

    def publish(self, message: JobMessage) -> str:
        self.messages.append(message)
        return f"m-{len(self.messages)}"


def router() -> tuple[TopicRouter, Recorder, Recorder]:
    jobs, slides = Recorder(), Recorder()
    return TopicRouter(jobs, slides), jobs, slides


def tasks(messages: Sequence[JobMessage]) -> list[tuple[Task, int | None]]:
    return sorted((m.task, m.shard) for m in messages)


@pytest.fixture
def slides(store: JobStore) -> SlideStore:
    return SlideStore.of(store)


def test_stuck_shards_are_requeued_published_or_republished(slides: SlideStore) -> None:
    job = tiled(slides, 4)
    slides.mark_shards_published(job.job_id, [2, 3])  # 0 and 1: the tiler died while publishing
    slides.lease_shard(job.job_id, 2, "dead-worker", 0.2)  # 2: its worker died
    live = slides.lease_shard(job.job_id, 3, "busy-worker", 300)  # 3: being scored right now
    time.sleep(0.4)
    publisher, jobs, slide_topic = router()
    counts = sweep_slides(slides, publisher, unpublished_grace_s=0, stale_s=3600)
    assert counts == {"shard_published": 2, "shard_requeued_stuck": 1}
    assert tasks(jobs.messages) == [(Task.SHARD, 0), (Task.SHARD, 1), (Task.SHARD, 2)] and not slide_topic.messages
    assert all(s.published_at is not None for s in slides.shards(job.job_id))
    assert slides.get_shard(job.job_id, 3).lease.token == live.token  # a live lease is left alone
    # Run again: nothing more to do (queued shards were just published and touched).
    assert sweep_slides(slides, router()[0], unpublished_grace_s=0, stale_s=3600) == {}
    # Their messages lost: after STALE_QUEUED_SECONDS untouched, published again.
    publisher, jobs, _ = router()
    assert sweep_slides(slides, publisher, unpublished_grace_s=0, stale_s=0)["shard_republished_stale"] == 3


def test_a_counted_slide_nobody_claimed_gets_its_finalize(slides: SlideStore) -> None:
    job = tiled(slides, 2)
    for n in range(2):
        lease = slides.lease_shard(job.job_id, n, "w", 300)
        slides.complete_shard(job.job_id, n, lease.token, [0.5, 0.5], Provenance("m", "r", "none", "p"), 1.0)
    publisher, jobs, slide_topic = router()  # the last worker died between counting and claiming
    assert sweep_slides(slides, publisher, unpublished_grace_s=3600, stale_s=3600) == {"slide_finalize_published": 1}
    assert tasks(slide_topic.messages) == [(Task.FINALIZE, None)] and not jobs.messages
    after = slides.get(job.job_id).slide
    assert after.stage == SlideStage.FINALIZING and after.finalize_published_at is not None
    # Within the grace period it is left to the message just published; after it, published again.
    assert sweep_slides(slides, router()[0], unpublished_grace_s=3600, stale_s=3600) == {}
    assert sweep_slides(slides, router()[0], unpublished_grace_s=0, stale_s=3600) == {"slide_finalize_republished": 1}
    # A live finalize lease is never second-guessed.
    assert slides.lease_stage(job.job_id, "finalizer", 300, SlideStage.FINALIZING).status == StepStatus.ACQUIRED
    assert sweep_slides(slides, router()[0], unpublished_grace_s=0, stale_s=0) == {}


def test_the_job_sweep_retakes_a_dead_tiling_and_routes_it_to_the_slides_topic(slides: SlideStore) -> None:
    job = slide_job(slides, "dead-tiler.svs")
    slides.mark_published(job.job_id, "m-0")
    slides.lease_stage(job.job_id, "dead-tiler", 0.2, SlideStage.TILING)
    scoring = tiled(slides, 1)  # running without a lease: not stuck, its shard is out
    time.sleep(0.4)
    publisher, jobs, slide_topic = router()
    counts = sweep_stuck(slides, publisher, unpublished_grace_s=3600, stale_queued_s=3600)
    assert counts == {"requeued_stuck": 1}
    assert [(m.job_id, m.task) for m in slide_topic.messages] == [(job.job_id, Task.TILE)] and not jobs.messages
    assert slides.get(job.job_id).state == JobState.QUEUED
    assert slides.get(scoring.job_id).state == JobState.RUNNING
