"""The slide service's HTTP routes: health, readiness and the two Pub/Sub push endpoints.

The push routes require the push subscription's OIDC token when PUSH_AUDIENCE is set, verified
exactly as the inference service verifies its own (`healer_push.auth`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from healer_core.schema import Task
from healer_push.auth import require_push_auth
from healer_push.envelope import BadEnvelope, parse_envelope
from slide_service import dead_letters
from slide_service.finalize import run_finalize
from slide_service.outcome import STATUS_FOR
from slide_service.runtime import SlideRuntime
from slide_service.tiling import run_tile

health = APIRouter()
pubsub = APIRouter(prefix="/pubsub", dependencies=[Depends(require_push_auth)])
log = logging.getLogger("healer.slide.pubsub")


@health.get("/")
@health.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: started and not draining (the service holds no model)."""
    runtime: SlideRuntime = request.app.state.runtime
    if runtime.ready and not runtime.draining:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "draining" if runtime.draining else "starting"}, 503)


@pubsub.post("/push", status_code=204)
async def push(request: Request) -> Response:
    """One `tile` or `finalize` message: 204 handled, 429 held elsewhere, 503 retry later."""
    runtime: SlideRuntime = request.app.state.runtime
    if runtime.draining or not runtime.ready:
        return JSONResponse({"detail": "not ready"}, status_code=503, headers={"Retry-After": "10"})
    try:
        message = parse_envelope(await request.body()).job_message()
    except BadEnvelope as exc:
        log.error("bad push envelope", extra={"reason": str(exc)})
        return JSONResponse({"detail": str(exc)}, status_code=400)
    if message.task == Task.TILE:
        step = await run_tile(message, runtime)
    elif message.task == Task.FINALIZE:
        step = await run_finalize(message, runtime)
    else:
        # Not ours (an image or shard message on the slides topic): nothing here can run it, and
        # redelivering cannot help; its job is still recorded, and the sweep republishes it right.
        log.error("message for another service acknowledged", extra={"job_id": message.job_id, "task": message.task})
        return Response(status_code=204)
    log.info("slide step", extra={"job_id": message.job_id, "task": str(message.task), "outcome": str(step)})
    return Response(status_code=STATUS_FOR[step])


@pubsub.post("/dead-letter", status_code=204)
async def dead_letter(request: Request) -> Response:
    """A `tile` or `finalize` message that exhausted its delivery attempts (`dead_letters`)."""
    runtime: SlideRuntime = request.app.state.runtime
    try:
        envelope = parse_envelope(await request.body())
        message = envelope.job_message()
    except BadEnvelope as exc:
        # Retrying cannot fix it; the dead-letter pull subscription still retains the message.
        log.error("unreadable dead letter acknowledged", extra={"reason": str(exc)})
        return Response(status_code=204)
    status = await dead_letters.settle(message, runtime, envelope.delivery_attempt)
    return Response(status_code=status)
