"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter()


@router.get("/")
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP (the seed's `GET /` health check too)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the model is loaded, warmed up and passed its start-up self-test, and its device
    answers a tiny probe now (a wedged GPU stops being ready)."""
    runtime = request.app.state.runtime
    readiness = await runtime.readiness()
    if readiness.ready:
        info = runtime.inference.info
        return JSONResponse({"status": "ready", "model_id": info.model_id, "prompt_version": info.prompt_version})
    return JSONResponse({"status": readiness.status, "detail": readiness.detail}, 503)
