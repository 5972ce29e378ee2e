"""Nothing lost, exactly one verdict (issue 4), on the real emulators.

In-process (TestClient, slow FakeEngine): redelivery while running, backpressure.
Real processes (uvicorn + tests/reliability_app.py): SIGTERM mid-batch, SIGKILL mid-inference
with redelivery by the Pub/Sub emulator's push subscription.
The whole local stack (`stack_cfg`): 20 copies of one event, reconciliation of events lost
while the Eventarc stand-in is paused, the stuck-job sweep, and what the logs may hold.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from google.cloud import storage  # type: ignore[attr-defined]

from healer.stack.config import StackConfig
from healer.stack.eventarc import deliver
from healer_core.ids import job_id_for
from healer_core.schema import Job, JobMessage, JobState
from healer_core.store import JobStore, new_client
from healer_media.blobs import GcsBlobSource
from inference_service.app import create_app
from inference_service.settings import Settings
from tests.fakes import FakeEngine
from tests.log_privacy import BYTES_MARKER, PATIENT, assert_no_name_or_bytes, captured_logs, marked_png
from tests.processes import PushSubscription, ServiceProcess, free_port, wait_for
from tests.service_helpers import push, wait_ready
from tests.test_service import queued_job

REPO = Path(__file__).resolve().parents[1]


def events(job: Job) -> list[str]:
    return [e.event for e in job.history]


@pytest.fixture(autouse=True)
def no_names_or_bytes_in_logs() -> Iterator[None]:
    """Every log record this module's in-process code writes, as the JSON line it becomes, is
    free of object names and image bytes (item 13; subprocess logs are checked at the end)."""
    with captured_logs() as capture:
        yield
    assert_no_name_or_bytes(capture.lines)


# ---- in-process: the lease and the batcher ------------------------------------------------------


def make_client(emulator_cfg: StackConfig, store: JobStore, engine: FakeEngine, **env: Any) -> TestClient:
    settings = Settings(PROJECT_ID=emulator_cfg.project, BATCH_WINDOW_MS=1, **env)
    return TestClient(create_app(settings, engine=engine, store=store, blobs=GcsBlobSource(emulator_cfg.project)))


def test_redelivery_while_running_runs_the_engine_once(emulator_cfg, store, bucket) -> None:
    """Item 2: a second delivery while the first still runs is refused (429); the engine runs once."""
    engine = FakeEngine(delay_s=1.5)
    message = queued_job(store, bucket, f"{PATIENT}/slow.png", marked_png())
    with make_client(emulator_cfg, store, engine) as client, ThreadPoolExecutor(2) as pool:
        wait_ready(client)
        first = pool.submit(push, client, message)
        wait_for(lambda: store.get(message.job_id).state == JobState.RUNNING, 10, "the first lease")
        assert push(client, message) == 429  # held by the first delivery: Pub/Sub retries later
        assert first.result(timeout=20) == 204
        assert push(client, message) == 204  # a late redelivery of a finished job is acked
    job = store.get(message.job_id)
    assert job.state == JobState.DONE and job.attempts == 1
    assert events(job).count("leased") == 1 and events(job).count("done") == 1
    assert len(engine.calls) == 1


def test_backpressure_refuses_the_excess_and_all_complete_on_retry(emulator_cfg, store, bucket) -> None:
    """Item 10: more concurrent pushes than MAX_QUEUE → 429 for the excess; retries finish them all."""
    engine = FakeEngine(delay_s=0.4)
    messages = [queued_job(store, bucket, f"{PATIENT}/bp-{i}.png", marked_png(i)) for i in range(12)]
    with make_client(emulator_cfg, store, engine, MAX_QUEUE=2, MAX_BATCH_SIZE=2) as client:
        wait_ready(client)
        with ThreadPoolExecutor(len(messages)) as pool:
            first_round = list(pool.map(lambda m: push(client, m), messages))
        assert 429 in first_round and 204 in first_round
        assert set(first_round) <= {204, 429}
        pending = [m for m, status in zip(messages, first_round, strict=True) if status == 429]
        for _ in range(30):  # what Pub/Sub does: redeliver refused messages until acked
            if not pending:
                break
            time.sleep(0.3)
            with ThreadPoolExecutor(len(pending)) as pool:
                statuses = list(pool.map(lambda m: push(client, m), pending))
            pending = [m for m, status in zip(pending, statuses, strict=True) if status != 204]
        assert not pending
    jobs = [store.get(m.job_id) for m in messages]
    assert all(j.state == JobState.DONE and events(j).count("done") == 1 for j in jobs)
    assert sum(c.batch_size for c in engine.calls) == len(messages)  # each image inferred once
    assert max(c.batch_size for c in engine.calls) <= 2


# ---- real processes: SIGTERM and SIGKILL ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("delay_s", "grace_s", "finishes"),
    [(2.0, 6.0, True), (6.0, 1.0, False)],
    ids=["batch-finishes-in-grace", "batch-outlives-grace"],
)
def test_sigterm_finishes_or_releases_within_10s_and_never_acks_unfinished_work(
    emulator_cfg, store, bucket, processes, tmp_path, delay_s, grace_s, finishes
) -> None:
    """Item 11: after SIGTERM no new work is taken; the running job is finished (204) or released
    (non-2xx, state queued, no lease) and the process is gone, all within Cloud Run's 10 s."""
    service = ServiceProcess(
        free_port(),
        store.collection.id,
        tmp_path / "service.log",
        FAKE_ENGINE_DELAY_S=delay_s,
        SHUTDOWN_GRACE_SECONDS=grace_s,
    )
    processes.append(service)
    running = queued_job(store, bucket, f"{PATIENT}/in-flight.png", marked_png(1))
    later = queued_job(store, bucket, f"{PATIENT}/after-sigterm.png", marked_png(2))
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(service.push, running)
        wait_for(lambda: store.get(running.job_id).state == JobState.RUNNING, 10, "the lease")
        time.sleep(0.3)  # into the batch
        signalled = time.monotonic()
        service.signal(signal.SIGTERM)
        time.sleep(0.2)
        assert service.push(later, timeout=5) not in range(200, 300)  # refused or 503: not taken
        status = in_flight.result(timeout=12)
    answered_s = time.monotonic() - signalled
    service.proc.wait(timeout=max(1.0, 10.0 - (time.monotonic() - signalled)))
    exited_s = time.monotonic() - signalled
    job = store.get(running.job_id)
    if finishes:
        assert status == 204 and job.state == JobState.DONE
    else:
        assert status == 503, "unfinished work is answered 503 (retry), never acked"
        assert job.state == JobState.QUEUED and job.lease is None and job.error.retryable
        assert "released" in events(job)
    assert answered_s < 10 and exited_s < 10
    untouched = store.get(later.job_id)
    assert untouched.state == JobState.QUEUED and untouched.attempts == 0


@pytest.mark.slow
def test_killed_mid_inference_is_redelivered_after_the_lease_and_completes_once(
    emulator_cfg, store, bucket, processes, tmp_path, unique
) -> None:
    """Item 5: SIGKILL during a slow inference; the emulator redelivers; after the 6 s lease expires
    a new process completes the job exactly once, with attempts = 2."""
    port = free_port()
    # The inference budget stays below the lease, as the settings require.
    timing = {"LEASE_SECONDS": 6, "INFERENCE_BUDGET_SECONDS": 5}
    doomed = ServiceProcess(port, store.collection.id, tmp_path / "doomed.log", FAKE_ENGINE_DELAY_S=60, **timing)
    processes.append(doomed)
    subscription = PushSubscription(emulator_cfg.project, f"jobs-kill-{unique}", f"{doomed.url}/pubsub/push")
    try:
        message = queued_job(store, bucket, f"{PATIENT}/killed.png", marked_png(3))
        subscription.publish(message)
        wait_for(lambda: store.get(message.job_id).state == JobState.RUNNING, 30, "the first lease")
        doomed.signal(signal.SIGKILL)
        doomed.proc.wait(5)
        assert store.get(message.job_id).state == JobState.RUNNING  # the dead worker's lease remains
        processes.append(ServiceProcess(port, store.collection.id, tmp_path / "successor.log", **timing))
        job = wait_for(lambda: (j := store.get(message.job_id)).state.terminal and j, 90, "the redelivery", every_s=0.5)
    finally:
        subscription.close()
    assert job.state == JobState.DONE and job.attempts == 2
    assert events(job).count("leased") == 2 and events(job).count("done") == 1
    assert job.verdict is not None


# ---- the whole local stack ----------------------------------------------------------------------


@pytest.fixture
def gcs(stack_cfg: StackConfig) -> storage.Bucket:
    return storage.Client(project=stack_cfg.project).bucket(stack_cfg.bucket)


@pytest.fixture
def stack_store(stack_cfg: StackConfig) -> JobStore:
    return JobStore(new_client(stack_cfg.project), stack_cfg.jobs_collection)


@pytest.fixture
def paused(stack_cfg: StackConfig) -> Iterator[Path]:
    """The Eventarc stand-in paused (events 'lost') for the test; resumed afterwards."""
    flag = stack_cfg.home / "eventarc.paused"
    flag.touch()
    time.sleep(3 * stack_cfg.eventarc_poll_seconds + 0.5)  # let a poll already under way finish
    try:
        yield flag
    finally:
        flag.unlink(missing_ok=True)


def upload(gcs: storage.Bucket, name: str, data: bytes, content_type: str = "image/png") -> storage.Blob:
    blob = gcs.blob(name)
    blob.upload_from_string(data, content_type=content_type)
    return blob


def job_of(store: JobStore, blob: storage.Blob) -> Job | None:
    return store.latest_for(blob.bucket.name, blob.name)


def terminal_job(store: JobStore, blob: storage.Blob, timeout_s: float = 60.0) -> Job:
    def check() -> Job | None:
        job = job_of(store, blob)
        return job if job is not None and job.generation == int(blob.generation) and job.state.terminal else None

    result: Job = wait_for(check, timeout_s, "a terminal job", every_s=0.3)
    return result


def terminal_job_of_generation(
    store: JobStore, bucket: str, name: str, generation: int, timeout_s: float = 90.0
) -> Job:
    """The job of one generation, once terminal (fails if that generation never got a job)."""

    def check() -> Job | None:
        job = store.get(job_id_for(bucket, name, generation))
        return job if job is not None and job.state.terminal else None

    result: Job = wait_for(check, timeout_s, f"a terminal job for generation {generation}", every_s=0.3)
    return result


def jobs_named(store: JobStore, bucket: str, name: str) -> list[Job]:
    from google.cloud import firestore

    query = store.collection.where(filter=firestore.FieldFilter("name", "==", name))
    return [Job.from_doc(s.to_dict()) for s in query.stream() if s.to_dict()["bucket"] == bucket]


def reconcile(stack_cfg: StackConfig, prefix: str) -> dict[str, int]:
    response = requests.post(stack_cfg.reconcile_url, json={"prefix": prefix}, timeout=60)
    assert response.status_code == 200, response.text
    counts: dict[str, int] = response.json()["counts"]
    return counts


@pytest.mark.slow
def test_twenty_copies_of_one_event_make_one_job_and_one_verdict(stack_cfg, gcs, stack_store, unique) -> None:
    """Item 1: 20 concurrent and 20 sequential copies of the finalize event, plus the stand-in's own."""
    blob = upload(gcs, f"{PATIENT}/{unique}/dup-20.png", marked_png(4))
    blob.reload()
    resource = blob._properties

    def eventarc(event_id: str) -> int:
        # Like Eventarc: a non-2xx answer (e.g. Firestore contention, 409 Aborted) is retried.
        for _ in range(10):
            status = deliver(stack_cfg.ingest_url, resource, event_id)
            if 200 <= status < 300:
                return status
            time.sleep(0.5)
        return status

    with ThreadPoolExecutor(20) as pool:
        concurrent = list(pool.map(lambda i: eventarc(f"dup-{unique}-{i}"), range(20)))
    sequential = [eventarc(f"dup-{unique}-seq-{i}") for i in range(20)]
    assert set(concurrent) == {200} and set(sequential) == {200}
    job = terminal_job(stack_store, blob)
    time.sleep(1.0)  # any straggling duplicate message has had time to arrive
    jobs = jobs_named(stack_store, stack_cfg.bucket, blob.name)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.state == JobState.DONE and job.verdict is not None
    assert job.attempts == 1 and events(job).count("leased") == 1 and events(job).count("done") == 1


@pytest.mark.slow
def test_a_burst_of_overwrites_of_one_name_makes_a_job_per_generation(
    stack_cfg: StackConfig, gcs: storage.Bucket, stack_store: JobStore, unique: str
) -> None:
    """Issue 11 item 6: one name uploaded 6 times in quick succession (well within one look of a
    bucket listing). As on Google Cloud, each generation is its own event and its own job: the
    newest ends done, each older one done or failed/object_gone (overwritten before it ran)."""
    name = f"{PATIENT}/{unique}/overwritten.png"
    blobs = [upload(gcs, name, marked_png(40 + i)) for i in range(6)]
    generations = [int(b.generation) for b in blobs]
    assert len(set(generations)) == 6
    jobs = {g: terminal_job_of_generation(stack_store, gcs.name, name, g) for g in generations}
    assert len(jobs_named(stack_store, gcs.name, name)) == 6
    newest = jobs[generations[-1]]
    assert newest.state == JobState.DONE and newest.verdict is not None
    for generation in generations[:-1]:
        job = jobs[generation]
        gone = job.state == JobState.FAILED and job.error is not None and job.error.code == "object_gone"
        assert gone or job.state == JobState.DONE, (generation, job.state, job.error)
        assert [e.event for e in job.history].count("created") == 1


@pytest.mark.slow
def test_uploads_lost_by_eventarc_are_reconciled_once(stack_cfg, gcs, stack_store, paused, unique) -> None:
    """Item 14: events lost (stand-in paused) → reconcile creates and publishes the jobs, which
    complete; a second reconcile, and the late events after resuming, change nothing."""
    prefix = f"{PATIENT}/{unique}/lost/"
    blobs = [upload(gcs, f"{prefix}tile-{i}.png", marked_png(10 + i)) for i in range(3)]
    blobs.append(upload(gcs, f"{prefix}report.png", b"<!DOCTYPE html><html>" + BYTES_MARKER.encode()))
    time.sleep(1.5)
    assert all(job_of(stack_store, b) is None for b in blobs), "the paused stand-in delivered an event"
    counts = reconcile(stack_cfg, prefix)
    assert counts.get("ingested_queued") == 4
    jobs = [terminal_job(stack_store, b) for b in blobs]
    assert [j.state for j in jobs] == [JobState.DONE] * 3 + [JobState.FAILED]
    assert jobs[-1].error.code == "not_an_image"
    before = [stack_store.get(j.job_id) for j in jobs]

    again = reconcile(stack_cfg, prefix)
    assert again.get("ok") == 4 and not any(k.startswith("ingested") for k in again)
    paused.unlink()  # the "lost" events arrive late after all: duplicates, acknowledged
    time.sleep(3.0)
    after = [stack_store.get(j.job_id) for j in jobs]
    assert [(a.state, a.attempts, len(a.history)) for a in after] == [
        (b.state, b.attempts, len(b.history)) for b in before
    ]
    assert all(len(jobs_named(stack_store, stack_cfg.bucket, b.name)) == 1 for b in blobs)


@pytest.mark.slow
def test_the_scheduled_sweep_requeues_a_job_whose_worker_died(stack_cfg, gcs, stack_store, paused, unique) -> None:
    """Item 9: a job left `running` by a dead worker (message gone) is requeued, republished and
    completed by the reconcile sweep; nothing stays running forever."""
    blob = upload(gcs, f"{PATIENT}/{unique}/orphan.png", marked_png(20))
    message = JobMessage.for_object(stack_cfg.bucket, blob.name, int(blob.generation))
    stack_store.create(
        Job(
            job_id=message.job_id,
            bucket=message.bucket,
            name=message.name,
            generation=message.generation,
            content_type="image/png",
        )
    )
    stack_store.mark_published(message.job_id, "lost-message")
    lease = stack_store.lease(message.job_id, "worker-that-died", lease_seconds=0.5)
    assert lease.job is not None and lease.job.attempts == 1
    time.sleep(1.0)
    counts = reconcile(stack_cfg, f"{PATIENT}/{unique}/")
    assert counts.get("requeued_stuck", 0) >= 1
    job = terminal_job(stack_store, blob)
    assert job.state == JobState.DONE and job.attempts == 2
    assert "requeued" in events(job)
    assert reconcile(stack_cfg, f"{PATIENT}/{unique}/").get("requeued_stuck", 0) == 0


@pytest.mark.slow
def test_logs_hold_job_ids_never_object_names_or_image_bytes(stack_cfg, gcs, stack_store, unique) -> None:
    """Item 13: every line the stack's own processes logged during the session (this module's
    patient-named uploads included) is free of object names and image bytes, and job ids appear."""
    hostile = {
        f"{PATIENT}/{unique}/log-ok.png": marked_png(30),
        f"{PATIENT}/{unique}/log-html.png": b"<html>" + BYTES_MARKER.encode() + b"</html>",
        f"{PATIENT}/{unique}/log-truncated.png": marked_png(31, (256, 256))[:120] + BYTES_MARKER.encode(),
    }
    jobs = [terminal_job(stack_store, upload(gcs, name, data)) for name, data in hostile.items()]
    time.sleep(1.0)  # let the processes flush their last lines
    logs_dir = stack_cfg.home / "logs"
    ours = [logs_dir / f"{name}.log" for name in ("ingest", "reconcile", "service", "eventarc")]
    text = {p.name: p.read_text(errors="replace") for p in ours if p.exists()}
    assert {"ingest.log", "service.log"} <= set(text)
    for name, content in text.items():
        assert PATIENT not in content, f"an object name leaked into {name}"
        assert BYTES_MARKER not in content, f"image bytes leaked into {name}"
        job_lines = [line for line in content.splitlines() if '"job_id"' in line]
        for line in job_lines:
            json.loads(line)  # job lines are the JSON Cloud Logging parses
        assert job_lines or name not in ("ingest.log", "service.log"), f"no job line in {name}"
    for job in jobs:
        assert job.job_id in text["service.log"] or job.state == JobState.FAILED
        assert job.job_id in text["ingest.log"]
