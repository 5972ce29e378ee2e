"""The slide report in one process, on the real emulators (tests/slides/pipeline.py, FakeEngine):
finalize writes the verdict with `report: pending` and its chosen tiles, a `report` task goes to the
jobs topic, the inference service reads exactly those tiles from the shard objects and writes the
report under its own lease. Faults release it, duplicates write it once, dead letters fail it, the
switch turns it off, and the sweep recovers a lost message, a lost publish and a dead worker."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from healer_ingest.report_sweep import sweep_reports

from healer_core.publisher import Publisher
from healer_core.report_store import ReportStore, report_of
from healer_core.schema import Job, JobMessage, JobState, Report, ReportStatus, Task
from healer_core.slide_store import StepStatus
from healer_core.store import JobStore
from healer_core.topics import topic_router
from inference_service.engine.prompt import REPORT_PROMPT_VERSION
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.fakes import FakeEngine, image_p_yes
from tests.slides.pipeline import Pipeline, pipeline, wait_until

PATCHES = 6  # of ~30 tissue tiles: 3 top tiles and 3 sampled ones


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> SynthSlide:
    """4096 x 3072 at 0.5 µm/px: 224 px tiles at 1 µm/px are 448 px on it, ~30 of them tissue."""
    folder = tmp_path_factory.mktemp("report-flow")
    return synth.write_slide(folder / "case-1.svs", sample_paths, width=4096, height=3072, mpp=0.5)


def report(p: Pipeline, job_id: str) -> Report:
    found = report_of(p.job(job_id))
    assert found is not None, "no slide verdict"
    return found


def verdict_only(job: Job) -> dict[str, Any]:
    """The verdict without its report: what the report must never change."""
    assert job.verdict is not None
    return job.verdict.model_dump(exclude={"slide": {"report"}})


def to_verdict(p: Pipeline, job_id: str, timeout_s: float = 120.0) -> Job:
    """Deliver everything but report tasks until the verdict is written (report tasks are held
    back: nacked, for the test to take with `report_message`)."""
    deadline = time.monotonic() + timeout_s
    while not p.job(job_id).state.terminal:
        assert time.monotonic() < deadline, f"no verdict: {p.job(job_id).slide}"
        delivered = 0
        for topic in (p.slides, p.jobs):
            for received in topic.pull():
                message = JobMessage.from_data(received.message.data)
                if message.task == Task.REPORT:
                    topic.settle(received, acked=False)
                    continue
                topic.settle(received, acked=200 <= p.deliver(message) < 300)
                delivered += 1
        if not delivered:
            time.sleep(0.1)
    job = p.job(job_id)
    assert job.state == JobState.DONE, job.error
    return job


def waiting(p: Pipeline, topic: str) -> list[JobMessage]:
    """What is (or is about to be) on a topic, taken off it."""
    found: list[JobMessage] = wait_until((p.jobs if topic == "jobs" else p.slides).drain, 30, f"a {topic} message")
    return found


def report_message(p: Pipeline) -> JobMessage:
    (message,) = waiting(p, "jobs")
    assert message.task == Task.REPORT
    return message


def pump_until_reported(p: Pipeline, job_id: str, timeout_s: float = 60.0) -> Report:
    deadline = time.monotonic() + timeout_s
    while report(p, job_id).status == ReportStatus.PENDING:
        assert time.monotonic() < deadline, report(p, job_id)
        if not p.pump_once():
            time.sleep(0.1)
    return report(p, job_id)


def test_the_report_follows_the_verdict_with_the_chosen_tiles(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    with pipeline(emulator_cfg.project, store, unique, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        job = to_verdict(p, message.job_id)
        pending = report(p, message.job_id)
        # At the verdict: pending, the tiles chosen by the rule, the job finished and unleased.
        assert pending.status == ReportStatus.PENDING and pending.patches == len(pending.tiles) == PATCHES
        assert pending.published_at is not None and pending.lease is None and pending.attempts == 0
        assert job.lease is None and job.verdict is not None and p.engine.reports == []
        shards = {s.n: s for s in p.store.shards(message.job_id)}
        all_scores = {t.index: sc for s in shards.values() for t, sc in zip(s.tiles, s.scores or [], strict=True)}
        top = sorted(all_scores, key=lambda i: (-all_scores[i], i))[: PATCHES // 2]
        assert sorted(t.index for t in pending.tiles if t.top) == sorted(top)
        assert [t.index for t in pending.tiles] == sorted(t.index for t in pending.tiles)  # slide order
        for tile in pending.tiles:  # each recorded where its shard has it, with its score
            ref = next(r for r in shards[tile.shard].tiles if r.index == tile.index)
            assert (ref.x, ref.y, ref.w, ref.h) == (tile.x, tile.y, tile.w, tile.h)
            assert tile.p_yes == all_scores[tile.index]

        done = pump_until_reported(p, message.job_id)
        after = p.job(message.job_id)
    assert done.status == ReportStatus.DONE and done.text == f"Fake report of {PATCHES} patches."
    assert (done.model_id, done.model_revision, done.prompt_version) == ("fake/engine", "fake-1", REPORT_PROMPT_VERSION)
    assert done.patches == PATCHES and done.lease is None and done.attempts == 1 and done.error == ""
    assert done.finished_at is not None and done.tiles == pending.tiles
    # The engine got exactly the recorded tiles, in prompt order: FakeEngine scored each tile by a
    # hash of its pixels, so the same pixels give the same p_yes.
    (images,) = p.engine.report_inputs
    assert [image_p_yes(im) for im in images] == [t.p_yes for t in pending.tiles]
    # The verdict, the job's state and its lease are the verdict's, untouched.
    assert verdict_only(after) == verdict_only(job) and after.state == JobState.DONE and after.lease is None
    events = [e.event for e in after.history]
    assert events.count("done") == 1 and events.count("report_leased") == 1 and events.count("report_done") == 1


def test_an_engine_fault_releases_the_report_for_a_retry(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    engine = FakeEngine(report_failures=1)
    with pipeline(emulator_cfg.project, store, unique, engine=engine, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        job = to_verdict(p, message.job_id)
        task = report_message(p)
        assert p.deliver(task) == 503  # Pub/Sub redelivers
        released = report(p, message.job_id)
        assert released.status == ReportStatus.PENDING and released.lease is None and released.attempts == 1
        assert released.error == "The model failed writing the report (FakeEngineError)."
        assert p.deliver(task) == 204
        done = report(p, message.job_id)
        after = p.job(message.job_id)
    assert done.status == ReportStatus.DONE and done.attempts == 2 and done.error == ""
    assert engine.reports == [PATCHES, PATCHES]
    assert verdict_only(after) == verdict_only(job)
    assert [e.event for e in after.history].count("report_released") == 1


def test_duplicate_deliveries_write_exactly_one_report(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    engine = FakeEngine(report_delay_s=1.0)  # both deliveries arrive while the first one runs
    with pipeline(emulator_cfg.project, store, unique, engine=engine, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        to_verdict(p, message.job_id)
        task = report_message(p)
        # Another instance holds the report: this one answers 429 (Pub/Sub redelivers later).
        other = ReportStore.of(p.store).lease_report(message.job_id, "other-instance", 60)
        assert p.deliver(task) == 429 and engine.reports == []
        assert ReportStore.of(p.store).release_report(message.job_id, other.token, "it went away", "test")
        with ThreadPoolExecutor(4) as pool:
            statuses = sorted(pool.map(p.deliver, [task] * 4))
        late = [p.deliver(task) for _ in range(2)]  # after it is written: acknowledged, nothing runs
        after = p.job(message.job_id)
    assert statuses[0] == 204 and set(statuses) <= {204, 429}, statuses  # 429: held (or the slot taken)
    assert late == [204, 204]
    assert engine.reports == [PATCHES]  # the model ran once
    assert report_of(after).status == ReportStatus.DONE and report_of(after).attempts == 2  # other's + ours
    assert [e.event for e in after.history].count("report_done") == 1


def test_a_worker_whose_report_lease_expired_writes_nothing(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    with pipeline(emulator_cfg.project, store, unique, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        to_verdict(p, message.job_id)
        reports = ReportStore.of(p.store)
        stale = reports.lease_report(message.job_id, "worker-a", 0.2)
        assert stale.status == StepStatus.ACQUIRED
        assert reports.lease_report(message.job_id, "worker-b", 60).status == StepStatus.HELD
        time.sleep(0.3)
        fresh = reports.lease_report(message.job_id, "worker-b", 60)
        assert fresh.status == StepStatus.ACQUIRED and fresh.report.attempts == 2
        late = Report(text="late", model_id="m", prompt_version="p", patches=1)
        assert not reports.finish_report(message.job_id, stale.token, late)
        assert not reports.release_report(message.job_id, stale.token, "x", "x")
        assert not reports.fail_report(message.job_id, stale.token, "x", "x")
        assert not reports.extend_report_lease(message.job_id, stale.token, 60)
        assert reports.finish_report(message.job_id, fresh.token, late.model_copy(update={"text": "fresh"}))
        assert report(p, message.job_id).text == "fresh"
        assert reports.lease_report(message.job_id, "worker-c", 60).status == StepStatus.TERMINAL


def test_a_dead_letter_fails_a_tried_report_and_republishes_an_untried_one(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    engine = FakeEngine(report_failures=99)
    env = {"MAX_DELIVERY_ATTEMPTS": 2}
    with pipeline(emulator_cfg.project, store, unique, engine, env, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        job = to_verdict(p, message.job_id)
        task = report_message(p)
        # Never tried (refused while busy, say): back in flight, with a fresh message.
        assert p.deliver(task, route="dead-letter") == 204
        back = report(p, message.job_id)
        assert back.status == ReportStatus.PENDING and back.dead_letters == 1 and back.published_at is not None
        assert [m.task for m in waiting(p, "jobs")] == [Task.REPORT]
        # Tried as often as the subscription delivers: failed, with the reason, the verdict standing.
        assert [p.deliver(task) for _ in range(2)] == [503, 503]
        assert p.deliver(task, route="dead-letter") == 204
        failed = report(p, message.job_id)
        after = p.job(message.job_id)
        assert p.deliver(task, route="dead-letter") == 204  # again: settled, nothing changes
        assert p.deliver(task) == 204  # a late delivery: acknowledged, not run
    assert failed.status == ReportStatus.FAILED and failed.lease is None and failed.finished_at is not None
    assert failed.error == (
        "The report's message ran out of delivery attempts after 2 attempt(s) (last error: The model failed"
        " writing the report (FakeEngineError).); the slide's verdict stands."
    )
    assert engine.reports == [PATCHES, PATCHES]
    assert after.state == JobState.DONE and verdict_only(after) == verdict_only(job)
    assert report_of(p.job(message.job_id)) == failed


def test_a_report_the_service_cannot_take_fails_with_the_reason(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    env = {"SLIDE_REPORT_PATCHES": 4}  # below the slide service's 6: the two disagree
    with pipeline(emulator_cfg.project, store, unique, None, env, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        to_verdict(p, message.job_id)
        assert p.deliver(report_message(p)) == 204
        failed = report(p, message.job_id)
    assert failed.status == ReportStatus.FAILED and p.engine.reports == []
    assert failed.error == (
        "The report has 6 tiles; the inference service takes at most 4 (SLIDE_REPORT_PATCHES must be the same"
        " on both services)."
    )


def test_tiles_gone_from_the_work_bucket_fail_the_report_not_the_verdict(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    with pipeline(emulator_cfg.project, store, unique, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        job = to_verdict(p, message.job_id)
        gone = report(p, message.job_id).tiles[0].shard
        p.work.blob(f"shards/{message.job_id}/{gone:05d}.tar").delete()  # the lifecycle rule's doing
        assert p.deliver(report_message(p)) == 204
        failed = report(p, message.job_id)
        after = p.job(message.job_id)
    assert failed.status == ReportStatus.FAILED and f"Shard {gone}'s object is gone" in failed.error
    assert after.state == JobState.DONE and verdict_only(after) == verdict_only(job)


def test_the_switch_off_means_no_report_and_no_message(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    with pipeline(emulator_cfg.project, store, unique, SLIDE_REPORT_PATCHES=0) as p:
        message = p.upload(small_slide.path)
        job = to_verdict(p, message.job_id)
        assert p.tasks_waiting() == []  # no report task (and nothing else) left behind
    off = report_of(job)
    assert off is not None and off.status == ReportStatus.OFF and off.tiles == [] and off.published_at is None
    assert p.engine.reports == []


class DropReports:
    """A publisher whose report messages never arrive (raises, as a publish that failed)."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner

    def publish(self, message: JobMessage) -> str:
        if message.task == Task.REPORT:
            raise RuntimeError("publish failed")
        return self.inner.publish(message)


def test_the_sweep_recovers_a_lost_message_a_lost_publish_and_a_dead_worker(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    with pipeline(emulator_cfg.project, store, unique, SLIDE_REPORT_PATCHES=PATCHES) as p:
        router = topic_router(p.project, p.jobs.name, p.slides.name)

        def sweep(**grace: float) -> dict[str, int]:
            return dict(sweep_reports(p.store, router, **({"unpublished_grace_s": 0, "stale_s": 3600} | grace)))

        # 1. The report message lost after its publish: republished once it has been quiet for stale_s.
        lost = p.upload(small_slide.path, name="lab/lost.svs")
        to_verdict(p, lost.job_id)
        assert report_message(p).job_id == lost.job_id  # lost
        assert sweep() == {}  # not stale yet
        assert sweep(stale_s=0) == {"report_republished_stale": 1}
        assert pump_until_reported(p, lost.job_id).status == ReportStatus.DONE

        # 2. The publish after the verdict fails: the finalize answers 503 and its redelivery
        #    publishes; with that finalize lost too, the sweep publishes it.
        slide_app: Any = p.slide.app
        runtime = slide_app.state.runtime
        runtime.publisher = DropReports(runtime.publisher)
        unpublished = p.upload(small_slide.path, name="lab/unpublished.svs")
        to_verdict(p, unpublished.job_id)
        assert ("finalize", 503) in p.statuses
        assert report(p, unpublished.job_id).published_at is None
        assert [m.task for m in waiting(p, "slides")] == [Task.FINALIZE]  # its redelivery, lost
        assert sweep() == {"report_published": 1}
        assert pump_until_reported(p, unpublished.job_id).status == ReportStatus.DONE
        runtime.publisher = runtime.publisher.inner

        # 3. The worker died holding the report's lease: retaken once the lease expired.
        dead = p.upload(small_slide.path, name="lab/dead.svs")
        to_verdict(p, dead.job_id)
        report_message(p)  # it was being handled by the worker that died
        lease = ReportStore.of(p.store).lease_report(dead.job_id, "dead-worker", 0.2)
        assert lease.status == StepStatus.ACQUIRED
        assert sweep(stale_s=0) == {}  # a live lease: left to its holder
        time.sleep(0.3)
        assert sweep() == {"report_retaken": 1}
        done = pump_until_reported(p, dead.job_id)
    assert done.status == ReportStatus.DONE and done.attempts == 2


def test_a_slow_report_keeps_its_lease_alive(
    emulator_cfg: Any, store: JobStore, unique: str, small_slide: SynthSlide
) -> None:
    """LEASE_SECONDS 3 and a 7 s report: the heartbeat renews the report lease (every second), so
    no second worker takes it meanwhile, and the report is written by the first."""
    engine = FakeEngine(report_delay_s=7.0)
    env = {"LEASE_SECONDS": 3, "INFERENCE_BUDGET_SECONDS": 2}
    with pipeline(emulator_cfg.project, store, unique, engine, env, SLIDE_REPORT_PATCHES=PATCHES) as p:
        message = p.upload(small_slide.path)
        to_verdict(p, message.job_id)
        task = report_message(p)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(p.deliver, task)
            wait_until(lambda: report(p, message.job_id).lease is not None, 30, "the report lease")
            time.sleep(4.5)  # past the first lease's expiry
            taken = ReportStore.of(p.store).lease_report(message.job_id, "intruder", 60)
            assert first.result(timeout=60) == 204
    assert taken.status == StepStatus.HELD
    assert report_of(p.job(message.job_id)).status == ReportStatus.DONE and engine.reports == [PATCHES]
