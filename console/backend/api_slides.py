"""Slide routes: Deep Zoom of the slide itself, its top tiles, and the verdict's artifacts.

GET /api/jobs/{job_id}/slide.dzi                          Deep Zoom descriptor (XML)
GET /api/jobs/{job_id}/slide_files/{level}/{col}_{row}.jpeg  one Deep Zoom tile
GET /api/jobs/{job_id}/top-tiles/{rank}.jpeg              the rank-th top tile, ≤ 256 px
GET /api/jobs/{job_id}/heatmap.png                        the heatmap as stored (with its colour bar)
GET /api/jobs/{job_id}/heatmap-overlay.png                the heatmap's slide part, for the viewer
GET /api/jobs/{job_id}/tiles.geojson                      tile polygons with p_yes (QuPath's form)
GET /api/jobs/{job_id}/thumbnail.png                      the slide's thumbnail

Everything is pinned to the job: the slide to its object generation, the artifacts to the verdict's
URIs inside the results location. Nothing here logs or returns an object name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response

from console.backend.api_jobs import JobId
from console.backend.artifacts import MEDIA_TYPES, Artifact, NoArtifact
from console.backend.context import Context
from console.backend.deepzoom import TileNotFound
from console.backend.jobs import describe_error
from console.backend.slide_context import Slides, caller_email
from healer_core.schema import Job, JobKind
from healer_media.errors import ObjectGone, SlideRejected, TransientError

router = APIRouter(prefix="/api/jobs/{job_id}")
log = logging.getLogger("healer.console.slides")
# Tiles and artifacts of a job never change (the slide is one pinned generation; a verdict is
# written once): the browser may keep them, privately.
PINNED = {"Cache-Control": "private, max-age=86400"}
Level = Annotated[int, Path(ge=0, le=64)]
Index = Annotated[int, Path(ge=0, le=1_000_000)]


def _slide_job(ctx: Context, job_id: str) -> Job:
    job = ctx.store.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="No such job.")
    if job.kind != JobKind.SLIDE:
        raise HTTPException(status_code=404, detail="This job is not a whole-slide image.")
    if job.bucket != ctx.settings.bucket:  # the console reads its own inbox, nothing else
        raise HTTPException(status_code=404, detail="The job's object is not in this console's bucket.")
    return job


@contextmanager
def _answers(job_id: str) -> Iterator[None]:
    """The slide path's errors as HTTP answers a person can read."""
    try:
        yield
    except SlideRejected as exc:
        code = str(exc.code)
        log.info("slide cannot be viewed", extra={"job_id": job_id, "code": code})
        detail = {"code": code, "description": describe_error(code), "message": exc.message}
        raise HTTPException(status_code=422, detail=detail) from exc
    except ObjectGone as exc:
        raise HTTPException(status_code=404, detail="The uploaded generation no longer exists.") from exc
    except TransientError as exc:
        raise HTTPException(status_code=503, detail="Storage is unavailable; try again.") from exc
    except (TileNotFound, NoArtifact) as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


@router.get("/slide.dzi", responses={200: {"content": {"application/xml": {}}}})
def slide_dzi(ctx: Context, slides: Slides, job_id: JobId, request: Request) -> Response:
    """The Deep Zoom descriptor of the job's slide (opens, or downloads, the slide on first use)."""
    # A viewer asks for this once per opening: who looked at which slide (job id, never a name).
    log.info("slide view requested", extra={"user": caller_email(request), "job_id": job_id})
    job = _slide_job(ctx, job_id)
    with _answers(job_id):
        xml = slides.viewer.dzi(job)
    return Response(xml, media_type="application/xml", headers=PINNED)


@router.get("/slide_files/{level}/{col}_{row}.jpeg", responses={200: {"content": {"image/jpeg": {}}}})
def slide_tile(ctx: Context, slides: Slides, job_id: JobId, level: Level, col: Index, row: Index) -> Response:
    """One Deep Zoom tile (JPEG), read from the slide through OpenSlide and cached."""
    cached = slides.viewer.tiles.get((job_id, level, col, row))
    if cached is None:
        job = _slide_job(ctx, job_id)
        with _answers(job_id):
            cached = slides.viewer.tile(job, level, col, row)
    return Response(cached, media_type="image/jpeg", headers=PINNED)


@router.get("/top-tiles/{rank}.jpeg", responses={200: {"content": {"image/jpeg": {}}}})
def top_tile(ctx: Context, slides: Slides, job_id: JobId, rank: Index) -> Response:
    """The verdict's rank-th top tile (0 = highest p_yes), read from the slide, ≤ 256 px."""
    job = _slide_job(ctx, job_id)
    top = job.verdict.slide.top_tiles if job.verdict is not None and job.verdict.slide is not None else []
    if rank >= len(top):
        raise HTTPException(status_code=404, detail="No such top tile.")
    with _answers(job_id):
        data = slides.viewer.region(job, top[rank])
    return Response(data, media_type="image/jpeg", headers=PINNED)


def _artifact_route(artifact: Artifact) -> Callable[..., Response]:
    def read(ctx: Context, slides: Slides, job_id: JobId) -> Response:
        job = _slide_job(ctx, job_id)
        with _answers(job_id):
            data = slides.artifacts.read(job, artifact)
        return Response(data, media_type=MEDIA_TYPES[artifact], headers=PINNED)

    read.__doc__ = f"The slide verdict's {artifact}, from the results location."
    return read


_ARTIFACT_PATHS: tuple[tuple[str, Artifact], ...] = (
    ("/heatmap.png", "heatmap"),
    ("/tiles.geojson", "geojson"),
    ("/thumbnail.png", "thumbnail"),
)
for _path, _artifact in _ARTIFACT_PATHS:
    router.get(_path, name=f"slide_{_artifact}", responses={200: {"content": {MEDIA_TYPES[_artifact]: {}}}})(
        _artifact_route(_artifact)
    )


@router.get("/heatmap-overlay.png", responses={200: {"content": {"image/png": {}}}})
def heatmap_overlay(ctx: Context, slides: Slides, job_id: JobId) -> Response:
    """The heatmap without its colour bar; `X-Overlay-Width0` / `X-Overlay-Height0` say how many
    level-0 pixels of the slide it covers (from the PNG's own scale), so the viewer places it."""
    job = _slide_job(ctx, job_id)
    with _answers(job_id):
        overlay = slides.artifacts.overlay(job)
    headers = {**PINNED, "X-Overlay-Width0": f"{overlay.width0:.3f}", "X-Overlay-Height0": f"{overlay.height0:.3f}"}
    return Response(overlay.png, media_type="image/png", headers=headers)
