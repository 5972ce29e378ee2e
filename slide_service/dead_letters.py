"""Dead letters of the slides topic: a `tile` or `finalize` message that ran out of delivery
attempts. The job is failed as `dead_lettered` (retryable: `healer requeue --failed` runs the
slide again from tiling) unless that would be wrong:

    no job document                      → created failed/dead_lettered (nothing is lost)      204
    the job is done or failed            → nothing to do                                       204
    a live lease holds the step          → left to its holder (delivered again later)          429
    the step is not the slide's any more → nothing to do (a `tile` for a slide past tiling, a
                                           `finalize` for one still scoring)                   204
    otherwise                            → failed/dead_lettered                                204
"""

from __future__ import annotations

import asyncio
import logging

from healer_core.schema import ErrorCode, Job, JobError, JobKind, JobMessage, JobState, Slide, SlideStage, Task
from healer_core.store import utcnow
from slide_service.runtime import SlideRuntime

log = logging.getLogger("healer.slide.dead_letters")


def _moot(job: Job, task: Task) -> bool:
    """Whether the dead message's step no longer concerns the slide."""
    slide = job.slide or Slide()
    if task == Task.TILE:
        return job.state == JobState.RUNNING and slide.stage != SlideStage.TILING
    all_counted = slide.shards_total > 0 and slide.shards_done >= slide.shards_total
    return not (slide.stage == SlideStage.FINALIZING or all_counted)


async def settle(message: JobMessage, rt: SlideRuntime, attempts: int | None) -> int:
    """Settle one dead letter; returns the status code to answer."""
    store = rt.store
    error = JobError(
        code=ErrorCode.DEAD_LETTERED,
        message=f"The slide's {message.task} step failed on every delivery attempt"
        + (f" ({attempts})" if attempts else "")
        + "; the message went to the dead-letter topic.",
        retryable=True,
    )
    extra = {"job_id": message.job_id, "task": str(message.task), "delivery_attempt": attempts}
    job = await asyncio.to_thread(store.get, message.job_id)
    if job is None:
        failed = Job.for_message(message, kind=JobKind.SLIDE, state=JobState.FAILED, error=error, slide=Slide())
        await asyncio.to_thread(store.create, failed)
        log.warning("dead letter without a job: recorded as failed", extra=extra)
        return 204
    if job.state.terminal:
        return 204
    if job.state == JobState.RUNNING and job.lease is not None and job.lease.expires_at > utcnow():
        log.info("dead letter for a slide under a live lease: left to its holder", extra=extra)
        return 429
    if _moot(job, message.task):
        log.info("dead letter for a step the slide is past", extra=extra)
        return 204
    await asyncio.to_thread(store.fail_unless_done, message.job_id, error)
    log.warning("slide dead-lettered", extra=extra)
    return 204
