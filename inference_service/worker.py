"""One job, start to finish: lease → download → decode → batch → fenced verdict.

`process_job` returns an Outcome; the push route turns it into the status code Pub/Sub acts on
(2xx = ack, anything else = redeliver with backoff).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from healer_core.schema import ErrorCode, Job, JobError, JobMessage, Timings, Verdict
from healer_core.store import JobStore, LeaseStatus
from healer_media.blobs import BlobSource
from healer_media.errors import Busy, ImageRejected, ObjectGone, TransientError
from healer_media.imaging import DecodeLimits, decode_image
from inference_service.engine.base import EngineResult, ModelInfo
from inference_service.inference import Inference

log = logging.getLogger("healer.worker")


class Outcome(StrEnum):
    DONE = "done"  # verdict written (204)
    ALREADY_TERMINAL = "already_terminal"  # duplicate delivery of a finished job (204)
    FAILED = "failed"  # permanent failure recorded (204)
    FENCED = "fenced"  # our lease expired and someone else owns the job (204)
    HELD = "held"  # another worker holds the lease (429)
    BUSY = "busy"  # batcher full (429)
    RETRY = "retry"  # transient fault, lease released (503)


STATUS_FOR: dict[Outcome, int] = {
    Outcome.DONE: 204,
    Outcome.ALREADY_TERMINAL: 204,
    Outcome.FAILED: 204,
    Outcome.FENCED: 204,
    Outcome.HELD: 429,
    Outcome.BUSY: 429,
    Outcome.RETRY: 503,
}


@dataclass
class WorkerDeps:
    store: JobStore
    blobs: BlobSource
    inference: Inference
    limits: DecodeLimits
    owner: str
    lease_seconds: float
    budget_seconds: float
    explain: bool


def build_verdict(result: EngineResult, info: ModelInfo, timings: Timings) -> Verdict:
    """The stored verdict: the engine's answer plus provenance and stage timings."""
    return Verdict(
        answer=result.answer,
        p_yes=result.p_yes,
        explanation=result.explanation,
        model_id=info.model_id,
        model_revision=info.model_revision,
        quantization=info.quantization,
        prompt_version=info.prompt_version,
        timings_ms=timings,
    )


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 2)


async def process_job(message: JobMessage, deps: WorkerDeps) -> Outcome:
    """Run one delivered job to a terminal state, or hand it back for a retry."""
    job_id = message.job_id
    if not deps.inference.has_capacity():
        return Outcome.BUSY  # before touching Firestore: cheap backpressure
    lease = await asyncio.to_thread(deps.store.lease, job_id, deps.owner, deps.lease_seconds)
    if lease.status == LeaseStatus.MISSING:
        # Published without a job document (e.g. replayed by hand): adopt it rather than drop it.
        log.warning("job document missing; creating it from the message", extra={"job_id": job_id})
        await asyncio.to_thread(deps.store.create, Job.for_message(message))
        lease = await asyncio.to_thread(deps.store.lease, job_id, deps.owner, deps.lease_seconds)
    if lease.status == LeaseStatus.TERMINAL:
        log.info("duplicate delivery of a finished job", extra={"job_id": job_id})
        return Outcome.ALREADY_TERMINAL
    if lease.status != LeaseStatus.ACQUIRED:
        log.info("lease held elsewhere", extra={"job_id": job_id})
        return Outcome.HELD
    token = lease.token
    attempt = lease.job.attempts if lease.job else 0
    log.info("job leased", extra={"job_id": job_id, "attempt": attempt})
    start = time.perf_counter()
    try:
        t0 = time.perf_counter()
        data = await asyncio.to_thread(
            deps.blobs.download, message.bucket, message.name, message.generation, deps.limits.max_bytes
        )
        download_ms = _ms(t0)
        t0 = time.perf_counter()
        image = await asyncio.to_thread(decode_image, data, deps.limits)
        decode_ms = _ms(t0)
        result, queue_ms, inference_ms = await asyncio.wait_for(
            deps.inference.run(image, deps.explain), timeout=deps.budget_seconds
        )
    except asyncio.CancelledError:
        # The server gave up on this request (graceful-shutdown timeout): hand the job back so a
        # redelivery can run it now rather than after the lease expires. Shielded: the release
        # finishes in its thread even if we are cancelled again while waiting for it.
        error = JobError(code=ErrorCode.ENGINE_ERROR, message="Service shut down mid-job.", retryable=True)
        await asyncio.shield(_release(deps, job_id, token, error))
        raise
    except ImageRejected as exc:
        return await _fail(deps, job_id, token, exc.as_job_error())
    except ObjectGone:
        error = JobError(code=ErrorCode.OBJECT_GONE, message="The uploaded generation no longer exists.")
        return await _fail(deps, job_id, token, error)
    except Busy:
        # The image never reached the model: hand the lease back without counting the attempt.
        error = JobError(code=ErrorCode.BUSY, message="Service busy.", retryable=True)
        await _release(deps, job_id, token, error, refund_attempt=True)
        return Outcome.BUSY
    except TransientError as exc:
        await _release(deps, job_id, token, exc.as_job_error())
        return Outcome.RETRY
    except TimeoutError:
        error = JobError(
            code=ErrorCode.ENGINE_ERROR, message=f"Inference exceeded {deps.budget_seconds}s.", retryable=True
        )
        await _release(deps, job_id, token, error)
        return Outcome.RETRY
    except Exception as exc:
        log.exception("engine failed", extra={"job_id": job_id})
        error = JobError(code=ErrorCode.ENGINE_ERROR, message=f"{type(exc).__name__}", retryable=True)
        await _release(deps, job_id, token, error)
        return Outcome.RETRY
    timings = Timings(download=download_ms, decode=decode_ms, queue=queue_ms, inference=inference_ms, total=_ms(start))
    verdict = build_verdict(result, deps.inference.info, timings)
    if not await asyncio.to_thread(deps.store.finish, job_id, token, verdict):
        log.warning("verdict fenced off: lease lost to another worker", extra={"job_id": job_id})
        return Outcome.FENCED
    log.info(
        "verdict written",
        extra={"job_id": job_id, "answer": verdict.answer, "p_yes": verdict.p_yes, "total_ms": timings.total},
    )
    return Outcome.DONE


async def _fail(deps: WorkerDeps, job_id: str, token: str, error: JobError) -> Outcome:
    ok = await asyncio.to_thread(deps.store.fail_leased, job_id, token, error)
    log.info("job failed permanently", extra={"job_id": job_id, "error_code": error.code, "recorded": ok})
    return Outcome.FAILED if ok else Outcome.FENCED


async def _release(deps: WorkerDeps, job_id: str, token: str, error: JobError, *, refund_attempt: bool = False) -> None:
    ok = await asyncio.to_thread(deps.store.release, job_id, token, error, refund_attempt=refund_attempt)
    log.warning("job released for retry", extra={"job_id": job_id, "error_code": error.code, "released": ok})
