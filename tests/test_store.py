"""The job store's guarantees on the Firestore emulator: one lease, fenced verdicts, requeue."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from healer_core.schema import ErrorCode, Job, JobError, JobState, Verdict
from healer_core.store import JobStore, LeaseStatus


def new_job(store: JobStore, name: str = "a.png", generation: int = 1) -> Job:
    from healer_core.ids import job_id_for

    job = Job(job_id=job_id_for("inbox", name, generation), bucket="inbox", name=name, generation=generation)
    created, stored = store.create(job)
    assert created
    return stored


def verdict(answer: str = "no") -> Verdict:
    return Verdict(answer=answer, p_yes=0.2, explanation="x.", model_id="m", prompt_version="p")


def test_create_is_create_if_absent(store: JobStore) -> None:
    job = new_job(store)
    created, again = store.create(job.model_copy(update={"event_id": "other"}))
    assert not created and again.event_id == job.event_id


def test_a_create_that_contends_with_a_transaction_is_retried_not_an_error(store: JobStore) -> None:
    # Duplicate events of one upload contend for its document: a commit that waits on another's
    # lock is aborted (ABORTED; the emulator's "Transaction lock timeout", ~2 s), which Firestore
    # documents as retryable. Ingest must retry it, not answer the event with a 500.
    import threading

    from google.cloud import firestore

    from healer_core.ids import job_id_for

    job = Job(job_id=job_id_for("inbox", "contended.png", 9), bucket="inbox", name="contended.png", generation=9)
    ref = store.collection.document(job.job_id)
    holding = threading.Event()

    @firestore.transactional
    def hold_the_document(txn: firestore.Transaction) -> None:
        ref.get(transaction=txn)  # the emulator locks what a transaction reads
        holding.set()
        time.sleep(3.0)  # longer than the lock timeout: the first create is aborted

    holder = threading.Thread(target=hold_the_document, args=(store.client.transaction(),))
    holder.start()
    assert holding.wait(10)
    created, stored = store.create(job)
    holder.join()
    assert created and stored.job_id == job.job_id


def test_sixteen_concurrent_workers_one_lease(store: JobStore) -> None:
    job = new_job(store)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: store.lease(job.job_id, f"w{i}", 300), range(16)))
    assert [r.status for r in results].count(LeaseStatus.ACQUIRED) == 1
    assert {r.status for r in results} <= {LeaseStatus.ACQUIRED, LeaseStatus.HELD}
    assert store.get(job.job_id).attempts == 1


def test_expired_lease_is_taken_over_and_the_old_worker_is_fenced(store: JobStore) -> None:
    job = new_job(store)
    first = store.lease(job.job_id, "old", 0.2)
    time.sleep(0.4)
    second = store.lease(job.job_id, "new", 300)
    assert second.status == LeaseStatus.ACQUIRED and second.token != first.token
    assert not store.finish(job.job_id, first.token, verdict("yes"))  # the old worker's late verdict
    assert store.finish(job.job_id, second.token, verdict("no"))
    stored = store.get(job.job_id)
    assert stored.state == JobState.DONE and stored.verdict.answer == "no" and stored.attempts == 2
    assert not store.finish(job.job_id, second.token, verdict("yes"))  # exactly one verdict


def test_terminal_jobs_are_never_leased_again(store: JobStore) -> None:
    job = new_job(store)
    lease = store.lease(job.job_id, "w", 300)
    store.finish(job.job_id, lease.token, verdict())
    assert store.lease(job.job_id, "w2", 300).status == LeaseStatus.TERMINAL
    assert store.requeue(job.job_id, include_failed=True) is None  # a done job is never run twice


def test_requeue_stuck_and_failed(store: JobStore) -> None:
    stuck = new_job(store, "stuck.png")
    store.lease(stuck.job_id, "dead-worker", 0.1)
    time.sleep(0.3)
    assert store.requeue(stuck.job_id, stuck_only=True).state == JobState.QUEUED
    failed = new_job(store, "failed.png")
    store.fail_unless_done(failed.job_id, JobError(code=ErrorCode.DEAD_LETTERED, message="x", retryable=True))
    assert store.requeue(failed.job_id) is None
    again = store.requeue(failed.job_id, include_failed=True)
    assert again is not None and store.get(failed.job_id).error is None


def test_iter_jobs_paginates_and_filters(store: JobStore) -> None:
    for i in range(7):
        new_job(store, f"p{i}.png")
    assert len(list(store.iter_jobs(page_size=3))) == 7
    assert len(list(store.iter_jobs(state=JobState.QUEUED, page_size=2))) == 7
    assert list(store.iter_jobs(state=JobState.DONE)) == []


def test_ttl_stamps_finished_jobs_only(firestore_client, unique: str) -> None:
    store = JobStore(firestore_client, f"ttl-{unique}", ttl_days=30)
    done = new_job(store, "done.png")
    assert store.get(done.job_id).expire_at is None  # queued work is never reaped
    lease = store.lease(done.job_id, "w", 300)
    assert store.get(done.job_id).expire_at is None
    store.finish(done.job_id, lease.token, verdict())
    finished = store.get(done.job_id)
    assert 29.9 < (finished.expire_at - finished.finished_at).total_seconds() / 86400 < 30.1
    failed = new_job(store, "failed.png")
    store.fail_unless_done(failed.job_id, JobError(code=ErrorCode.DEAD_LETTERED, message="x", retryable=True))
    assert store.get(failed.job_id).expire_at is not None
    store.requeue(failed.job_id, include_failed=True)
    assert store.get(failed.job_id).expire_at is None
