"""A slide's report in Firestore: `jobs/{job_id}.verdict.slide.report`, leased and fenced on its own.

The report is written after the verdict, by its own task, so it never delays or changes the
verdict: the job is `done` (state, lease and verdict answer untouched) before the report starts,
and everything here writes only under `verdict.slide.report` (plus the job's `updated_at` and a
`history` entry). The report carries its own lease (owner, token, expiry) and attempts:

    pending ──lease_report──► pending + lease ──finish_report──► done
       ▲                          │ release_report (transient fault: lease dropped, error kept)
       └──────────────────────────┘
    pending ──fail_report / settle_dead_report──► failed (error says why)

Every write after the lease checks, in a transaction, that the report is still pending and
still leased by the caller's token: a worker whose lease expired writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from google.cloud import firestore

from healer_core.schema import Job, JobKind, JobState, Report, ReportStatus
from healer_core.slide_store import SlideStore, StepStatus
from healer_core.store import _history, lease_detail, new_lease, utcnow

REPORT = "verdict.slide.report"


def _field(name: str) -> str:
    return f"{REPORT}.{name}"


@dataclass(frozen=True)
class ReportLease:
    """What happened when a worker asked for a slide's report."""

    status: StepStatus  # ACQUIRED, HELD, TERMINAL (done, failed or off), NOT_DUE (no verdict yet), MISSING
    job: Job | None = None
    token: str = ""

    @property
    def report(self) -> Report:
        """The report as it was leased (an empty one when there is none)."""
        return report_of(self.job) or Report()


class DeadReport(StrEnum):
    """What a `report` message that ran out of delivery attempts does to its report."""

    SETTLED = "settled"  # done, failed, off or gone: nothing to do
    HELD = "held"  # under a live lease: left to its holder
    REPUBLISH = "republish"  # refused rather than tried (busy, restarting): publish it again
    FAILED = "failed"  # tried often enough, or for long enough: failed with the reason


def report_of(job: Job | None) -> Report | None:
    """The report block of a slide verdict, or None (no job, no verdict, not a slide)."""
    if job is None or job.verdict is None or job.verdict.slide is None:
        return None
    return job.verdict.slide.report


def _pending(job: Job) -> bool:
    report = report_of(job)
    return job.state == JobState.DONE and report is not None and report.status == ReportStatus.PENDING


def _holds(job: Job, token: str) -> bool:
    report = report_of(job)
    return _pending(job) and report is not None and report.lease is not None and report.lease.token == token


class ReportStore(SlideStore):
    """The slide store, plus the report's lease, outcome, dead letters and sweep query."""

    def lease_report(self, job_id: str, owner: str, lease_seconds: float) -> ReportLease:
        """Take the slide's pending report if nobody holds it (or its holder's lease expired)."""
        ref = self._ref(job_id)

        def decide(snap: Any) -> tuple[ReportLease, dict[str, Any] | None]:
            if not snap.exists:
                return ReportLease(StepStatus.MISSING), None
            job = Job.from_doc(snap.to_dict())
            report = report_of(job)
            if job.kind != JobKind.SLIDE or job.state != JobState.DONE or report is None:
                return ReportLease(StepStatus.NOT_DUE, job), None
            if report.status != ReportStatus.PENDING:
                return ReportLease(StepStatus.TERMINAL, job), None
            now = utcnow()
            if report.lease is not None and report.lease.expires_at > now:
                return ReportLease(StepStatus.HELD, job), None
            token, lease = new_lease(owner, lease_seconds, now)
            update = {
                _field("lease"): lease,
                _field("attempts"): firestore.Increment(1),
                _field("updated_at"): firestore.SERVER_TIMESTAMP,
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("report_leased", lease_detail(report.attempts, report.lease)),
            }
            leased = report.model_copy(update={"attempts": report.attempts + 1})
            return ReportLease(StepStatus.ACQUIRED, _with_report(job, leased), token), update

        return self._compare_and_set(ref, decide, ReportLease(StepStatus.HELD))

    def extend_report_lease(self, job_id: str, token: str, lease_seconds: float) -> bool:
        """Push the report lease's expiry out (a long report's heartbeat); False when it was lost."""
        return self._fenced_report_update(
            job_id, token, {_field("lease.expires_at"): utcnow() + timedelta(seconds=lease_seconds)}
        )

    def finish_report(self, job_id: str, token: str, report: Report) -> bool:
        """Write the report's text and provenance (status done), if `token` still holds its lease."""
        update = {
            _field("status"): ReportStatus.DONE.value,
            _field("text"): report.text,
            _field("model_id"): report.model_id,
            _field("model_revision"): report.model_revision,
            _field("prompt_version"): report.prompt_version,
            _field("patches"): report.patches,
            _field("inference_ms"): round(report.inference_ms, 2),
            _field("new_tokens"): report.new_tokens,
            _field("error"): "",
            _field("lease"): None,
            _field("finished_at"): firestore.SERVER_TIMESTAMP,
            _field("updated_at"): firestore.SERVER_TIMESTAMP,
            "updated_at": firestore.SERVER_TIMESTAMP,
            "history": _history("report_done", f"{report.patches} patches, {report.new_tokens} tokens"),
        }
        return self._fenced_report_update(job_id, token, update)

    def release_report(self, job_id: str, token: str, reason: str, code: str) -> bool:
        """Give the report back after a transient fault: still pending, lease dropped, reason kept."""
        update = {
            _field("lease"): None,
            _field("error"): reason,
            _field("updated_at"): firestore.SERVER_TIMESTAMP,
            "updated_at": firestore.SERVER_TIMESTAMP,
            "history": _history("report_released", code),
        }
        return self._fenced_report_update(job_id, token, update)

    def fail_report(self, job_id: str, token: str, reason: str, code: str) -> bool:
        """Record that the report cannot be written (status failed, with why), if `token` holds it.
        The verdict is untouched."""
        return self._fenced_report_update(job_id, token, _failure(reason, code))

    def _fenced_report_update(self, job_id: str, token: str, update: dict[str, Any]) -> bool:
        ref = self._ref(job_id)

        @firestore.transactional
        def txn_update(txn: firestore.Transaction) -> bool:
            snap = ref.get(transaction=txn)
            if not snap.exists or not _holds(Job.from_doc(snap.to_dict()), token):
                return False
            txn.update(ref, update)
            return True

        ok: bool = txn_update(self._transaction())
        return ok

    def mark_report_published(self, job_id: str, message_id: str) -> None:
        """Record that the slide's `report` message went out (only while the report is pending)."""
        ref = self._ref(job_id)

        @firestore.transactional
        def txn_mark(txn: firestore.Transaction) -> None:
            snap = ref.get(transaction=txn)
            if not snap.exists or not _pending(Job.from_doc(snap.to_dict())):
                return  # finished meanwhile (a fast report, or a republish of a finished one)
            txn.update(
                ref,
                {
                    _field("published_at"): firestore.SERVER_TIMESTAMP,
                    _field("updated_at"): firestore.SERVER_TIMESTAMP,
                    "updated_at": firestore.SERVER_TIMESTAMP,
                    "history": _history("published", f"report {message_id}"),
                },
            )

        txn_mark(self._transaction())

    def settle_dead_report(self, job_id: str, *, max_attempts: int, give_up_after_s: float) -> DeadReport:
        """Decide what a `report` message that ran out of delivery attempts does (one transaction).

        The same rules as a job's and a shard's dead letter: a report leased `max_attempts` times
        without being written, or still not run `give_up_after_s` after its first dead letter,
        fails (with the reason); one under a live lease is left to its holder; a finished one needs
        nothing; otherwise it was refused rather than tried (another report had the engine, the
        service restarted): back in flight with a fresh message."""
        ref = self._ref(job_id)

        @firestore.transactional
        def txn_settle(txn: firestore.Transaction) -> DeadReport:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                return DeadReport.SETTLED
            job = Job.from_doc(snap.to_dict())
            report = report_of(job)
            if not _pending(job) or report is None:
                return DeadReport.SETTLED
            now = utcnow()
            if report.lease is not None and report.lease.expires_at > now:
                return DeadReport.HELD
            first = report.first_dead_letter_at
            if report.attempts >= max_attempts or (
                first is not None and (now - first).total_seconds() >= give_up_after_s
            ):
                last = f" (last error: {report.error})" if report.error else ""
                reason = (
                    f"The report's message ran out of delivery attempts after {report.attempts} attempt(s)"
                    f"{last}; the slide's verdict stands."
                )
                txn.update(ref, _failure(reason, "dead_lettered"))
                return DeadReport.FAILED
            update: dict[str, Any] = {
                _field("lease"): None,
                _field("dead_letters"): firestore.Increment(1),
                _field("published_at"): None,
                _field("updated_at"): firestore.SERVER_TIMESTAMP,
                "updated_at": firestore.SERVER_TIMESTAMP,
                "history": _history("dead_lettered", f"report back in flight ({report.dead_letters + 1})"),
            }
            if first is None:
                update[_field("first_dead_letter_at")] = now
            txn.update(ref, update)
            return DeadReport.REPUBLISH

        result: DeadReport = txn_settle(self._transaction())
        return result

    def pending_reports(self) -> Iterator[Job]:
        """Slide jobs whose report is pending (the sweep's query; one equality on one field)."""
        query = self.collection.where(filter=firestore.FieldFilter(_field("status"), "==", ReportStatus.PENDING.value))
        for snap in query.stream():
            job = Job.from_doc(snap.to_dict())
            if _pending(job):
                yield job


def _failure(reason: str, code: str) -> dict[str, Any]:
    return {
        _field("status"): ReportStatus.FAILED.value,
        _field("error"): reason,
        _field("lease"): None,
        _field("finished_at"): firestore.SERVER_TIMESTAMP,
        _field("updated_at"): firestore.SERVER_TIMESTAMP,
        "updated_at": firestore.SERVER_TIMESTAMP,
        "history": _history("report_failed", code),
    }


def _with_report(job: Job, report: Report) -> Job:
    assert job.verdict is not None and job.verdict.slide is not None
    slide = job.verdict.slide.model_copy(update={"report": report})
    return job.model_copy(update={"verdict": job.verdict.model_copy(update={"slide": slide})})
