"""The `tile` step: lease the slide job → read the slide → survey it in a child process (open,
tissue, tile plan, thumbnail) → shards to the work bucket (tiles read by worker processes) →
shard documents → hand-off (stage `scoring`, lease released) → one `shard` message per shard.

Shard documents are written, and the slide handed off, only while this worker holds the lease
(fenced); no shard message exists before the hand-off. So a tiling that dies anywhere before the
hand-off is simply run again (its lease expires; Pub/Sub or the sweep redelivers), and one that
dies after it has only messages left to publish: a redelivered `tile` message (NOT_DUE) and the
sweep publish whatever shard was not recorded as published.
"""

from __future__ import annotations

import asyncio
import logging
import time

from healer_core.schema import (
    ErrorCode,
    Job,
    JobError,
    JobKind,
    JobMessage,
    JobState,
    Shard,
    Slide,
    SlideStage,
    TileRef,
)
from healer_core.slide_messages import publish_shards
from healer_core.slide_store import StepStatus
from healer_media.errors import ObjectGone, SlideRejected, TransientError
from slide_service.artifacts import gs_uri, thumbnail_name
from slide_service.isolation import ChildFailed, run_isolated
from slide_service.lease import Heartbeat, LeaseLost
from slide_service.open import SlideLimits
from slide_service.outcome import Step, unleased
from slide_service.runtime import SlideRuntime
from slide_service.shards import parallel_shards
from slide_service.source import slide_file, still_current
from slide_service.survey import Survey, slide_geometry, survey_slide

log = logging.getLogger("healer.slide.tiling")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 2)


async def run_tile(message: JobMessage, rt: SlideRuntime) -> Step:
    """Tile one slide, or say why not now (see the module docstring)."""
    store, job_id = rt.store, message.job_id
    lease = await asyncio.to_thread(store.lease_stage, job_id, rt.owner, rt.settings.lease_seconds, SlideStage.TILING)
    if lease.status == StepStatus.MISSING:
        # Published without a job document (replayed by hand): adopt it rather than drop it.
        log.warning("job document missing; creating it from the message", extra={"job_id": job_id})
        await asyncio.to_thread(store.create, Job.for_message(message, kind=JobKind.SLIDE, slide=Slide()))
        lease = await asyncio.to_thread(
            store.lease_stage, job_id, rt.owner, rt.settings.lease_seconds, SlideStage.TILING
        )
    step = unleased(lease.status)
    scoring = lease.job is not None and lease.job.slide is not None and lease.job.slide.stage == SlideStage.SCORING
    if step == Step.NOT_DUE and scoring and lease.job is not None:
        await asyncio.to_thread(publish_unpublished, rt, lease.job)  # a tiler that died while publishing
    if step is not None or lease.job is None:
        return step or Step.NOT_DUE
    job, token = lease.job, lease.token
    log.info("slide leased for tiling", extra={"job_id": job_id, "attempt": job.attempts})
    deadline = time.monotonic() + rt.settings.tiling_budget_seconds
    try:
        async with Heartbeat(store, job_id, token, rt.settings.lease_seconds) as beat:
            slide = await asyncio.to_thread(tile_slide, job, token, rt, beat, deadline)
    except asyncio.CancelledError:
        # The server gave up on the request (shutdown): hand the slide back for a redelivery now.
        error = JobError(
            code=ErrorCode.TILING_FAILED, message="The slide service shut down mid-tiling.", retryable=True
        )
        await asyncio.shield(_release(rt, job_id, token, error))
        raise
    except SlideRejected as exc:
        return await _fail(rt, job_id, token, exc.as_job_error())
    except ObjectGone:
        return await _fail(
            rt, job_id, token, JobError(code=ErrorCode.OBJECT_GONE, message="The uploaded generation no longer exists.")
        )
    except LeaseLost:
        log.warning("tiling fenced off: lease lost to another worker", extra={"job_id": job_id})
        return Step.FENCED
    except TransientError as exc:
        await _release(rt, job_id, token, exc.as_job_error())
        return Step.RETRY
    except ChildFailed as exc:
        await _release(rt, job_id, token, JobError(code=ErrorCode.TILING_FAILED, message=str(exc), retryable=True))
        return Step.RETRY
    except Exception as exc:
        log.exception("tiling failed", extra={"job_id": job_id})
        error = JobError(code=ErrorCode.TILING_FAILED, message=type(exc).__name__, retryable=True)
        await _release(rt, job_id, token, error)
        return Step.RETRY
    log.info(
        "slide tiled",
        extra={"job_id": job_id, "tiles": slide.tiles_total, "shards": slide.shards_total, "ms": slide.tiling_ms},
    )
    try:
        await asyncio.to_thread(publish_unpublished, rt, job)
    except Exception as exc:  # a redelivery (NOT_DUE) or the sweep publishes the rest
        log.warning("publishing shard messages failed", extra={"job_id": job_id, "error": type(exc).__name__})
        return Step.RETRY
    return Step.DONE


def tile_slide(job: Job, token: str, rt: SlideRuntime, beat: Heartbeat, deadline: float) -> Slide:
    """Everything up to the hand-off, in a worker thread; OpenSlide only in child processes."""
    s, started = rt.settings, time.perf_counter()
    with slide_file(rt.storage, job, s) as path:
        fetch_ms = _ms(started)
        survey: Survey = run_isolated(survey_slide, (str(path), s), max(1.0, deadline - time.monotonic()))
        beat.check()
        rt.objects.put(s.work_bucket, thumbnail_name(job.job_id), survey.thumbnail_png, "image/png")
        shards: list[Shard] = []
        limits = SlideLimits.from_settings(s)
        blobs = parallel_shards(
            path, limits, survey.plan, job.job_id, s.shard_tiles, s.shard_jpeg_quality, rt.processes, deadline
        )
        for blob in blobs:
            beat.check()
            generation = rt.objects.put(s.work_bucket, blob.name, blob.data, "application/x-tar")
            tiles = [TileRef(index=t.index, x=t.x, y=t.y, w=t.w, h=t.h) for t in blob.tiles]
            shards.append(Shard(n=blob.n, object=gs_uri(s.work_bucket, blob.name), generation=generation, tiles=tiles))
        still_current(rt.storage, job, s)
    beat.check()
    if not rt.store.write_shards(job.job_id, token, shards):
        raise LeaseLost("shard documents fenced off")
    slide = slide_geometry(
        survey.info,
        survey.plan,
        stage=SlideStage.SCORING,
        shards_total=len(shards),
        thumbnail_downsample=survey.thumbnail_downsample,
        fetch_ms=fetch_ms,
        tiling_ms=_ms(started),
    )
    if not rt.store.hand_off(job.job_id, token, slide):
        raise LeaseLost("hand-off fenced off")
    return slide


def publish_unpublished(rt: SlideRuntime, job: Job) -> None:
    """Publish every queued shard not yet recorded as published, then record the slide's."""
    waiting = [s.n for s in rt.store.shards(job.job_id, [JobState.QUEUED]) if s.published_at is None]
    if waiting:
        publish_shards(rt.store, rt.publisher, job, waiting)
    rt.store.mark_slide_published(job.job_id)


async def _fail(rt: SlideRuntime, job_id: str, token: str, error: JobError) -> Step:
    ok = await asyncio.to_thread(rt.store.fail_leased, job_id, token, error)
    log.info("slide failed permanently", extra={"job_id": job_id, "error_code": error.code, "recorded": ok})
    return Step.FAILED if ok else Step.FENCED


async def _release(rt: SlideRuntime, job_id: str, token: str, error: JobError) -> None:
    ok = await asyncio.to_thread(rt.store.release, job_id, token, error)
    log.warning("slide released for retry", extra={"job_id": job_id, "error_code": error.code, "released": ok})
