"""Pub/Sub push endpoints: the job subscription and the dead-letter subscription.

Both require the push subscription's OIDC token when PUSH_AUDIENCE is set (see auth.py); an
unauthenticated request is refused before it can touch Firestore.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from healer_core.schema import ErrorCode, Job, JobError, JobState
from inference_service.auth import require_push_auth
from inference_service.envelope import BadEnvelope, parse_envelope
from inference_service.worker import STATUS_FOR, process_job

router = APIRouter(prefix="/pubsub", dependencies=[Depends(require_push_auth)])
log = logging.getLogger("healer.pubsub")


@router.post("/push", status_code=204)
async def push(request: Request) -> Response:
    """One job from the push subscription: 204 handled, 429 busy/held, 503 retry later."""
    runtime = request.app.state.runtime
    if runtime.draining or not runtime.ready:
        return JSONResponse({"detail": "not ready"}, status_code=503, headers={"Retry-After": "10"})
    try:
        message = parse_envelope(await request.body()).job_message()
    except BadEnvelope as exc:
        log.error("bad push envelope", extra={"reason": str(exc)})
        return JSONResponse({"detail": str(exc)}, status_code=400)
    outcome = await process_job(message, runtime.worker_deps())
    return Response(status_code=STATUS_FOR[outcome])


@router.post("/dead-letter", status_code=204)
async def dead_letter(request: Request) -> Response:
    """A message that exhausted its delivery attempts: its job becomes failed/dead_lettered."""
    runtime = request.app.state.runtime
    try:
        envelope = parse_envelope(await request.body())
        message = envelope.job_message()
    except BadEnvelope as exc:
        # Retrying cannot fix it; the dead-letter pull subscription still retains the message.
        log.error("unreadable dead letter acknowledged", extra={"reason": str(exc)})
        return Response(status_code=204)
    attempts = envelope.delivery_attempt
    error = JobError(
        code=ErrorCode.DEAD_LETTERED,
        message="Processing failed on every delivery attempt"
        + (f" ({attempts})" if attempts else "")
        + "; the message went to the dead-letter topic.",
        retryable=True,
    )
    store = runtime.store
    job = await asyncio.to_thread(store.fail_unless_done, message.job_id, error)
    if job is None:
        await asyncio.to_thread(store.create, Job.for_message(message, state=JobState.FAILED, error=error))
    log.warning("job dead-lettered", extra={"job_id": message.job_id, "delivery_attempt": attempts})
    return Response(status_code=204)
