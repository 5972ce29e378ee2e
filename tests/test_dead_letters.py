"""Dead letters never fail a job that was not really tried (issue 11, item 1), on the emulators.

A message dead-letters when Pub/Sub ran out of delivery attempts. Most refusals say nothing about
the job: its lease is held by a worker still computing, or by one that crashed (until the lease
expires), or the service is busy. The dead-letter route leaves a live lease alone (429: delivered
again later), puts a job that was not really tried back in flight (republished, a bounded number
of times), and fails it as `dead_lettered` only once it was leased MAX_DELIVERY_ATTEMPTS times.

In-process (TestClient, FakeEngine): each decision of the route, and a busy lease not counted as
an attempt. Real processes with the Pub/Sub emulator's dead-letter policy (which it honours:
after N deliveries it forwards the message with `CloudPubSubDeadLetterSourceDeliveryCount`):
a crash with the lease held, a second message dead-lettering while the first worker computes,
and a burst of 30x the queue (pushed 32 at a time by the stack's push stand-in, as Pub/Sub
pushes: the emulator's own push never has more than 2 requests in flight).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from google.cloud import storage  # type: ignore[attr-defined]

from healer.stack.config import StackConfig
from healer_core.schema import ErrorCode, Job, JobError, JobMessage, JobState
from healer_core.store import JobStore, utcnow
from healer_media.blobs import GcsBlobSource
from inference_service.app import create_app
from inference_service.settings import Settings
from tests.fakes import FakeEngine
from tests.processes import PushSubscription, ServiceProcess, TopicTap, UvicornProcess, free_port, wait_for
from tests.service_helpers import envelope, png_bytes, push, wait_ready
from tests.test_service import queued_job

MAX_ATTEMPTS = 5
GIVE_UP_S = 3.0


def events(job: Job) -> list[str]:
    return [e.event for e in job.history]


def state_of(store: JobStore, job_id: str) -> JobState | None:
    job = store.get(job_id)
    return job.state if job else None


def dead_letter(client: TestClient, message: JobMessage, delivery_count: int = MAX_ATTEMPTS) -> int:
    """POST the dead letter Pub/Sub forwards after `delivery_count` deliveries."""
    body = envelope(message)
    body["message"]["attributes"]["CloudPubSubDeadLetterSourceDeliveryCount"] = str(delivery_count)
    body["subscription"] = "projects/healer-test/subscriptions/jobs-dead-letter-push"
    return client.post("/pubsub/dead-letter", json=body).status_code


@pytest.fixture
def tap(emulator_cfg: StackConfig, unique: str) -> Iterator[TopicTap]:
    """The service's jobs topic for this test, with a pull subscription to see republished messages."""
    topic = TopicTap(emulator_cfg.project, f"jobs-dl-{unique}")
    yield topic
    topic.close()


@contextmanager
def service(
    emulator_cfg: StackConfig, store: JobStore, tap: TopicTap, engine: FakeEngine, blobs: Any = None, **env: Any
) -> Iterator[TestClient]:
    """The service in process on `tap`'s topic, with this module's dead-letter limits; ready."""
    settings = Settings(
        PROJECT_ID=emulator_cfg.project,
        BATCH_WINDOW_MS=1,
        JOBS_TOPIC=tap.name,
        MAX_DELIVERY_ATTEMPTS=MAX_ATTEMPTS,
        DEAD_LETTER_GIVE_UP_SECONDS=GIVE_UP_S,
        **env,
    )
    blobs = blobs or GcsBlobSource(emulator_cfg.project)
    with TestClient(create_app(settings, engine=engine, store=store, blobs=blobs)) as client:
        wait_ready(client)
        yield client


# ---- in-process: each decision of the dead-letter route ---------------------------------------


def test_a_dead_letter_leaves_a_live_lease_to_its_holder_whose_verdict_stands(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """A second message dead-letters while the first worker computes: 429 (the dead letter comes
    back later), the job untouched; the holder's verdict is written, then the dead letter is acked."""
    engine = FakeEngine(delay_s=1.5)
    message = queued_job(store, bucket, "computing.png", png_bytes())
    with service(emulator_cfg, store, tap, engine) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(push, client, message)
        wait_for(lambda: state_of(store, message.job_id) == JobState.RUNNING, 10, "the lease")
        running = store.get(message.job_id)
        assert running is not None
        assert dead_letter(client, message) == 429
        held = store.get(message.job_id)
        assert held is not None and held.state == JobState.RUNNING and held.lease == running.lease
        assert first.result(timeout=20) == 204  # the holder's verdict is not fenced off
        assert dead_letter(client, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.DONE and job.verdict is not None
    assert "failed" not in events(job) and job.attempts == 1
    assert tap.pull() == []  # nothing republished
    assert len(engine.calls) == 1


def test_a_crashed_workers_job_waits_for_its_lease_then_goes_back_in_flight(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """The lease of a worker that died: held until it expires, then the job is queued again and
    republished with a fresh delivery budget; the republished message ends in a verdict."""
    message = queued_job(store, bucket, "orphaned.png", png_bytes())
    dead = store.lease(message.job_id, "worker-that-died", lease_seconds=1.5)
    assert dead.job is not None and dead.job.attempts == 1
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        assert dead_letter(client, message) == 429
        time.sleep(1.6)
        assert dead_letter(client, message) == 204
        job = store.get(message.job_id)
        assert job is not None and job.state == JobState.QUEUED and job.lease is None and job.dead_letters == 1
        assert events(job)[-2:] == ["dead_lettered", "published"]
        assert tap.pull() == [message]
        assert push(client, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.DONE and job.attempts == 2 and "failed" not in events(job)


def test_a_job_never_run_is_republished_until_it_gives_up(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """Attempts spent on busy / held answers never lease: each dead letter republishes the job,
    until DEAD_LETTER_GIVE_UP_SECONDS after the first one; the next fails it (a message nobody
    runs cannot loop forever, whatever the retry policy's pace)."""
    message = queued_job(store, bucket, "never-run.png", png_bytes())
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        for round_ in (1, 2):
            assert dead_letter(client, message) == 204
            job = store.get(message.job_id)
            assert job is not None and job.state == JobState.QUEUED and job.dead_letters == round_
            assert tap.pull() == [message]
        first = job.first_dead_letter_at if job else None
        assert first is not None
        wait_for(lambda: (utcnow() - first).total_seconds() > GIVE_UP_S, 10, "the give-up time")
        assert dead_letter(client, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.FAILED and job.error is not None
    assert job.error.code == ErrorCode.DEAD_LETTERED and job.error.retryable
    assert "3 times over" in job.error.message and "without the job being run" in job.error.message
    assert tap.pull() == []


def test_a_job_leased_max_delivery_attempts_times_fails_as_dead_lettered(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """Really tried: leased MAX_DELIVERY_ATTEMPTS times, each handed back on an error."""
    message = queued_job(store, bucket, "poison.png", png_bytes())
    for i in range(MAX_ATTEMPTS):
        lease = store.lease(message.job_id, f"worker-{i}", 300)
        error = JobError(code=ErrorCode.ENGINE_ERROR, message="RuntimeError", retryable=True)
        assert store.release(message.job_id, lease.token, error)
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        assert dead_letter(client, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.FAILED and job.error is not None
    assert job.error.code == ErrorCode.DEAD_LETTERED
    assert f"Leased {MAX_ATTEMPTS} times" in job.error.message and "engine_error" in job.error.message
    assert tap.pull() == []
    # An operator reruns it after a fix (`healer requeue`): a busy dead letter then puts it back
    # in flight instead of failing it again at once.
    assert store.requeue(message.job_id, include_failed=True) is not None
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        assert dead_letter(client, message) == 204
    rerun = store.get(message.job_id)
    assert rerun is not None and rerun.state == JobState.QUEUED and rerun.attempts == 0
    assert tap.pull() == [message]


def test_a_dead_letter_never_touches_a_finished_job(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    done = queued_job(store, bucket, "finished.png", png_bytes())
    rejected = queued_job(store, bucket, "rejected.png", b"%PDF-1.7\n")
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        assert push(client, done) == 204 and push(client, rejected) == 204
        before = [store.get(done.job_id), store.get(rejected.job_id)]
        assert dead_letter(client, done) == 204 and dead_letter(client, rejected) == 204
    after = [store.get(done.job_id), store.get(rejected.job_id)]
    assert after == before
    assert after[0] is not None and after[0].state == JobState.DONE
    assert after[1] is not None and after[1].error is not None and after[1].error.code == ErrorCode.NOT_AN_IMAGE
    assert tap.pull() == []


def test_a_dead_letter_for_an_unknown_job_adopts_it_and_puts_it_in_flight(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """A message published without a job document (replayed by hand): recorded, never dropped."""
    blob = bucket.blob("never-ingested.png")
    blob.upload_from_string(png_bytes(), content_type="image/png")
    message = JobMessage.for_object(bucket.name, blob.name, int(blob.generation))
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        assert dead_letter(client, message) == 204
        job = store.get(message.job_id)
        assert job is not None and job.state == JobState.QUEUED and job.dead_letters == 1
        assert tap.pull() == [message]
        assert push(client, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.DONE


def test_an_unreadable_dead_letter_is_acknowledged(emulator_cfg: StackConfig, store: JobStore, tap: TopicTap) -> None:
    with service(emulator_cfg, store, tap, FakeEngine()) as client:
        response = client.post("/pubsub/dead-letter", json={"message": {"data": "bm90IGpzb24="}})
    assert response.status_code == 204
    assert tap.pull() == []


class GatedBlobs:
    """The emulator's blobs, except that downloading `gated` waits until `gate` is set."""

    def __init__(self, project: str, gated: str) -> None:
        self.inner = GcsBlobSource(project)
        self.gated = gated
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes:
        if name == self.gated:
            self.waiting.set()
            assert self.gate.wait(30)
        return self.inner.download(bucket, name, generation, max_bytes)


def test_a_lease_handed_back_as_busy_is_not_an_attempt(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """The queue filled up (here with a /predict request) while a leased job was downloading: the
    lease is handed back (429) and `attempts` is refunded, so busy answers never count toward
    dead-lettering."""
    engine = FakeEngine(delay_s=1.0)
    blobs = GatedBlobs(emulator_cfg.project, "late.png")
    late = queued_job(store, bucket, "late.png", png_bytes(color=(1, 1, 1)))
    other = queued_job(store, bucket, "other.png", png_bytes(color=(2, 2, 3)))

    def predict(client: TestClient) -> int:
        files = {"image_file": ("tile.png", png_bytes(color=(9, 9, 9)), "image/png")}
        return client.post("/predict", files=files).status_code

    with (
        service(emulator_cfg, store, tap, engine, blobs, MAX_QUEUE=1, MAX_BATCH_SIZE=1) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        batcher = client.app.state.runtime.inference.batcher  # type: ignore[attr-defined]
        late_status = pool.submit(push, client, late)
        assert blobs.waiting.wait(10)  # leased, now downloading
        running = pool.submit(push, client, other)
        wait_for(lambda: engine.calls, 10, "the first batch")
        queued = pool.submit(predict, client)
        wait_for(lambda: batcher.waiting == 1, 10, "a full queue")
        blobs.gate.set()
        assert late_status.result(timeout=20) == 429
        assert running.result(timeout=20) == 204 and queued.result(timeout=20) == 200
    job = store.get(late.job_id)
    assert job is not None and job.state == JobState.QUEUED and job.lease is None
    assert job.error is not None and job.error.code == ErrorCode.BUSY
    assert events(job) == ["created", "leased", "released"]
    assert job.attempts == 0


def test_push_deliveries_past_the_door_are_bounded_by_the_queue_and_one_batch(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, tap: TopicTap
) -> None:
    """12 concurrent pushes: at most MAX_QUEUE + MAX_BATCH_SIZE lease their jobs; the rest are
    refused (429) before touching Firestore, so a crash loses no more leases than that."""
    engine = FakeEngine(delay_s=3.0)  # every push arrives while the first batch runs
    messages = [queued_job(store, bucket, f"door-{i}.png", png_bytes(color=(i, 5, 5))) for i in range(12)]
    with (
        service(emulator_cfg, store, tap, engine, MAX_QUEUE=2, MAX_BATCH_SIZE=2) as client,
        ThreadPoolExecutor(len(messages)) as pool,
    ):
        statuses = list(pool.map(lambda m: push(client, m), messages))
    jobs = [j for m in messages if (j := store.get(m.job_id)) is not None]
    leased = [j for j in jobs if "leased" in events(j)]
    assert 1 <= len(leased) <= 4 and set(statuses) == {204, 429}, statuses
    # Refused at the door: not even read from Firestore's point of view, nothing written.
    assert all(events(j) == ["created"] and j.attempts == 0 for j in jobs if j not in leased)
    # Past it: a verdict (one attempt), or, when a partly filled batch left the queue full, handed
    # back as busy with the attempt refunded.
    for job in leased:
        busy = job.error is not None and job.error.code == ErrorCode.BUSY
        assert (job.state == JobState.DONE and job.attempts == 1) or (busy and job.attempts == 0), job


# ---- real processes and the Pub/Sub emulator's dead-letter policy ---------------------------------


def wait_terminal(store: JobStore, job_id: str, timeout_s: float) -> Job:
    def check() -> Job | None:
        job = store.get(job_id)
        return job if job is not None and job.state.terminal else None

    result: Job = wait_for(check, timeout_s, f"job {job_id} to finish", every_s=0.5)
    return result


def logged_actions(log_path: Path) -> list[str]:
    """The dead-letter route's decisions, from the service's JSON log."""
    import json

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [line["action"] for line in lines if line.get("logger") == "healer.pubsub" and "action" in line]


def jobs_worker(
    processes: list[UvicornProcess], store: JobStore, topic: str, log_path: Path, port: int = 0, **env: Any
) -> ServiceProcess:
    """The service on the test's jobs collection, republishing dead letters to its jobs `topic`
    (on `port`, or a free one); killed at the end of the test."""
    worker = ServiceProcess(port or free_port(), store.collection.id, log_path, JOBS_TOPIC=topic, **env)
    processes.append(worker)
    return worker


def dead_lettering(cfg: StackConfig, topic: str, worker: UvicornProcess, **policy: Any) -> PushSubscription:
    """A per-test jobs `topic` pushed to `worker`, wired as terraform/pubsub.tf wires the jobs
    subscription: after MAX_ATTEMPTS deliveries a message goes to the worker's dead-letter route.
    `policy`: the subscriptions' backoffs, the push concurrency."""
    return PushSubscription(
        cfg.project,
        topic,
        f"{worker.url}/pubsub/push",
        dead_letter_endpoint=f"{worker.url}/pubsub/dead-letter",
        max_delivery_attempts=MAX_ATTEMPTS,
        ack_deadline_s=60,
        **policy,
    )


def first_lease(store: JobStore, bucket: storage.Bucket, subscription: PushSubscription, name: str) -> JobMessage:
    """A queued job for a fresh image `name`, published, once a worker leased it."""
    message = queued_job(store, bucket, name, png_bytes())
    subscription.publish(message)
    wait_for(lambda: state_of(store, message.job_id) == JobState.RUNNING, 30, "the first lease")
    return message


@pytest.mark.slow
def test_a_crash_with_the_lease_held_ends_in_a_verdict_not_a_dead_letter(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, processes: list[UvicornProcess], tmp_path: Path
) -> None:
    """The production timing chain (lease 300 s; 5 attempts, backoff from 10 s: dead-lettered after
    ~85 s) shortened proportionally: lease 30 s, 5 attempts, backoff 1-30 s (the emulator
    dead-letters after ~15 s). The service is SIGKILLed mid-job; its successor answers every
    redelivery 429 (lease held) until the message dead-letters while the lease is still live.
    The job must end done, run a second time after the lease expired, never dead_lettered."""
    port = free_port()
    topic = f"jobs-crash-{store.collection.id}"
    env = {"LEASE_SECONDS": 30, "INFERENCE_BUDGET_SECONDS": 12, "MAX_DELIVERY_ATTEMPTS": 5}
    doomed = jobs_worker(processes, store, topic, tmp_path / "doomed.log", port, FAKE_ENGINE_DELAY_S=120, **env)
    subscription = dead_lettering(emulator_cfg, topic, doomed, backoff=(1, 30))
    try:
        message = first_lease(store, bucket, subscription, "crashed.png")
        doomed.signal(signal.SIGKILL)
        doomed.proc.wait(5)
        successor_log = tmp_path / "successor.log"
        jobs_worker(processes, store, topic, successor_log, port, **env)
        job = wait_terminal(store, message.job_id, 150)
    finally:
        subscription.close()
    assert job.state == JobState.DONE and job.verdict is not None, job.error
    assert job.attempts == 2 and events(job).count("done") == 1 and "failed" not in events(job)
    # The scenario really happened: the message dead-lettered while the lease was live, and was
    # put back in flight once it expired.
    actions = logged_actions(successor_log)
    assert "held" in actions and "republish" in actions, actions
    assert "dead_lettered" in events(job)


@pytest.mark.slow
def test_a_second_message_dead_lettering_while_the_first_worker_computes_keeps_its_verdict(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, processes: list[UvicornProcess], tmp_path: Path
) -> None:
    """Two messages for one job (duplicate events do that): the second is refused (lease held) on
    every delivery and dead-letters while the first worker still computes. The first worker's
    verdict must be written, not fenced off by a failure."""
    topic = f"jobs-second-{store.collection.id}"
    log_path = tmp_path / "service.log"
    worker = jobs_worker(
        processes, store, topic, log_path, FAKE_ENGINE_DELAY_S=8, LEASE_SECONDS=60, INFERENCE_BUDGET_SECONDS=24
    )
    # No retry policy on the jobs subscription: Pub/Sub redelivers at once, so the second message's
    # five deliveries are spent in a moment; the dead-letter subscription retries every 1-2 s.
    subscription = dead_lettering(emulator_cfg, topic, worker, dead_letter_backoff=(1, 2))
    try:
        message = first_lease(store, bucket, subscription, "twice.png")
        subscription.publish(message)
        job = wait_terminal(store, message.job_id, 60)
        assert job.state == JobState.DONE and job.verdict is not None, job.error
        # The second message did dead-letter under the live lease, and was acknowledged afterwards.
        wait_for(lambda: "settled" in logged_actions(log_path), 30, "the dead letter acknowledged")
    finally:
        subscription.close()
    assert logged_actions(log_path)[0] == "held"
    assert job.attempts == 1 and events(job).count("leased") == 1 and "failed" not in events(job)


@pytest.mark.slow
def test_a_burst_of_thirty_times_the_queue_all_ends_done(
    emulator_cfg: StackConfig, store: JobStore, bucket: storage.Bucket, processes: list[UvicornProcess], tmp_path: Path
) -> None:
    """Backpressure: 60 jobs published at once to one instance with MAX_QUEUE=2 (batches of 2, 0.5 s
    each), pushed 32 at a time as Pub/Sub pushes. Most deliveries are refused (busy, 429) and many
    messages run out of their 5 attempts; every job still ends done, with exactly one verdict and
    one counted attempt (busy answers never count)."""
    topic = f"jobs-burst-{store.collection.id}"
    log_path = tmp_path / "service.log"
    worker = jobs_worker(
        processes,
        store,
        topic,
        log_path,
        FAKE_ENGINE_DELAY_S=0.5,
        MAX_QUEUE=2,
        MAX_BATCH_SIZE=2,
        MAX_DELIVERY_ATTEMPTS=5,
    )
    subscription = dead_lettering(emulator_cfg, topic, worker, backoff=(1, 10), concurrency=32)
    try:
        messages = [queued_job(store, bucket, f"burst-{i}.png", png_bytes(color=(i, 9, 9))) for i in range(60)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(subscription.publish, messages))
        jobs = [wait_terminal(store, m.job_id, 240) for m in messages]
    finally:
        subscription.close()
    assert [j.state for j in jobs] == [JobState.DONE] * len(jobs), [j.error for j in jobs if j.error]
    assert all(events(j).count("done") == 1 and "failed" not in events(j) for j in jobs)
    assert all(j.attempts == 1 for j in jobs), sorted(j.attempts for j in jobs)
    republished = sum(j.dead_letters for j in jobs)
    assert republished > 0, "no message ran out of attempts: the burst did not test the dead-letter path"
    assert requests.get(f"{worker.url}/healthz", timeout=5).status_code == 200
