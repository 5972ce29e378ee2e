"""The slide store's guarantees on the Firestore emulator: one tiler, fenced shard documents and
hand-off, each shard counted once (200 shards finishing at once from 16 workers, every one
delivered twice), one finalize claim, one verdict, and the requeue and dead-letter rules."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from healer_core.ids import job_id_for
from healer_core.schema import ErrorCode, Job, JobError, JobKind, JobState, Shard, Slide, SlideStage, TileRef, Verdict
from healer_core.slide_store import DeadShard, Provenance, SlideStore, StepStatus
from healer_core.store import JobStore

pytestmark = pytest.mark.emulator

MODEL = Provenance("fake/engine", "fake-1", "none", "v1")


def slide_job(store: SlideStore, name: str = "case.svs") -> Job:
    job = Job(
        job_id=job_id_for("inbox", name, 1), bucket="inbox", name=name, generation=1, kind=JobKind.SLIDE, slide=Slide()
    )
    created, stored = store.create(job)
    assert created
    return stored


def shards_of(count: int, tiles: int = 2) -> list[Shard]:
    return [
        Shard(
            n=n,
            object=f"gs://work/shards/x/{n:05d}.tar",
            tiles=[TileRef(index=n * tiles + k, x=k, y=n, w=1, h=1) for k in range(tiles)],
        )
        for n in range(count)
    ]


def tiled(store: SlideStore, count: int, tiles: int = 2) -> Job:
    """A slide handed off to scoring with `count` shards of `tiles` tiles."""
    job = slide_job(store)
    lease = store.lease_stage(job.job_id, "tiler", 60, SlideStage.TILING)
    assert store.write_shards(job.job_id, lease.token, shards_of(count, tiles))
    assert store.hand_off(job.job_id, lease.token, Slide(tiles_total=count * tiles, shards_total=count))
    return store.get(job.job_id)


@pytest.fixture
def slides(store: JobStore) -> SlideStore:
    return SlideStore.of(store)


def test_one_tiler_among_sixteen_and_a_dead_tilers_writes_are_fenced(slides: SlideStore) -> None:
    racing = slide_job(slides, "race.svs")
    with ThreadPoolExecutor(16) as pool:
        leases = list(pool.map(lambda i: slides.lease_stage(racing.job_id, f"w{i}", 60, SlideStage.TILING), range(16)))
    assert [lease.status for lease in leases].count(StepStatus.ACQUIRED) == 1
    assert {lease.status for lease in leases} <= {StepStatus.ACQUIRED, StepStatus.HELD}
    job = slide_job(slides)
    dead = slides.lease_stage(job.job_id, "dead", 0.3, SlideStage.TILING)
    time.sleep(0.5)  # the first tiler's lease expires: it died
    second = slides.lease_stage(job.job_id, "successor", 60, SlideStage.TILING)
    assert second.status == StepStatus.ACQUIRED and second.job.attempts == 2
    assert not slides.extend_lease(job.job_id, dead.token, 60)
    assert not slides.write_shards(job.job_id, dead.token, shards_of(3))
    assert not slides.hand_off(job.job_id, dead.token, Slide(tiles_total=6, shards_total=3))
    assert slides.shards(job.job_id) == []
    assert slides.write_shards(job.job_id, second.token, shards_of(3))
    assert slides.hand_off(job.job_id, second.token, Slide(tiles_total=6, shards_total=3))
    stored = slides.get(job.job_id)
    assert stored.state == JobState.RUNNING and stored.lease is None and stored.slide.stage == SlideStage.SCORING
    # A redelivered `tile` message now finds nothing to do; a `finalize` is not due before the shards.
    assert slides.lease_stage(job.job_id, "late", 60, SlideStage.TILING).status == StepStatus.NOT_DUE
    assert slides.lease_stage(job.job_id, "early", 60, SlideStage.FINALIZING).status == StepStatus.NOT_DUE


def test_two_hundred_shards_from_sixteen_workers_each_delivered_twice_count_once(slides: SlideStore) -> None:
    job = tiled(slides, 200, tiles=3)
    with ThreadPoolExecutor(16) as pool:
        leases = dict(pool.map(lambda n: (n, slides.lease_shard(job.job_id, n, f"w{n % 16}", 300)), range(200)))
    assert {lease.status for lease in leases.values()} == {StepStatus.ACQUIRED}

    def complete(n: int) -> bool:
        return slides.complete_shard(job.job_id, n, leases[n].token, [0.1, 0.5, 0.9], MODEL, 5.0)

    with ThreadPoolExecutor(16) as pool:  # every shard's completion twice, all at once
        counted = list(pool.map(complete, [n for n in range(200) for _ in range(2)]))
    assert sum(counted) == 200
    slide = slides.get(job.job_id).slide
    assert (slide.shards_done, slide.tiles_scored) == (200, 600) == (slide.shards_total, slide.tiles_total)
    assert all(s.state == JobState.DONE and s.scores == [0.1, 0.5, 0.9] for s in slides.shards(job.job_id))
    with ThreadPoolExecutor(16) as pool:
        claims = list(pool.map(lambda _: slides.claim_finalize(job.job_id), range(16)))
    assert sum(claims) == 1 and slides.get(job.job_id).slide.stage == SlideStage.FINALIZING


def test_a_shard_whose_lease_expired_cannot_be_counted_by_its_old_worker(slides: SlideStore) -> None:
    job = tiled(slides, 2)
    dead = slides.lease_shard(job.job_id, 0, "dead", 0.3)
    assert slides.lease_shard(job.job_id, 0, "other", 300).status == StepStatus.HELD
    time.sleep(0.5)
    live = slides.lease_shard(job.job_id, 0, "successor", 300)
    assert live.status == StepStatus.ACQUIRED and live.shard.attempts == 2
    assert not slides.complete_shard(job.job_id, 0, dead.token, [0.2, 0.2], MODEL, 1.0)
    assert slides.complete_shard(job.job_id, 0, live.token, [0.3, 0.3], MODEL, 1.0)
    assert not slides.complete_shard(job.job_id, 0, live.token, [0.3, 0.3], MODEL, 1.0)  # once
    assert slides.lease_shard(job.job_id, 0, "late", 300).status == StepStatus.TERMINAL
    assert slides.get(job.job_id).slide.shards_done == 1
    assert not slides.claim_finalize(job.job_id)  # shard 1 is not in yet


def test_one_verdict_per_slide(slides: SlideStore) -> None:
    job = tiled(slides, 1)
    shard = slides.lease_shard(job.job_id, 0, "w", 300)
    slides.complete_shard(job.job_id, 0, shard.token, [0.7, 0.8], MODEL, 1.0)
    assert slides.claim_finalize(job.job_id)
    with ThreadPoolExecutor(8) as pool:
        leases = list(pool.map(lambda i: slides.lease_stage(job.job_id, f"f{i}", 60, SlideStage.FINALIZING), range(8)))
    (winner,) = [lease for lease in leases if lease.status == StepStatus.ACQUIRED]
    verdict = Verdict(answer="yes", p_yes=0.75, model_id="m", prompt_version="p")
    assert slides.finish_slide(job.job_id, winner.token, verdict)
    assert not slides.finish_slide(job.job_id, winner.token, verdict)
    done = slides.get(job.job_id)
    assert done.state == JobState.DONE and done.slide.stage == SlideStage.DONE
    assert [e.event for e in done.history].count("done") == 1
    assert slides.lease_stage(job.job_id, "late", 60, SlideStage.FINALIZING).status == StepStatus.TERMINAL


def test_requeue_retakes_a_dead_tiling_never_a_scoring_slide_and_restarts_a_failed_one(slides: SlideStore) -> None:
    tiling = slide_job(slides, "tiling.svs")
    slides.lease_stage(tiling.job_id, "dead", 0.2, SlideStage.TILING)
    time.sleep(0.4)
    assert slides.requeue(tiling.job_id, stuck_only=True).state == JobState.QUEUED
    scoring = tiled(slides, 2)
    assert slides.requeue(scoring.job_id, stuck_only=True) is None  # no lease, but its shards are out
    assert slides.requeue(scoring.job_id) is None
    slides.fail_unless_done(scoring.job_id, JobError(code=ErrorCode.DEAD_LETTERED, message="x", retryable=True))
    again = slides.requeue(scoring.job_id, include_failed=True)
    assert again is not None
    restarted = slides.get(scoring.job_id).slide
    assert (restarted.stage, restarted.shards_total, restarted.shards_done) == (SlideStage.TILING, 0, 0)
    retiling = slides.lease_stage(scoring.job_id, "t", 60, SlideStage.TILING)
    assert retiling.status == StepStatus.ACQUIRED
    assert slides.write_shards(scoring.job_id, retiling.token, shards_of(1))  # fewer shards this time
    assert [s.n for s in slides.shards(scoring.job_id)] == [0]  # the earlier run's extra shard is gone


def test_dead_shard_messages_are_put_back_unless_really_tried(slides: SlideStore) -> None:
    job = tiled(slides, 3)
    settle = slides.settle_dead_shard
    assert settle(job.job_id, 0, max_attempts=2, give_up_after_s=3600) == DeadShard.REPUBLISH  # never leased: refused
    live = slides.lease_shard(job.job_id, 1, "w", 300)
    assert settle(job.job_id, 1, max_attempts=2, give_up_after_s=3600) == DeadShard.HELD
    slides.release_shard(job.job_id, 1, live.token, JobError(code=ErrorCode.ENGINE_ERROR, message="x"))
    again = slides.lease_shard(job.job_id, 1, "w", 300)
    slides.release_shard(job.job_id, 1, again.token, JobError(code=ErrorCode.ENGINE_ERROR, message="x"))
    assert settle(job.job_id, 1, max_attempts=2, give_up_after_s=3600) == DeadShard.FAILED  # tried twice
    done = slides.lease_shard(job.job_id, 2, "w", 300)
    slides.complete_shard(job.job_id, 2, done.token, [0.1, 0.1], MODEL, 1.0)
    assert settle(job.job_id, 2, max_attempts=2, give_up_after_s=3600) == DeadShard.SETTLED
    for _ in range(2):  # refused again and again, within the give-up time: back in flight each time
        assert settle(job.job_id, 0, max_attempts=9, give_up_after_s=3600) == DeadShard.REPUBLISH
    # The loop is bounded in time from the first dead letter (as a job's is).
    assert settle(job.job_id, 0, max_attempts=9, give_up_after_s=0) == DeadShard.FAILED
