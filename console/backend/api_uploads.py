"""Upload routes: tickets for the browser, and the local stack's forwarding endpoint."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Header, HTTPException, Query, Request

from console.backend.bodies import read_capped
from console.backend.context import CallerDep, Context
from console.backend.uploads import (
    LOCAL_UPLOAD_PATH,
    UploadRequest,
    UploadResponse,
    issue_tickets,
    normalize_content_type,
)

router = APIRouter()
log = logging.getLogger("healer.console")


@router.post("/api/uploads", response_model=UploadResponse)
def create_uploads(ctx: Context, caller: CallerDep, body: UploadRequest) -> UploadResponse:
    """A signed PUT URL per file, for the inbox bucket (under the console's prefix)."""
    s = ctx.settings
    if len(body.files) > s.max_files_per_request:
        raise HTTPException(status_code=422, detail=f"At most {s.max_files_per_request} files per request.")
    response = issue_tickets(
        body,
        ctx.signer,
        bucket=s.bucket,
        base_prefix=s.upload_prefix,
        ttl=timedelta(seconds=s.upload_url_ttl_seconds),
        max_bytes=s.max_image_bytes,
    )
    # Who asked for upload URLs: the batch folder we generated, never a file or object name (they
    # may carry patient identifiers). Each job id follows from its object's generation, known
    # only once the upload lands; Firestore links the batch's objects to their jobs.
    log.info(
        "upload URLs issued",
        extra={
            "user": caller.email if caller else None,
            "batch": response.batch,
            "files": len(response.uploads),
            "signed": sum(1 for ticket in response.uploads if ticket.url),
        },
    )
    return response


@router.put(LOCAL_UPLOAD_PATH + "/{bucket}/{name:path}", include_in_schema=False)
async def local_upload(
    ctx: Context,
    request: Request,
    bucket: str,
    name: str,
    size: Annotated[int, Query(ge=0)],
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
    content_type: Annotated[str, Header()] = "application/octet-stream",
) -> dict[str, Any]:
    """Local stack only: check the ticket (content type and size), then hand the bytes to the
    emulator's media upload."""
    s = ctx.settings
    if ctx.local_signer is None:
        raise HTTPException(status_code=404, detail="Not found.")
    signed_type = normalize_content_type(content_type) or ""
    if bucket != s.bucket or not ctx.local_signer.verify(bucket, name, signed_type, size, expires, sig):
        raise HTTPException(status_code=403, detail="The upload URL is invalid or expired.")
    declared = request.headers.get("content-length")
    if declared is not None and declared != str(size):
        raise HTTPException(status_code=400, detail=f"The upload URL was signed for {size} bytes, not {declared}.")
    data = await read_capped(request.stream(), size, f"The upload URL was signed for {size} bytes.")
    if len(data) != size:
        raise HTTPException(status_code=400, detail=f"The upload URL was signed for {size} bytes, not {len(data)}.")
    async with httpx.AsyncClient(timeout=60.0) as client:
        response = await client.post(
            f"{s.emulator_url}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            content=data,
            headers={"Content-Type": signed_type},
        )
    if response.status_code >= 300:
        raise HTTPException(status_code=502, detail=f"The storage emulator answered {response.status_code}.")
    resource = response.json()
    return {
        "bucket": resource.get("bucket"),
        "name": resource.get("name"),
        "generation": resource.get("generation"),
    }
