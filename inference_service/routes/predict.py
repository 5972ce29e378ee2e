"""The seed's API: `POST /predict` with a multipart `image_file`, answered synchronously."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Request, UploadFile

from healer_core.schema import ErrorCode, Timings, Verdict
from healer_media.errors import Busy, ImageRejected
from healer_media.imaging import decode_image
from inference_service.worker import build_verdict

router = APIRouter()

_STATUS_FOR_CODE = {
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_AN_IMAGE: 415,
    ErrorCode.UNSUPPORTED_IMAGE: 415,
}


class PredictResponse(Verdict):
    """The verdict, plus the seed's one-line `diagnosis` string."""

    diagnosis: str


@router.post("/predict", response_model=PredictResponse)
async def predict(request: Request, image_file: Annotated[UploadFile, File()]) -> PredictResponse:
    """Screen one uploaded image. 413 too large, 415 not an image, 422 corrupt, 429 busy."""
    runtime = request.app.state.runtime
    if not runtime.ready:
        raise HTTPException(503, "model is not ready", headers={"Retry-After": "10"})
    limits = runtime.limits
    start = time.perf_counter()
    data = await image_file.read(limits.max_bytes + 1)
    try:
        t0 = time.perf_counter()
        image = await asyncio.to_thread(decode_image, data, limits)
        decode_ms = (time.perf_counter() - t0) * 1000.0
    except ImageRejected as exc:
        raise HTTPException(_STATUS_FOR_CODE.get(exc.code, 422), {"code": exc.code, "message": exc.message}) from exc
    try:
        result, queue_ms, inference_ms = await runtime.inference.run(image, runtime.settings.explain)
    except Busy as exc:
        raise HTTPException(429, "busy: too many images queued", headers={"Retry-After": "1"}) from exc
    timings = Timings(
        decode=round(decode_ms, 2),
        queue=queue_ms,
        inference=inference_ms,
        total=round((time.perf_counter() - start) * 1000.0, 2),
    )
    verdict = build_verdict(result, runtime.inference.info, timings)
    diagnosis = f"{verdict.answer.capitalize()}. {verdict.explanation}".strip()
    return PredictResponse(**verdict.model_dump(), diagnosis=diagnosis)
