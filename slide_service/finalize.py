"""The `finalize` step: lease the fully counted slide → read every shard's tile scores →
aggregate → heatmap over the thumbnail, GeoJSON, thumbnail into the results bucket → the slide
verdict (fenced) → job done → the `report` task, when reports are on (`report.py`).

Everything it writes is keyed by job id and rewritten identically by a second run, so a finalize
that dies is simply run again (its lease expires; Pub/Sub or the sweep redelivers); the verdict
is written once (lease + fenced write). The report's message goes out after the verdict: if that
publish fails, the finalize answers 503 and its redelivery (finding the job done) publishes it;
the sweep is the backstop.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging

from PIL import Image

from healer_core.report_store import ReportStore
from healer_core.schema import (
    ErrorCode,
    Job,
    JobError,
    JobMessage,
    JobState,
    ReportStatus,
    SlideStage,
    Timings,
    Verdict,
)
from healer_core.slide_messages import publish_report, report_unpublished
from healer_core.store import utcnow
from healer_media.errors import TransientError
from slide_service.aggregate import aggregate
from slide_service.artifacts import CONTENT_TYPES, GEOJSON, HEATMAP, THUMBNAIL, gs_uri, result_name, thumbnail_name
from slide_service.geojson import tiles_geojson
from slide_service.heatmap import render_heatmap
from slide_service.outcome import Step, unleased
from slide_service.report import initial_report
from slide_service.runtime import SlideRuntime
from slide_service.verdict import Artifacts, slide_verdict, tile_scores

log = logging.getLogger("healer.slide.finalize")


async def run_finalize(message: JobMessage, rt: SlideRuntime) -> Step:
    """Finalize one slide, or say why not now."""
    store, job_id = rt.store, message.job_id
    lease = await asyncio.to_thread(
        store.lease_stage, job_id, rt.owner, rt.settings.lease_seconds, SlideStage.FINALIZING
    )
    step = unleased(lease.status)
    if step is not None or lease.job is None:
        log.info("finalize not run", extra={"job_id": job_id, "status": str(lease.status)})
        if step == Step.ALREADY_TERMINAL and lease.job is not None and report_unpublished(lease.job):
            # The verdict was written but its report's publish failed (or the finalizer died).
            return await _publish_report(lease.job, rt)
        return step or Step.NOT_DUE
    job, token = lease.job, lease.token
    try:
        verdict = await asyncio.to_thread(build_verdict, job, rt)
    except asyncio.CancelledError:
        error = JobError(
            code=ErrorCode.TILING_FAILED, message="The slide service shut down mid-finalize.", retryable=True
        )
        await asyncio.shield(asyncio.to_thread(store.release_step, job_id, token, error))
        raise
    except Exception as exc:
        if not isinstance(exc, TransientError):
            log.exception("finalize failed", extra={"job_id": job_id})
        code = exc.code if isinstance(exc, TransientError) else ErrorCode.TILING_FAILED
        error = JobError(code=code, message=f"finalize: {type(exc).__name__}", retryable=True)
        await asyncio.to_thread(store.release_step, job_id, token, error)
        return Step.RETRY
    if not await asyncio.to_thread(store.finish_slide, job_id, token, verdict):
        log.warning("slide verdict fenced off: lease lost to another worker", extra={"job_id": job_id})
        return Step.FENCED
    log.info("slide verdict written", extra={"job_id": job_id, "answer": verdict.answer, "p_yes": verdict.p_yes})
    if verdict.slide is not None and verdict.slide.report.status == ReportStatus.PENDING:
        return await _publish_report(job, rt)
    return Step.DONE


async def _publish_report(job: Job, rt: SlideRuntime) -> Step:
    """Publish the slide's `report` task (the verdict is written). A failure answers RETRY: the
    finalize comes back, finds the job done and publishes again (the sweep, failing that)."""
    try:
        await asyncio.to_thread(publish_report, ReportStore.of(rt.store), rt.publisher, job)
    except Exception as exc:
        log.warning("report publish failed", extra={"job_id": job.job_id, "error": type(exc).__name__})
        return Step.RETRY
    log.info("report task published", extra={"job_id": job.job_id})
    return Step.DONE


def build_verdict(job: Job, rt: SlideRuntime) -> Verdict:
    """Aggregate the shards' scores and write the artifacts (in a worker thread)."""
    s, slide = rt.settings, job.slide
    assert slide is not None, "a slide job always carries its slide block"
    shards = rt.store.shards(job.job_id)
    unfinished = [sh.n for sh in shards if sh.state != JobState.DONE]
    if unfinished or len(shards) != slide.shards_total:
        raise RuntimeError(f"{len(unfinished)} shards unfinished, {len(shards)} of {slide.shards_total} present")
    scores = tile_scores(shards)
    agg = aggregate(scores, s.slide_top_k, s.threshold, s.indeterminate_band)
    thumbnail_png = rt.objects.get(s.work_bucket, thumbnail_name(job.job_id))
    with Image.open(io.BytesIO(thumbnail_png)) as thumbnail:
        heatmap = render_heatmap(thumbnail, slide.thumbnail_downsample, scores, s.threshold, s.heatmap_max_px)
    geojson = json.dumps(tiles_geojson(job.job_id, scores, s.threshold, s.indeterminate_band)).encode()
    uris = {}
    for artifact, data in ((HEATMAP, heatmap.png), (GEOJSON, geojson), (THUMBNAIL, thumbnail_png)):
        name = result_name(job.job_id, artifact)
        rt.objects.put(s.results_bucket, name, data, CONTENT_TYPES[artifact])
        uris[artifact] = gs_uri(s.results_bucket, name)
    created = job.created_at or utcnow()
    timings = Timings(
        download=slide.fetch_ms,
        decode=slide.tiling_ms,
        inference=round(sum(sh.inference_ms for sh in shards), 2),
        total=round((utcnow() - created).total_seconds() * 1000.0, 2),
    )
    artifacts = Artifacts(uris[HEATMAP], uris[GEOJSON], uris[THUMBNAIL])
    report = initial_report(job.job_id, shards, s.slide_report_patches)
    return slide_verdict(agg, shards, artifacts, s.threshold, s.indeterminate_band, timings, report)
