"""Pub/Sub push endpoints: the job subscription and the dead-letter subscription.

Both require the push subscription's OIDC token when PUSH_AUDIENCE is set (see auth.py); an
unauthenticated request is refused before it can touch Firestore.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from healer_core.schema import Job, Task
from healer_core.store import DeadLetterAction
from healer_core.topics import is_slide_task
from healer_push.auth import require_push_auth
from healer_push.http import DeadLetter, PushMessage
from inference_service.deps import ReadyRuntime, RuntimeDep
from inference_service.report_worker import process_report, settle_dead_report
from inference_service.shard_dead_letter import settle_dead_shard
from inference_service.shard_worker import process_shard
from inference_service.worker import STATUS_FOR, Outcome, process_job

router = APIRouter(prefix="/pubsub", dependencies=[Depends(require_push_auth)])
log = logging.getLogger("healer.pubsub")
# Pub/Sub adds it to every message it forwards to a dead-letter topic.
SOURCE_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


@router.post("/push", status_code=204)
async def push(runtime: ReadyRuntime, message: PushMessage) -> Response:
    """One job from the push subscription: 204 handled, 429 busy/held, 503 retry later (not
    ready: 503 before the body is read; not an envelope: 400 — inference_service/http_errors.py)."""
    if message.task == Task.SHARD:  # shards have their own admission (MAX_SHARDS_IN_FLIGHT)
        return Response(status_code=STATUS_FOR[await process_shard(message, runtime.shards)])
    if message.task == Task.REPORT:  # a slide's report: its own lease and admission (report_worker.py)
        return Response(status_code=STATUS_FOR[await process_report(message, runtime.reports)])
    if is_slide_task(message.task):
        # Not ours (a slide step on the jobs topic): redelivering cannot help; the job is still
        # recorded, and the sweep republishes it to the slides topic.
        log.error("message for the slide service acknowledged", extra={"job_id": message.job_id})
        return Response(status_code=204)
    inference = runtime.inference
    assert inference is not None  # ready
    if not inference.try_admit():
        return Response(status_code=STATUS_FOR[Outcome.BUSY])  # before Firestore: nothing leased
    try:
        outcome = await process_job(message, runtime.worker_deps())
    finally:
        inference.leave()
    return Response(status_code=STATUS_FOR[outcome])


@router.post("/dead-letter", status_code=204)
async def dead_letter(runtime: RuntimeDep, envelope: DeadLetter) -> Response:
    """A message that ran out of delivery attempts: settle its job (`JobStore.settle_dead_letter`).

    204 once the job is finished, failed as `dead_lettered` (leased MAX_DELIVERY_ATTEMPTS times
    without a verdict, or never run for DEAD_LETTER_GIVE_UP_SECONDS since its first dead letter),
    or back in flight with a freshly published message. 429 while a live lease holds the job:
    the dead-letter subscription delivers it again later, when the holder has written its verdict
    or its lease has expired. Any error (e.g. the republish failed) answers 5xx: delivered again.
    """
    if envelope is None:  # unreadable: acknowledged (healer_push.http.dead_letter_envelope)
        return Response(status_code=204)
    message = envelope.job_message()
    settings = runtime.settings
    if message.task == Task.SHARD:  # a shard of a slide: its own rules (shard_dead_letter.py)
        status = await settle_dead_shard(
            message, runtime.shards, settings.max_delivery_attempts, settings.dead_letter_give_up_seconds
        )
        return Response(status_code=status)
    if message.task == Task.REPORT:  # a slide's report: failed once really tried (report_worker.py)
        status = await settle_dead_report(
            message, runtime.reports, settings.max_delivery_attempts, settings.dead_letter_give_up_seconds
        )
        return Response(status_code=status)
    store = runtime.store
    result = await asyncio.to_thread(
        store.settle_dead_letter,
        Job.for_message(message),
        max_attempts=settings.max_delivery_attempts,
        give_up_after_s=settings.dead_letter_give_up_seconds,
    )
    job = result.job
    extra = {
        "job_id": message.job_id,
        "action": str(result.action),
        "attempts": job.attempts,
        "dead_letters": job.dead_letters,
        "delivery_count": envelope.message.attributes.get(SOURCE_DELIVERY_COUNT, ""),
    }
    if result.action == DeadLetterAction.HELD:
        log.info("dead letter for a job under a live lease: left to its holder", extra=extra)
        return JSONResponse({"detail": "lease held"}, status_code=429)
    if result.action == DeadLetterAction.REPUBLISH:
        message_id = await asyncio.to_thread(runtime.publisher.publish, message)
        await asyncio.to_thread(store.mark_published, message.job_id, message_id)
        log.warning("dead letter put back in flight", extra=extra)
    elif result.action == DeadLetterAction.FAILED:
        log.warning("job dead-lettered", extra=extra)
    else:
        log.info("dead letter for a finished job", extra=extra)
    return Response(status_code=204)
