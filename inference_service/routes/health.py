"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from inference_service.deps import RuntimeDep

router = APIRouter()


@router.get("/")
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP (the seed's `GET /` health check too)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: the model is loaded, warmed up and passed its start-up self-test, and its device
    answers a tiny probe now (a wedged GPU stops being ready)."""
    readiness = await runtime.readiness()
    if readiness.ready and runtime.inference is not None:
        info = runtime.inference.info
        return JSONResponse({"status": "ready", "model_id": info.model_id, "prompt_version": info.prompt_version})
    return JSONResponse({"status": readiness.status, "detail": readiness.detail}, 503)
