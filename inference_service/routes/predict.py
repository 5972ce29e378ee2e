"""The seed's API: `POST /predict` with a multipart `image_file`, answered synchronously.

The upload limit (MAX_IMAGE_BYTES) holds while the body arrives, not after it was spooled: a
declared Content-Length over the limit is refused before a byte is read, and the body stream is
counted as it is parsed, so a request over the limit (chunked, or lying about its length) costs
at most the limit plus the multipart envelope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from healer_core.schema import ErrorCode, Timings, Verdict
from healer_media.errors import ImageRejected
from healer_media.imaging import decode_image
from inference_service.deps import ReadyRuntime, RuntimeDep
from inference_service.worker import build_verdict

router = APIRouter()

# Room for the multipart envelope around the file: boundaries, part headers, a small field or two.
MULTIPART_ALLOWANCE = 64 * 1024
FIELD = "image_file"

# The request body FastAPI would document for `image_file: UploadFile = File()`; the route parses
# the body itself so that it can stop reading at the limit.
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {FIELD: {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class PredictResponse(Verdict):
    """The verdict, plus the seed's one-line `diagnosis` string."""

    diagnosis: str


class _BodyTooLarge(Exception):
    """The request body passed the byte limit while it was being read."""


def _too_large(limit: int) -> ImageRejected:
    return ImageRejected(ErrorCode.TOO_LARGE, f"The upload is larger than the limit of {limit} bytes.")


async def _counted(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """The body chunks, raising _BodyTooLarge as soon as more than `limit` bytes have arrived."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _BodyTooLarge
        yield chunk


def refuse_declared_oversize(request: Request, runtime: RuntimeDep) -> None:
    """The route's first dependency: a body whose Content-Length is over the limit is refused
    before any of it is read, even before readiness is checked."""
    check_declared_length(request, runtime.limits.max_bytes)


def check_declared_length(request: Request, max_bytes: int) -> None:
    """Refuse a body whose Content-Length is over the limit, before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: counted while it streams
    if not declared.isdigit():
        raise HTTPException(400, "Invalid Content-Length.")
    if int(declared) > max_bytes + MULTIPART_ALLOWANCE:
        raise _too_large(max_bytes)


async def read_image_field(request: Request, max_bytes: int) -> bytes:
    """The bytes of the multipart `image_file` field, reading no more than the limit allows."""
    body_limit = max_bytes + MULTIPART_ALLOWANCE
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(422, f"Send the image as multipart/form-data, field {FIELD!r}.")
    parser = MultiPartParser(
        request.headers, _counted(request.stream(), body_limit), max_files=1, max_fields=8, max_part_size=16 * 1024
    )
    try:
        form = await parser.parse()
    except _BodyTooLarge as exc:
        raise _too_large(max_bytes) from exc
    except MultiPartException as exc:
        raise HTTPException(422, f"Malformed multipart body: {exc.message}") from exc
    upload = form.get(FIELD)
    try:
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, f"The multipart field {FIELD!r} with a file is required.")
        return await upload.read(max_bytes + 1)  # one byte more tells "too large" to the decoder
    finally:
        await form.close()


@router.post(
    "/predict",
    response_model=PredictResponse,
    openapi_extra=_OPENAPI_BODY,
    dependencies=[Depends(refuse_declared_oversize)],
)
async def predict(request: Request, runtime: ReadyRuntime) -> PredictResponse:
    """Screen one uploaded image. 413 too large, 415 not an image, 422 corrupt, 429 busy
    (the statuses: inference_service/http_errors.py)."""
    limits = runtime.limits
    start = time.perf_counter()
    data = await read_image_field(request, limits.max_bytes)
    t0 = time.perf_counter()
    image = await asyncio.to_thread(decode_image, data, limits)
    decode_ms = (time.perf_counter() - t0) * 1000.0
    inference = runtime.inference
    assert inference is not None  # ready
    result, queue_ms, inference_ms = await inference.run(image, runtime.settings.explain)
    timings = Timings(
        decode=round(decode_ms, 2),
        queue=queue_ms,
        inference=inference_ms,
        total=round((time.perf_counter() - start) * 1000.0, 2),
    )
    verdict = build_verdict(result, inference.info, timings)
    diagnosis = f"{verdict.answer.capitalize()}. {verdict.explanation}".strip()
    return PredictResponse(**verdict.model_dump(), diagnosis=diagnosis)
