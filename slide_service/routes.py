"""The slide service's HTTP routes: health, readiness and the two Pub/Sub push endpoints.

The push routes require the push subscription's OIDC token when PUSH_AUDIENCE is set, verified
exactly as the inference service verifies its own (`healer_push.auth`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from healer_core.schema import Task
from healer_push.auth import require_push_auth
from healer_push.http import DeadLetter, PushMessage
from slide_service import dead_letters
from slide_service.deps import ReadyRuntime, RuntimeDep
from slide_service.finalize import run_finalize
from slide_service.outcome import STATUS_FOR
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
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: started and not draining (the service holds no model)."""
    if runtime.ready and not runtime.draining:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "draining" if runtime.draining else "starting"}, 503)


@pubsub.post("/push", status_code=204)
async def push(runtime: ReadyRuntime, message: PushMessage) -> Response:
    """One `tile` or `finalize` message: 204 handled, 429 held elsewhere, 503 retry later (not
    ready: 503; not an envelope: 400 — healer_push.http's error table)."""
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
async def dead_letter(runtime: RuntimeDep, envelope: DeadLetter) -> Response:
    """A `tile` or `finalize` message that exhausted its delivery attempts (`dead_letters`)."""
    if envelope is None:  # unreadable: acknowledged (healer_push.http.dead_letter_envelope)
        return Response(status_code=204)
    status = await dead_letters.settle(envelope.job_message(), runtime, envelope.delivery_attempt)
    return Response(status_code=status)
