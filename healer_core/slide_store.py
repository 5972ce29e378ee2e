"""Slides and their shards in Firestore: the slide path's leases, its fan-out and its fan-in.

    jobs/{job_id}              kind slide; state queued → running → done | failed (as images);
                               slide.stage tiling → scoring → finalizing → done
    jobs/{job_id}/shards/{n}   one shard; state queued → running → done | failed, leased and
                               fenced like a job

How each invariant holds (docs/RELIABILITY.md tests each):
- One tiler at a time: `lease_stage(TILING)` is the job lease (token, expiry); `extend_lease`,
  `write_shards` and `hand_off` are fenced by the token, so a tiler whose lease expired can
  neither write shard documents nor hand the slide on.
- Shard documents are written before any shard message exists (`write_shards`, then `hand_off`,
  then the messages): a tiling that dies before the hand-off is simply run again from scratch.
- Each shard is counted once: `complete_shard` moves the shard running → done (fenced by the
  shard's lease token) and increments the slide's `shards_done` / `tiles_scored` in the same
  transaction. That transaction reads the shard, never the slide: hundreds of shards counting at
  once do not contend on a read of the slide document (Firestore serialises the increments).
- One finalize: `claim_finalize` (a transaction) moves the stage scoring → finalizing once, when
  every shard is counted; whoever claims it publishes `finalize` and records
  `finalize_published_at` (the sweep republishes when that never happens).
- One verdict: `lease_stage(FINALIZING)` and the fenced `finish_slide`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Self

from google.api_core import exceptions as gexc
from google.cloud import firestore

from healer_core.schema import ErrorCode, Job, JobError, JobKind, JobState, Shard, Slide, SlideStage, Verdict
from healer_core.store import (
    TRANSACTION_ATTEMPTS,
    JobStore,
    _history,
    held,
    lease_detail,
    new_lease,
    running_under,
    utcnow,
)

# Writes per Firestore commit stay well under its limit (500).
_CHUNK = 200
# A finalize claim reads the slide again this many times when it changed under the claimer.
CLAIM_ATTEMPTS = 5


class StepStatus(StrEnum):
    """What happened when a worker asked for a slide step or a shard."""

    ACQUIRED = "acquired"  # this worker runs it now
    HELD = "held"  # another worker holds an unexpired lease
    TERMINAL = "terminal"  # already finished (or its slide is): ack
    MISSING = "missing"  # no such document
    NOT_DUE = "not_due"  # the slide is past (or not yet at) this step: nothing to do now


@dataclass(frozen=True)
class SlideLease:
    status: StepStatus
    job: Job | None = None
    token: str = ""


@dataclass(frozen=True)
class ShardLease:
    status: StepStatus
    shard: Shard | None = None
    job: Job | None = None
    token: str = ""


class DeadShard(StrEnum):
    """What a shard message that ran out of delivery attempts does to its shard."""

    SETTLED = "settled"  # the shard (or its slide) is finished, or gone: nothing to do
    HELD = "held"  # under a live lease: left to its holder
    REPUBLISH = "republish"  # back to queued: publish its message again (fresh delivery attempts)
    FAILED = "failed"  # tried too often: the shard fails, and so does its slide


@dataclass(frozen=True)
class Provenance:
    """The model that scored a shard (the slide verdict's provenance)."""

    model_id: str
    model_revision: str
    quantization: str
    prompt_version: str


class SlideStore(JobStore):
    """The job store, plus what a slide and its shards need."""

    @classmethod
    def of(cls, store: JobStore) -> Self:
        """The same collection, client and TTL as `store` (`store` itself when it is one already)."""
        if isinstance(store, cls):
            return store
        return cls(store.client, store.collection.id, store.ttl_days)

    def _shards(self, job_id: str) -> firestore.CollectionReference:
        return self._ref(job_id).collection("shards")

    def _shard_ref(self, job_id: str, n: int) -> firestore.DocumentReference:
        return self._shards(job_id).document(str(n))

    # ---- the slide's steps (tiling, finalizing): leased like a job -------------------------

    def lease_stage(self, job_id: str, owner: str, lease_seconds: float, stage: SlideStage) -> SlideLease:
        """Lease the slide for `stage` (TILING or FINALIZING) if that step is due and nobody holds it.

        Tiling is due while the job is queued or still tiling (a tiler died: its lease expired);
        finalizing once every shard is counted. Anything else is NOT_DUE (a redelivered `tile`
        message for a slide already scoring, a `finalize` for one still scoring).
        """
        ref = self._ref(job_id)

        def decide(snap: Any) -> tuple[SlideLease, dict[str, Any] | None]:
            if not snap.exists:
                return SlideLease(StepStatus.MISSING), None
            job = Job.from_doc(snap.to_dict())
            if job.state.terminal:
                return SlideLease(StepStatus.TERMINAL, job), None
            now = utcnow()
            if held(job.state, job.lease, now):
                return SlideLease(StepStatus.HELD, job), None
            if not _due(job, stage):
                return SlideLease(StepStatus.NOT_DUE, job), None
            token, lease = new_lease(owner, lease_seconds, now)
            update = {
                "slide.stage": str(stage),
                "started_at": job.started_at or firestore.SERVER_TIMESTAMP,
                "history": _history("leased", lease_detail(job.attempts, job.lease, str(stage))),
            }
            leased = job.model_copy(update={"attempts": job.attempts + 1})
            return SlideLease(StepStatus.ACQUIRED, leased, token), running_under(lease) | update

        return self._compare_and_set(ref, decide, SlideLease(StepStatus.HELD))

    def extend_lease(self, job_id: str, token: str, lease_seconds: float) -> bool:
        """Push the lease's expiry out (a long tiling's heartbeat); False when it was lost."""
        return self._fenced_update(job_id, token, {"lease.expires_at": utcnow() + timedelta(seconds=lease_seconds)})

    def write_shards(self, job_id: str, token: str, shards: Sequence[Shard]) -> bool:
        """Create (or overwrite) the shard documents, and delete any beyond them (left by an
        earlier run of a slide requeued after failing), only while `token` holds the lease.

        Overwriting is safe: no shard message of this run exists before `hand_off`, and a late
        message of an earlier run finds a fresh queued shard (scored and counted in this run) or
        none (acknowledged)."""
        ref = self._ref(job_id)
        stale = [snap.id for snap in self._shards(job_id).select([]).stream() if int(snap.id) >= len(shards)]
        writes: list[Shard | str] = [*shards, *stale]
        for start in range(0, len(writes), _CHUNK):
            chunk = writes[start : start + _CHUNK]

            @firestore.transactional
            def txn_write(txn: firestore.Transaction, chunk: Sequence[Shard | str] = chunk) -> bool:
                snap = ref.get(transaction=txn)
                if not _holds(snap, token):
                    return False
                for item in chunk:
                    if isinstance(item, str):
                        txn.delete(self._shards(job_id).document(item))
                        continue
                    data = item.model_dump(mode="python")
                    data.update(state=str(item.state), updated_at=firestore.SERVER_TIMESTAMP)
                    txn.set(self._shard_ref(job_id, item.n), data)
                return True

            if not txn_write(self._transaction()):
                return False
        return True

    def hand_off(self, job_id: str, token: str, slide: Slide) -> bool:
        """Tiling is done: record the slide's geometry and totals, stage `scoring`, release the
        lease (scoring is leased shard by shard). Fenced by the tiler's token."""
        data = slide.model_dump(mode="python")
        data.update(stage=str(SlideStage.SCORING), shards_done=0, tiles_scored=0, finalize_published_at=None)
        detail = f"{slide.tiles_total} tiles in {slide.shards_total} shards"
        return self._fenced_update(
            job_id,
            token,
            {
                "slide": data,
                "lease": None,
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("tiled", detail),
            },
        )

    def mark_shards_published(self, job_id: str, numbers: Sequence[int]) -> None:
        """Record that these shards' messages went out."""
        for start in range(0, len(numbers), _CHUNK):
            batch = self.client.batch()
            for n in numbers[start : start + _CHUNK]:
                batch.update(self._shard_ref(job_id, n), {"published_at": firestore.SERVER_TIMESTAMP})
            batch.commit()

    def mark_slide_published(self, job_id: str) -> None:
        """Record that every shard message of the slide went out."""
        self._ref(job_id).update({"slide.shards_published_at": firestore.SERVER_TIMESTAMP})

    def release_step(self, job_id: str, token: str, error: JobError) -> bool:
        """Give a finalize back (transient fault): the lease dropped, the slide still `running`
        and `finalizing`, so the next `finalize` delivery takes it."""
        return self._fenced_update(
            job_id,
            token,
            {
                "lease": None,
                "error": error.model_dump(),
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("released", error.code),
            },
        )

    def finish_slide(self, job_id: str, token: str, verdict: Verdict) -> bool:
        """Write the slide verdict and mark the job done, if the finalizer still holds the lease."""
        return self._fenced_update(
            job_id,
            token,
            {
                "state": str(JobState.DONE),
                "verdict": verdict.model_dump(mode="python"),
                "slide.stage": str(SlideStage.DONE),
                "error": None,
                "lease": None,
                **self._finished(),
                "history": _history("done", verdict.answer),
            },
        )

    # ---- shards: leased, scored and counted ---------------------------------------------------

    def shards(self, job_id: str, states: Sequence[JobState] | None = None) -> list[Shard]:
        """The slide's shards (optionally in some states), by number."""
        query: Any = self._shards(job_id)
        if states:
            query = query.where(filter=firestore.FieldFilter("state", "in", [str(s) for s in states]))
        shards = [Shard.model_validate(snap.to_dict()) for snap in query.stream()]
        return sorted(shards, key=lambda s: s.n)

    def get_shard(self, job_id: str, n: int) -> Shard | None:
        snap = self._shard_ref(job_id, n).get()
        return Shard.model_validate(snap.to_dict()) if snap.exists else None

    def lease_shard(self, job_id: str, n: int, owner: str, lease_seconds: float) -> ShardLease:
        """Take shard `n` if it is queued, or running under an expired lease, and its slide is not
        finished. Reads the slide outside the transaction: only the shard is contended."""
        job_snap = self._ref(job_id).get()
        if not job_snap.exists:
            return ShardLease(StepStatus.MISSING)
        job = Job.from_doc(job_snap.to_dict())
        if job.state.terminal:
            return ShardLease(StepStatus.TERMINAL, job=job)
        ref = self._shard_ref(job_id, n)

        def decide(snap: Any) -> tuple[ShardLease, dict[str, Any] | None]:
            if not snap.exists:
                return ShardLease(StepStatus.MISSING, job=job), None
            shard = Shard.model_validate(snap.to_dict())
            if shard.state.terminal:
                return ShardLease(StepStatus.TERMINAL, shard, job), None
            now = utcnow()
            if held(shard.state, shard.lease, now):
                return ShardLease(StepStatus.HELD, shard, job), None
            token, lease = new_lease(owner, lease_seconds, now)
            leased = shard.model_copy(update={"attempts": shard.attempts + 1})
            return ShardLease(StepStatus.ACQUIRED, leased, job, token), running_under(lease)

        return self._compare_and_set(ref, decide, ShardLease(StepStatus.HELD, job=job))

    def complete_shard(
        self, job_id: str, n: int, token: str, scores: Sequence[float], provenance: Provenance, inference_ms: float
    ) -> bool:
        """Store the shard's tile scores and count it into its slide, in one atomic commit, if this
        worker still holds the shard's lease. True when counted now (exactly once per shard).

        The commit is a compare-and-set: the shard is read, checked (running, our token), and
        written back only if it has not changed since (a precondition on its update time), in the
        same atomic commit as the slide's increments. Unlike a locking transaction, hundreds of
        shards finishing at once do not queue on a lock over the slide document: the increments
        commute, and only a change to the shard itself (another worker) makes the commit fail."""
        ref = self._shard_ref(job_id, n)
        job_ref = self._ref(job_id)
        for attempt in range(TRANSACTION_ATTEMPTS):
            snap = ref.get()
            if not _holds(snap, token):
                return False
            batch = self.client.batch()
            shard_update = {
                "state": str(JobState.DONE),
                "scores": list(scores),
                "lease": None,
                "error": None,
                "inference_ms": round(inference_ms, 2),
                "updated_at": firestore.SERVER_TIMESTAMP,
                **vars(provenance),
            }
            batch.update(ref, shard_update, option=self.client.write_option(last_update_time=snap.update_time))
            slide_update = {
                "slide.shards_done": firestore.Increment(1),
                "slide.tiles_scored": firestore.Increment(len(scores)),
                "updated_at": firestore.SERVER_TIMESTAMP,
            }
            batch.update(job_ref, slide_update)
            try:
                batch.commit()
            except gexc.FailedPrecondition:
                continue  # the shard changed since it was read: read it again (fenced, or a late retry)
            except (gexc.Aborted, gexc.DeadlineExceeded, gexc.ServiceUnavailable):
                time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())  # contention: nothing was written
                continue
            return True
        raise RuntimeError(f"shard {n} could not be counted after {TRANSACTION_ATTEMPTS} attempts")

    def release_shard(self, job_id: str, n: int, token: str, error: JobError, *, refund_attempt: bool = False) -> bool:
        """Give the shard back (transient fault): queued again; `refund_attempt` when it never
        reached the model."""
        update: dict[str, Any] = {
            "state": str(JobState.QUEUED),
            "lease": None,
            "error": error.model_dump(),
            "updated_at": firestore.SERVER_TIMESTAMP,
        }
        if refund_attempt:
            update["attempts"] = firestore.Increment(-1)
        return self._fenced_shard_update(job_id, n, token, update)

    def fail_shard(self, job_id: str, n: int, token: str, error: JobError) -> bool:
        """Record the shard's permanent failure (the caller fails the slide with it)."""
        update = {"state": str(JobState.FAILED), "lease": None, "error": error.model_dump()}
        return self._fenced_shard_update(job_id, n, token, update | {"updated_at": firestore.SERVER_TIMESTAMP})

    def _fenced_shard_update(self, job_id: str, n: int, token: str, update: dict[str, Any]) -> bool:
        ref = self._shard_ref(job_id, n)

        @firestore.transactional
        def txn_update(txn: firestore.Transaction) -> bool:
            if not _holds(ref.get(transaction=txn), token):
                return False
            txn.update(ref, update)
            return True

        ok: bool = txn_update(self._transaction())
        return ok

    def claim_finalize(self, job_id: str) -> bool:
        """Move a fully counted slide from scoring to finalizing. True for exactly one caller,
        who then publishes `finalize` (and records it with `mark_finalize_published`).

        A compare-and-set (`JobStore._compare_and_set`): the last shards of a slide claim at once;
        one write wins, and the others read the slide again and find it finalizing. A claim
        whose outcome is unknown (an error, no answer) is settled by the redelivered shard's
        `finalize_if_due` or by the sweep, both of which publish a claimed, unpublished finalize."""

        def decide(snap: Any) -> tuple[bool, dict[str, Any] | None]:
            if not snap.exists:
                return False, None
            job = Job.from_doc(snap.to_dict())
            slide = job.slide
            if job.state != JobState.RUNNING or slide is None or not _all_counted(slide):
                return False, None
            if slide.stage != SlideStage.SCORING:
                return False, None  # claimed already (by another shard's worker, or the sweep)
            detail = f"{slide.shards_done} shards, {slide.tiles_scored} tiles"
            update = {
                "slide.stage": str(SlideStage.FINALIZING),
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("scored", detail),
            }
            return True, update

        # Still changing under us after CLAIM_ATTEMPTS reads: a redelivery or the sweep claims it.
        return self._compare_and_set(self._ref(job_id), decide, False, CLAIM_ATTEMPTS)

    def mark_finalize_published(self, job_id: str, message_id: str) -> None:
        """Record that the slide's `finalize` message went out."""
        self._ref(job_id).update(
            {
                "slide.finalize_published_at": firestore.SERVER_TIMESTAMP,
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("published", f"finalize {message_id}"),
            }
        )

    # ---- dead letters and the sweep ------------------------------------------------------------

    def settle_dead_shard(self, job_id: str, n: int, *, max_attempts: int, give_up_after_s: float) -> DeadShard:
        """Decide what a shard message that ran out of delivery attempts does (one transaction).

        A shard leased `max_attempts` times without being counted, or still not run
        `give_up_after_s` after its first dead letter, fails (FAILED: the caller fails the slide) —
        the same rules as a job's (`JobStore.settle_dead_letter`): a bound in time, not in rounds,
        because a round lasts seconds on a busy local stack and minutes on Pub/Sub. One under a
        live lease is left to its holder (HELD); a finished one, or one whose slide is finished,
        needs nothing (SETTLED). Otherwise it was refused rather than tried (the service was busy
        or restarting): back to queued, for a fresh message (REPUBLISH)."""
        job_snap = self._ref(job_id).get()
        if not job_snap.exists or Job.from_doc(job_snap.to_dict()).state.terminal:
            return DeadShard.SETTLED
        ref = self._shard_ref(job_id, n)

        @firestore.transactional
        def txn_settle(txn: firestore.Transaction) -> DeadShard:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return DeadShard.SETTLED
            shard = Shard.model_validate(snap.to_dict())
            if shard.state.terminal:
                return DeadShard.SETTLED
            if shard.state == JobState.RUNNING and shard.lease and shard.lease.expires_at > utcnow():
                return DeadShard.HELD
            now = utcnow()
            first = shard.first_dead_letter_at
            gave_up = first is not None and (now - first).total_seconds() >= give_up_after_s
            if shard.attempts >= max_attempts or gave_up:
                error = JobError(code=ErrorCode.DEAD_LETTERED, message="Its message ran out of delivery attempts.")
                txn.update(ref, {"state": str(JobState.FAILED), "lease": None, "error": error.model_dump()})
                return DeadShard.FAILED
            update: dict[str, Any] = {
                "state": str(JobState.QUEUED),
                "lease": None,
                "dead_letters": firestore.Increment(1),
            }
            if first is None:
                update["first_dead_letter_at"] = now
            txn.update(ref, update)
            return DeadShard.REPUBLISH

        result: DeadShard = txn_settle(self._transaction())
        return result

    def slides_in_flight(self) -> Iterator[Job]:
        """Running slide jobs (tiling, scoring or finalizing)."""
        query = self.collection.where(filter=firestore.FieldFilter("state", "==", str(JobState.RUNNING))).where(
            filter=firestore.FieldFilter("kind", "==", str(JobKind.SLIDE))
        )
        for snap in query.stream():
            yield Job.from_doc(snap.to_dict())

    def requeue_shard(self, job_id: str, n: int) -> bool:
        """Put a shard whose lease expired back to queued (its worker died). True when done now."""
        ref = self._shard_ref(job_id, n)

        @firestore.transactional
        def txn_requeue(txn: firestore.Transaction) -> bool:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return False
            shard = Shard.model_validate(snap.to_dict())
            if shard.state != JobState.RUNNING or (shard.lease and shard.lease.expires_at > utcnow()):
                return False
            txn.update(ref, {"state": str(JobState.QUEUED), "lease": None, "updated_at": firestore.SERVER_TIMESTAMP})
            return True

        requeued: bool = txn_requeue(self._transaction())
        return requeued


def _due(job: Job, stage: SlideStage) -> bool:
    if job.kind != JobKind.SLIDE:
        return False  # a slide step's message for an image job (published by hand): never run it
    slide = job.slide or Slide()
    if stage == SlideStage.TILING:
        return job.state == JobState.QUEUED or slide.stage == SlideStage.TILING
    if stage == SlideStage.FINALIZING:
        return job.state == JobState.RUNNING and (
            slide.stage == SlideStage.FINALIZING or (slide.stage == SlideStage.SCORING and _all_counted(slide))
        )
    raise ValueError(f"{stage} is not a leased step")


def _all_counted(slide: Slide) -> bool:
    return slide.shards_total > 0 and slide.shards_done >= slide.shards_total


def _holds(snap: Any, token: str) -> bool:
    """Whether the document exists, is running, and its lease is `token`'s."""
    if not snap.exists:
        return False
    data = snap.to_dict() or {}
    return data.get("state") == str(JobState.RUNNING) and (data.get("lease") or {}).get("token") == token


def older_than(moment: datetime | None, cutoff: datetime) -> bool:
    """Whether a recorded time is before `cutoff` (an unrecorded one counts as old)."""
    return moment is None or moment < cutoff
