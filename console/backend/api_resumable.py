"""Resumable upload routes (resumable.py): large files, whole slides above all, in chunks.

GET  /api/uploads/resumable                 chunk size, size limits, the slide suffixes
POST /api/uploads/resumable                 a session URL for one file
PUT  /api/uploads/resumable/local/{token}   local stack only: one chunk, relayed to the emulator
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from google.api_core import exceptions as gexc

from console.backend.bodies import read_capped
from console.backend.context import Context
from console.backend.resumable import (
    LOCAL_SESSION_PATH,
    SLIDE_SUFFIXES,
    RelayRefused,
    ResumableInfo,
    ResumableRequest,
    ResumableSession,
    size_limit,
)
from console.backend.slide_context import Slides, caller_email
from console.backend.uploads import batch_folder, clean_prefix, clean_segment, normalize_content_type

router = APIRouter()
log = logging.getLogger("healer.console")


@router.get("/api/uploads/resumable", response_model=ResumableInfo)
def resumable_info(ctx: Context, slides: Slides) -> ResumableInfo:
    """How the page should send large files."""
    return ResumableInfo(
        chunk_bytes=slides.settings.upload_chunk_bytes,
        max_slide_bytes=slides.settings.max_slide_bytes,
        max_image_bytes=ctx.settings.max_image_bytes,
        slide_suffixes=list(SLIDE_SUFFIXES),
    )


@router.post("/api/uploads/resumable", response_model=ResumableSession)
def start_resumable(ctx: Context, slides: Slides, body: ResumableRequest, request: Request) -> ResumableSession:
    """Start a resumable session for one file in the inbox bucket (under the console's prefix)."""
    s = ctx.settings
    limit = size_limit(body.name, s.max_image_bytes, slides.settings.max_slide_bytes)
    if body.size > limit:
        raise HTTPException(status_code=413, detail=f"The file is {body.size} bytes; the limit is {limit} bytes.")
    content_type = normalize_content_type(body.content_type)
    if content_type is None:
        raise HTTPException(status_code=422, detail=f"The content type {body.content_type!r} is not valid.")
    batch = batch_folder()
    folder = "/".join(p for p in (clean_prefix(s.upload_prefix), clean_prefix(body.prefix), batch) if p)
    name = f"{folder}/{clean_segment(body.name) or 'upload'}"
    try:
        url = slides.sessions.start(s.bucket, name, content_type, body.size, request.headers.get("origin"))
    except (gexc.GoogleAPIError, ConnectionError, TimeoutError) as exc:
        raise HTTPException(status_code=503, detail="Storage did not start the upload; try again.") from exc
    # Who started an upload: the batch folder we generated and the size, never a file or object name.
    log.info("resumable upload started", extra={"user": caller_email(request), "batch": batch, "size_bytes": body.size})
    return ResumableSession(
        file_name=body.name,
        bucket=s.bucket,
        object_name=name,
        session_url=url,
        size=body.size,
        chunk_bytes=slides.settings.upload_chunk_bytes,
        # Cloud Storage keeps a session for a week; the local relay's token for a day.
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )


@router.put(LOCAL_SESSION_PATH + "/{token}", include_in_schema=False)
async def local_chunk(
    slides: Slides,
    request: Request,
    token: str,
    content_range: Annotated[str, Header()] = "",
) -> Response:
    """Local stack only: check one chunk against its signed session, relay it to the emulator."""
    relay = slides.relay
    if relay is None:
        raise HTTPException(status_code=404, detail="Not found.")
    too_long = f"Chunks are at most {relay.max_chunk_bytes} bytes."
    if int(request.headers.get("content-length") or 0) > relay.max_chunk_bytes:
        raise HTTPException(status_code=413, detail=too_long)
    chunk = await read_capped(request.stream(), relay.max_chunk_bytes, too_long)
    try:
        answer = await relay.relay(token, content_range, chunk)
    except RelayRefused as exc:
        raise HTTPException(status_code=exc.status, detail=exc.message) from exc
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
