"""The job store: the only code that reads or writes Firestore `jobs/{job_id}`.

Every state change that can race (lease, verdict, release, failure, dead letter) runs in a
Firestore transaction, so concurrent deliveries of the same job resolve to exactly one running
worker and exactly one verdict. Writes after the lease are fenced by the lease `token`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from healer_core.schema import (
    SCHEMA_VERSION,
    ErrorCode,
    Job,
    JobError,
    JobKind,
    JobState,
    Lease,
    Slide,
    SlideStage,
    Verdict,
)

if TYPE_CHECKING:
    from healer_core.settings import JobStoreSettings

TRANSACTION_ATTEMPTS = 12
CREATE_ATTEMPTS = 8
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_lease(owner: str, lease_seconds: float, now: datetime) -> tuple[str, dict[str, Any]]:
    """A fresh fencing token, and the lease stored with it (it expires `lease_seconds` from `now`)."""
    token = uuid.uuid4().hex
    return token, {"owner": owner, "token": token, "expires_at": now + timedelta(seconds=lease_seconds)}


def held(state: JobState, lease: Lease | None, now: datetime) -> bool:
    """Whether a running job (or shard) is held by a lease that has not expired at `now`."""
    return state == JobState.RUNNING and lease is not None and lease.expires_at > now


def running_under(lease: dict[str, Any]) -> dict[str, Any]:
    """What taking a job's (or shard's) lease writes: running, one more attempt, the lease."""
    return {
        "state": str(JobState.RUNNING),
        "attempts": firestore.Increment(1),
        "lease": lease,
        "updated_at": firestore.SERVER_TIMESTAMP,
    }


def lease_detail(attempts: int, expired: object, step: str = "") -> str:
    """The history's detail for a lease taken: the attempt it starts (after `attempts`), and whether
    it took over an `expired` lease (any truthy value: the previous holder's lease)."""
    prefix = f"{step} " if step else ""
    return f"{prefix}attempt {attempts + 1}" + (" (previous lease expired)" if expired else "")


def _history(event: str, detail: str = "") -> Any:
    # A random nonce keeps two identical entries distinct (ArrayUnion dedups equal values).
    entry = {"at": utcnow(), "event": event, "detail": detail, "n": uuid.uuid4().hex[:8]}
    return firestore.ArrayUnion([entry])


def _retakeable(job: Job) -> bool:
    """Whether a running job whose lease expired may be requeued: any image; a slide only while it
    is being tiled (a scoring or finalizing slide is recovered shard by shard, by the slide sweep)."""
    return job.kind != JobKind.SLIDE or job.slide is None or job.slide.stage == SlideStage.TILING


def _slide_restarted(slide: Slide) -> dict[str, Any]:
    """A failed slide run again starts from tiling: what ingest knew, no progress."""
    fresh = Slide(format=slide.format, vendor=slide.vendor, width=slide.width, height=slide.height)
    return fresh.model_dump(mode="python")


class LeaseStatus(StrEnum):
    """What happened when a worker asked for a job."""

    ACQUIRED = "acquired"  # this worker runs it now
    HELD = "held"  # another worker holds an unexpired lease
    TERMINAL = "terminal"  # already done or failed: ack
    MISSING = "missing"  # no such job document


@dataclass(frozen=True)
class LeaseResult:
    status: LeaseStatus
    job: Job | None = None
    token: str = ""


class DeadLetterAction(StrEnum):
    """What a dead letter did to its job (`JobStore.settle_dead_letter`)."""

    SETTLED = "settled"  # already done or failed: nothing to do
    HELD = "held"  # under a live lease: left to its holder, or to whoever runs it once the lease expires
    REPUBLISH = "republish"  # back in flight: queued again, a fresh message must be published
    FAILED = "failed"  # leased max_attempts times, or never run for give_up_after_s: failed/dead_lettered


@dataclass(frozen=True)
class DeadLetterResult:
    action: DeadLetterAction
    job: Job


def new_client(project: str, database: str = "(default)") -> firestore.Client:
    """A Firestore client (honours FIRESTORE_EMULATOR_HOST)."""
    return firestore.Client(project=project, database=database)


def _dead_letter_entry(detail: str) -> dict[str, Any]:
    return {"at": utcnow(), "event": "dead_lettered", "detail": detail, "n": uuid.uuid4().hex[:8]}


def _dead_letter_reason(job: Job, max_attempts: int, give_up_after_s: float, now: datetime) -> str:
    """Why a dead letter fails this (queued, or expired-running) job, or "" to put it back in flight."""
    if job.attempts >= max_attempts:
        last = f" (last error: {job.error.code})" if job.error else " (its worker died)"
        return (
            f"Leased {job.attempts} times without a verdict{last}; "
            "its message ran out of delivery attempts and went to the dead-letter topic."
        )
    first = job.first_dead_letter_at
    if first is not None and (now - first).total_seconds() >= give_up_after_s:
        return (
            f"Its message ran out of delivery attempts {job.dead_letters + 1} times over "
            f"{(now - first).total_seconds() / 60:.0f} min without the job being run (service busy or "
            "unavailable); requeue it once the service has capacity."
        )
    return ""


class JobStore:
    """Jobs in one Firestore collection."""

    def __init__(self, client: firestore.Client, collection: str = "jobs", ttl_days: float = 0.0) -> None:
        """`ttl_days` > 0 stamps finished jobs with `expire_at` for a Firestore TTL policy."""
        self.client = client
        self.collection = client.collection(collection)
        self.ttl_days = ttl_days

    def _finished(self) -> dict[str, Any]:
        """Fields every terminal transition writes (and `expire_at` when a TTL is configured)."""
        fields: dict[str, Any] = {"finished_at": firestore.SERVER_TIMESTAMP, "updated_at": firestore.SERVER_TIMESTAMP}
        if self.ttl_days > 0:
            fields["expire_at"] = utcnow() + timedelta(days=self.ttl_days)
        return fields

    def _transaction(self) -> firestore.Transaction:
        # More attempts than the client's 5: many deliveries of one job contend for its document.
        return self.client.transaction(max_attempts=TRANSACTION_ATTEMPTS)

    def _ref(self, job_id: str) -> firestore.DocumentReference:
        return self.collection.document(job_id)

    def _compare_and_set(
        self,
        ref: firestore.DocumentReference,
        decide: Callable[[Any], tuple[T, dict[str, Any] | None]],
        contended: T,
        attempts: int = TRANSACTION_ATTEMPTS,
    ) -> T:
        """Read the document, `decide` the answer and what to write (None: nothing), and write it
        only if the document has not changed since it was read (a precondition on its update
        time); read again when it has. `contended` when it kept changing under every attempt.

        Leases and the finalize claim use it rather than read-then-commit transactions: many
        deliveries of one job at once each held a read lock on its document and waited on each
        other (on the emulator, 16 workers took ~25 s, 16 finalize claimers up to two minutes).
        With the precondition one write wins and the others read what it wrote."""
        for attempt in range(attempts):
            snap = ref.get()
            result, update = decide(snap)
            if update is None:
                return result
            try:
                ref.update(update, option=self.client.write_option(last_update_time=snap.update_time))
            except gexc.FailedPrecondition:
                continue  # changed since it was read (another delivery wrote it): read it again
            except gexc.Aborted:
                time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())  # contention: nothing was written
                continue
            return result
        return contended

    # ---- reading ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        snap = self._ref(job_id).get()
        return Job.from_doc(snap.to_dict()) if snap.exists else None

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """Existing jobs among `job_ids`, by id (one batched read)."""
        refs = [self._ref(j) for j in job_ids]
        found: dict[str, Job] = {}
        for snap in self.client.get_all(refs):
            if snap.exists:
                found[snap.id] = Job.from_doc(snap.to_dict())
        return found

    def latest_for(self, bucket: str, name: str) -> Job | None:
        """The newest generation's job for one object (uses the composite index)."""
        query = (
            self.collection.where(filter=firestore.FieldFilter("bucket", "==", bucket))
            .where(filter=firestore.FieldFilter("name", "==", name))
            .order_by("generation", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snap in query.stream():
            return Job.from_doc(snap.to_dict())
        return None

    def iter_jobs(
        self, state: JobState | None = None, page_size: int = 300, since: datetime | None = None
    ) -> Iterator[Job]:
        """All jobs (optionally one state, optionally updated since), paginated by document id."""
        query: Any = self.collection
        if state is not None:
            query = query.where(filter=firestore.FieldFilter("state", "==", str(state)))
        if since is not None:
            query = query.where(filter=firestore.FieldFilter("updated_at", ">=", since))
            query = query.order_by("updated_at")
        else:
            query = query.order_by("__name__")
        last = None
        while True:
            page = query.limit(page_size)
            if last is not None:
                page = page.start_after(last)
            snaps = list(page.stream())
            for snap in snaps:
                yield Job.from_doc(snap.to_dict())
            if len(snaps) < page_size:
                return
            last = snaps[-1]

    def newest(self, state: JobState | None = None, limit: int = 2000) -> Iterator[Job]:
        """The most recently created jobs first (optionally one state), at most `limit`.

        Uses the (state, created_at desc) composite index when `state` is given.
        """
        query: Any = self.collection
        if state is not None:
            query = query.where(filter=firestore.FieldFilter("state", "==", str(state)))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        for snap in query.stream():
            yield Job.from_doc(snap.to_dict())

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (aggregation queries: no documents are read)."""
        counts: dict[str, int] = {}
        for state in JobState:
            query: Any = self.collection.where(filter=firestore.FieldFilter("state", "==", str(state)))
            result = query.count(alias="n").get()
            counts[str(state)] = int(result[0][0].value) if result and result[0] else 0
        return counts

    def query_updated_since(self, since: datetime) -> Any:
        """A query for jobs updated at or after `since` (callers attach `on_snapshot` listeners)."""
        return self.collection.where(filter=firestore.FieldFilter("updated_at", ">=", since))

    def queries_for_ids(self, job_ids: list[str], chunk: int = 30) -> list[Any]:
        """Queries covering `job_ids` (Firestore's `in` takes at most 30 values), for listeners."""
        from google.cloud.firestore_v1.field_path import FieldPath

        queries = []
        for i in range(0, len(job_ids), chunk):
            refs = [self._ref(j) for j in job_ids[i : i + chunk]]
            queries.append(self.collection.where(filter=firestore.FieldFilter(FieldPath.document_id(), "in", refs)))
        return queries

    # ---- ingest -----------------------------------------------------------------------------

    def _new_document(self, job: Job) -> dict[str, Any]:
        """The fields a job document is created with."""
        data = job.model_dump(mode="python", exclude={"history"})
        data["schema_version"] = SCHEMA_VERSION
        data["state"] = str(job.state)
        data["created_at"] = firestore.SERVER_TIMESTAMP
        data["updated_at"] = firestore.SERVER_TIMESTAMP
        if job.state.terminal:
            data.update(self._finished())
        data["history"] = [{"at": utcnow(), "event": "created", "detail": str(job.state), "n": "0"}]
        return data

    def create(self, job: Job) -> tuple[bool, Job]:
        """Create the job if absent. Returns (created, the stored job).

        Many duplicate events create one document at once: Firestore answers the losers
        ALREADY_EXISTS, or ABORTED when their commits contend (the emulator's lock timeout), which
        it documents as safe to retry: the create is retried with jittered backoff, then the loser
        finds the document and reports it as existing.
        """
        data = self._new_document(job)
        try:
            for attempt in range(CREATE_ATTEMPTS):
                try:
                    self._ref(job.job_id).create(data)
                    break
                except gexc.Aborted:
                    if attempt == CREATE_ATTEMPTS - 1:
                        raise
                    time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        except gexc.AlreadyExists:
            existing = self.get(job.job_id)
            if existing is None:  # deleted in between: vanishingly rare, treat as fresh
                return self.create(job)
            return False, existing
        stored = self.get(job.job_id)
        assert stored is not None
        return True, stored

    def mark_published(self, job_id: str, message_id: str) -> None:
        """Record that the job's message was published (so a duplicate event won't republish)."""
        self._ref(job_id).update(
            {
                "published_at": firestore.SERVER_TIMESTAMP,
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("published", message_id),
            }
        )

    # ---- the worker's lease -----------------------------------------------------------------

    def lease(self, job_id: str, owner: str, lease_seconds: float) -> LeaseResult:
        """Take the job if it is queued, or running under an expired lease."""
        ref = self._ref(job_id)

        def decide(snap: Any) -> tuple[LeaseResult, dict[str, Any] | None]:
            if not snap.exists:
                return LeaseResult(LeaseStatus.MISSING), None
            job = Job.from_doc(snap.to_dict())
            if job.state.terminal:
                return LeaseResult(LeaseStatus.TERMINAL, job), None
            now = utcnow()
            if held(job.state, job.lease, now):
                return LeaseResult(LeaseStatus.HELD, job), None
            token, lease = new_lease(owner, lease_seconds, now)
            history = _history("leased", lease_detail(job.attempts, job.lease))
            leased = job.model_copy(update={"state": JobState.RUNNING, "attempts": job.attempts + 1})
            update = running_under(lease) | {"started_at": firestore.SERVER_TIMESTAMP, "history": history}
            return LeaseResult(LeaseStatus.ACQUIRED, leased, token), update

        return self._compare_and_set(ref, decide, LeaseResult(LeaseStatus.HELD))

    def _fenced_update(self, job_id: str, token: str, update: dict[str, Any]) -> bool:
        """Apply `update` only while `token` still holds the job's lease."""
        ref = self._ref(job_id)

        @firestore.transactional
        def txn_update(txn: firestore.Transaction) -> bool:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return False
            data = snap.to_dict() or {}
            lease = data.get("lease") or {}
            if data.get("state") != str(JobState.RUNNING) or lease.get("token") != token:
                return False
            txn.update(ref, update)
            return True

        ok: bool = txn_update(self._transaction())
        return ok

    def finish(self, job_id: str, token: str, verdict: Verdict) -> bool:
        """Write the verdict and mark done, if this worker still holds the lease."""
        return self._fenced_update(
            job_id,
            token,
            {
                "state": str(JobState.DONE),
                "verdict": verdict.model_dump(mode="python"),
                "error": None,
                "lease": None,
                **self._finished(),
                "history": _history("done", verdict.answer),
            },
        )

    def fail_leased(self, job_id: str, token: str, error: JobError) -> bool:
        """Record a permanent failure found while holding the lease."""
        return self._fenced_update(job_id, token, self._failure(error))

    def release(self, job_id: str, token: str, error: JobError, *, refund_attempt: bool = False) -> bool:
        """Give the job back (transient fault): queued again, last error kept for operators.

        `refund_attempt`: the lease never reached the model (the batcher was full), so it does not
        count as an attempt: `attempts` counts the tries that can make a job fail as dead-lettered.
        """
        update: dict[str, Any] = {
            "state": str(JobState.QUEUED),
            "lease": None,
            "error": error.model_dump(),
            "updated_at": firestore.SERVER_TIMESTAMP,
            "history": _history("released", error.code),
        }
        if refund_attempt:
            update["attempts"] = firestore.Increment(-1)
        return self._fenced_update(job_id, token, update)

    def _failure(self, error: JobError) -> dict[str, Any]:
        return {
            "state": str(JobState.FAILED),
            "error": error.model_dump(),
            "lease": None,
            **self._finished(),
            "history": _history("failed", error.code),
        }

    def fail_unless_done(self, job_id: str, error: JobError) -> Job | None:
        """Mark the job failed unless it already has a verdict (dead letters, operators).

        Returns the job as it stands afterwards, or None if it does not exist.
        """
        ref = self._ref(job_id)

        @firestore.transactional
        def txn_fail(txn: firestore.Transaction) -> Job | None:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return None
            job = Job.from_doc(snap.to_dict())
            if job.state == JobState.DONE or (job.state == JobState.FAILED and job.error == error):
                return job
            txn.update(ref, self._failure(error))
            return job.model_copy(update={"state": JobState.FAILED, "error": error, "lease": None})

        result: Job | None = txn_fail(self._transaction())
        return result

    def settle_dead_letter(self, fresh: Job, *, max_attempts: int, give_up_after_s: float) -> DeadLetterResult:
        """Decide, in one transaction, what a dead letter for `fresh.job_id` does to its job.

        A message dead-letters when Pub/Sub ran out of delivery attempts, and most deliveries can
        be refused for reasons that say nothing about the job: the lease is held by a worker still
        computing (or by one that crashed, until the lease expires), or the service was busy.
        So a dead letter
        - leaves a done or failed job alone (SETTLED);
        - leaves a job under a live lease alone (HELD): its holder writes the verdict, or the lease
          expires and a later delivery of this dead letter (or the sweep) puts it back in flight;
        - fails the job as `dead_lettered` only when it was really tried: leased `max_attempts`
          times without a verdict (FAILED), or never run for `give_up_after_s` since its first
          dead letter (a message nobody can run; bounds the loop in time, whatever the backoff);
        - otherwise puts it back in flight (REPUBLISH): queued, `dead_letters` + 1; the caller
          publishes a fresh message (with a fresh delivery budget).
        A job missing altogether is created from the message (`fresh`) and put back in flight.
        """
        ref = self._ref(fresh.job_id)

        @firestore.transactional
        def txn_settle(txn: firestore.Transaction) -> DeadLetterResult:
            snap = ref.get(transaction=txn)
            now = utcnow()
            if not snap.exists:
                job = fresh.model_copy(
                    update={"state": JobState.QUEUED, "dead_letters": 1, "first_dead_letter_at": now}
                )
                data = self._new_document(job)
                data["history"].append(_dead_letter_entry("job created from its dead letter; back in flight (1)"))
                txn.create(ref, data)
                return DeadLetterResult(DeadLetterAction.REPUBLISH, job)
            job = Job.from_doc(snap.to_dict())
            if job.state.terminal:
                return DeadLetterResult(DeadLetterAction.SETTLED, job)
            if job.state == JobState.RUNNING and job.lease is not None and job.lease.expires_at > now:
                return DeadLetterResult(DeadLetterAction.HELD, job)
            reason = _dead_letter_reason(job, max_attempts, give_up_after_s, now)
            if reason:
                error = JobError(code=ErrorCode.DEAD_LETTERED, message=reason, retryable=True)
                txn.update(ref, self._failure(error))
                return DeadLetterResult(
                    DeadLetterAction.FAILED,
                    job.model_copy(update={"state": JobState.FAILED, "error": error, "lease": None}),
                )
            rounds = job.dead_letters + 1
            first = job.first_dead_letter_at or now
            txn.update(
                ref,
                {
                    "state": str(JobState.QUEUED),
                    "lease": None,
                    "dead_letters": firestore.Increment(1),
                    "first_dead_letter_at": first,
                    "updated_at": firestore.SERVER_TIMESTAMP,
                    "history": firestore.ArrayUnion([_dead_letter_entry(f"back in flight ({rounds})")]),
                },
            )
            return DeadLetterResult(
                DeadLetterAction.REPUBLISH,
                job.model_copy(
                    update={
                        "state": JobState.QUEUED,
                        "lease": None,
                        "dead_letters": rounds,
                        "first_dead_letter_at": first,
                    }
                ),
            )

        result: DeadLetterResult = txn_settle(self._transaction())
        return result

    def requeue(self, job_id: str, *, include_failed: bool = False, stuck_only: bool = False) -> Job | None:
        """Put a job back to `queued` so a re-published message runs it again.

        A done job is never requeued. A running job is requeued only when its lease expired.
        A failed job (`include_failed`: an operator's rerun after a fix) starts afresh: its
        `attempts` and dead-letter clock are reset, or its first busy dead letter would fail it
        again at once. Returns the job if it was requeued, else None.
        """
        ref = self._ref(job_id)

        @firestore.transactional
        def txn_requeue(txn: firestore.Transaction) -> Job | None:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return None
            job = Job.from_doc(snap.to_dict())
            now = utcnow()
            expired = job.state == JobState.RUNNING and (job.lease is None or job.lease.expires_at <= now)
            expired = expired and _retakeable(job)
            allowed = expired or (job.state == JobState.QUEUED and not stuck_only)
            allowed = allowed or (include_failed and job.state == JobState.FAILED)
            if not allowed:
                return None
            update: dict[str, Any] = {
                "state": str(JobState.QUEUED),
                "lease": None,
                "error": None,
                "expire_at": None,  # running again: never reaped mid-run
                "first_dead_letter_at": None,
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("requeued", str(job.state)),
            }
            if job.state == JobState.FAILED:
                update["attempts"] = 0  # the leases stay in `history`
                if job.slide is not None:
                    update["slide"] = _slide_restarted(job.slide)
            txn.update(ref, update)
            fresh: dict[str, Any] = {"state": JobState.QUEUED, "lease": None, "first_dead_letter_at": None}
            if job.state == JobState.FAILED:
                fresh["attempts"] = 0
            return job.model_copy(update=fresh)

        result: Job | None = txn_requeue(self._transaction())
        return result


def open_job_store(settings: JobStoreSettings) -> JobStore:
    """The jobs collection of the configured project and database, with the configured TTL."""
    return JobStore(
        new_client(settings.project_id, settings.firestore_database), settings.jobs_collection, settings.job_ttl_days
    )
