"""What both push-consuming services share over HTTP: the push message as a typed dependency,
readiness as an error, and one error table mapping domain errors to statuses.

Status codes drive Pub/Sub: 2xx acks, anything else is delivered again. So the table's last
row maps any unexpected exception to 503 (a retry), never to a silent ack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from healer_core.schema import JobMessage
from healer_push.envelope import BadEnvelope, PushEnvelope, parse_envelope

log = logging.getLogger("healer.http")

Responder = Callable[[Exception], JSONResponse]


class NotReady(Exception):
    """The service is starting or draining: come back later (503, Retry-After)."""


async def push_message(request: Request) -> JobMessage:
    """The job message a push request carries (BadEnvelope → 400: redelivering cannot fix it,
    but a 4xx makes the fault visible in the subscription's metrics rather than acking it)."""
    message: JobMessage = parse_envelope(await request.body()).job_message()
    return message


async def dead_letter_envelope(request: Request) -> PushEnvelope | None:
    """A dead letter's envelope, or None for one that cannot be read (acknowledged: retrying cannot
    fix it, and the dead-letter pull subscription still retains the message)."""
    try:
        envelope = parse_envelope(await request.body())
        envelope.job_message()
    except BadEnvelope as exc:
        log.error("unreadable dead letter acknowledged", extra={"reason": str(exc)})
        return None
    return envelope


PushMessage = Annotated[JobMessage, Depends(push_message)]
DeadLetter = Annotated[PushEnvelope | None, Depends(dead_letter_envelope)]


def _bad_envelope(exc: Exception) -> JSONResponse:
    log.error("bad push envelope", extra={"reason": str(exc)})
    return JSONResponse({"detail": str(exc)}, status_code=400)


def _not_ready(exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "not ready"}, status_code=503, headers={"Retry-After": "10"})


PUSH_ERRORS: dict[type[Exception], Responder] = {BadEnvelope: _bad_envelope, NotReady: _not_ready}


def install_error_table(app: FastAPI, table: Mapping[type[Exception], Responder]) -> None:
    """Register `table` (exception type → response) and the catch-all: unexpected → 503."""
    for exc_type, respond in table.items():

        async def handler(_: Request, exc: Exception, respond: Responder = respond) -> JSONResponse:
            return respond(exc)

        app.add_exception_handler(exc_type, handler)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return JSONResponse({"detail": "internal error"}, status_code=503)

    app.add_exception_handler(Exception, unexpected)
