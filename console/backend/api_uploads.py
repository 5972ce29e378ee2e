"""Upload routes: tickets for the browser, and the local stack's forwarding endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Header, HTTPException, Query, Request

from console.backend.context import Context
from console.backend.uploads import (
    LOCAL_UPLOAD_PATH,
    UploadRequest,
    UploadResponse,
    issue_tickets,
    normalize_content_type,
)

router = APIRouter()


@router.post("/api/uploads", response_model=UploadResponse)
def create_uploads(ctx: Context, body: UploadRequest) -> UploadResponse:
    """A signed PUT URL per file, for the inbox bucket (under the console's prefix)."""
    s = ctx.settings
    if len(body.files) > s.max_files_per_request:
        raise HTTPException(status_code=422, detail=f"At most {s.max_files_per_request} files per request.")
    return issue_tickets(
        body,
        ctx.signer,
        bucket=s.bucket,
        base_prefix=s.upload_prefix,
        ttl=timedelta(seconds=s.upload_url_ttl_seconds),
        max_bytes=s.max_image_bytes,
    )


@router.put(LOCAL_UPLOAD_PATH + "/{bucket}/{name:path}", include_in_schema=False)
async def local_upload(
    ctx: Context,
    request: Request,
    bucket: str,
    name: str,
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
    content_type: Annotated[str, Header()] = "application/octet-stream",
) -> dict[str, Any]:
    """Local stack only: check the ticket, then hand the bytes to the emulator's media upload."""
    s = ctx.settings
    if ctx.local_signer is None:
        raise HTTPException(status_code=404, detail="Not found.")
    signed_type = normalize_content_type(content_type) or ""
    if bucket != s.bucket or not ctx.local_signer.verify(bucket, name, signed_type, expires, sig):
        raise HTTPException(status_code=403, detail="The upload URL is invalid or expired.")
    declared = int(request.headers.get("content-length") or 0)
    if declared > s.max_image_bytes:
        raise HTTPException(status_code=413, detail="The file is larger than the limit.")
    data = await request.body()
    if len(data) > s.max_image_bytes:
        raise HTTPException(status_code=413, detail="The file is larger than the limit.")
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
