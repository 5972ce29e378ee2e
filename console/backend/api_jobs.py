"""Job routes: the filtered list, one job in full, and its server-rendered preview."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response

from console.backend.context import CallerDep, Context
from console.backend.jobs import JobPage, describe_error, job_detail, list_jobs
from console.backend.preview import render_preview
from healer_core.schema import ERROR_DESCRIPTIONS, Job, JobState
from healer_media.errors import ImageRejected, ObjectGone, TransientError

router = APIRouter(prefix="/api")
log = logging.getLogger("healer.console")
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


def _job_or_404(ctx: Context, job_id: str) -> Job:
    job = ctx.store.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="No such job.")
    return job


@router.get("/config")
def config(ctx: Context, caller: CallerDep) -> dict[str, Any]:
    """What the page needs to know about this deployment (and who IAP's verified assertion names)."""
    s = ctx.settings
    return {
        "user": caller.email if caller else "",
        "project": s.project_id,
        "bucket": s.bucket,
        "local": s.local,
        "upload_prefix": s.upload_prefix,
        "max_image_bytes": s.max_image_bytes,
        "preview_max_px": s.preview_max_px,
        "error_descriptions": {str(code): text for code, text in ERROR_DESCRIPTIONS.items()},
    }


@router.get("/jobs", response_model=JobPage)
def jobs(
    ctx: Context,
    state: JobState | None = None,
    answer: Literal["yes", "no", "indeterminate"] | None = None,
    q: Annotated[str | None, Query(max_length=200, description="object-name substring")] = None,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    """Newest jobs first, filtered by state and answer, searched by object name."""
    return list_jobs(
        ctx.store,
        state=state,
        answer=answer,
        search=q.strip() if q else None,
        offset=offset,
        limit=limit,
        scan_limit=ctx.settings.list_scan_limit,
    )


@router.get("/jobs/{job_id}")
def job(ctx: Context, job_id: JobId) -> dict[str, Any]:
    """One job in full: verdict, error in plain words, history."""
    return job_detail(_job_or_404(ctx, job_id))


@router.get("/jobs/{job_id}/preview.png", responses={200: {"content": {"image/png": {}}}})
def preview(ctx: Context, caller: CallerDep, job_id: JobId) -> Response:
    """A downscaled PNG rendered here from the job's object generation (never the raw upload)."""
    # Who looked at which job: the job id, never the object name (it may carry patient identifiers).
    log.info("preview requested", extra={"user": caller.email if caller else None, "job_id": job_id})
    cached = ctx.previews.get(job_id)
    if cached is None:
        job = _job_or_404(ctx, job_id)
        s = ctx.settings
        if job.bucket != s.bucket:  # the console reads its own inbox, nothing else
            raise HTTPException(status_code=404, detail="The job's object is not in this console's bucket.")
        try:
            data = ctx.blobs.download(job.bucket, job.name, job.generation, s.max_image_bytes)
            cached = render_preview(data, ctx.preview_limits, s.preview_max_px)
        except ImageRejected as exc:
            code = str(exc.code)
            raise HTTPException(status_code=422, detail={"code": code, "description": describe_error(code)}) from exc
        except ObjectGone as exc:
            raise HTTPException(status_code=404, detail="The uploaded generation no longer exists.") from exc
        except TransientError as exc:  # storage unavailable, or no decode memory free in time
            raise HTTPException(
                status_code=503, detail="The preview cannot be made right now; try again.", headers={"Retry-After": "5"}
            ) from exc
        ctx.previews.put(job_id, cached)
    # A job pins one immutable generation, so its preview never changes.
    return Response(cached, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})
