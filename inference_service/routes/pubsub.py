"""Pub/Sub push endpoints: the job subscription and the dead-letter subscription.

Both require the push subscription's OIDC token when PUSH_AUDIENCE is set (see auth.py); an
unauthenticated request is refused before it can touch Firestore.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from healer_core.schema import ErrorCode, Job, JobError, JobState, Task
from healer_core.topics import is_slide_task
from inference_service.auth import require_push_auth
from inference_service.envelope import BadEnvelope, parse_envelope
from inference_service.shard_dead_letter import settle_dead_shard
from inference_service.shard_worker import process_shard
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
    if message.task == Task.SHARD:
        outcome = await process_shard(message, runtime.shards)
    elif is_slide_task(message.task):
        # Not ours (a slide step on the jobs topic): redelivering cannot help; the job is still
        # recorded, and the sweep republishes it to the slides topic.
        log.error("message for the slide service acknowledged", extra={"job_id": message.job_id})
        return Response(status_code=204)
    else:
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
    if message.task == Task.SHARD:  # a shard of a slide: its own rules (shard_dead_letter.py)
        s = runtime.settings
        status = await settle_dead_shard(
            message, runtime.shards, s.max_delivery_attempts, s.max_dead_letter_republishes
        )
        return Response(status_code=status)
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
