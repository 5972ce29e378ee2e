"""The inference service's one error table: each domain error and the HTTP answer it gets.

    BadEnvelope          400  not a push envelope (healer_push.http)
    NotReady             503  starting or draining, Retry-After 10 (healer_push.http)
    ImageRejected(code)  413 too_large, 415 not_an_image / unsupported_image, 422 any other code
    Busy                 429  queue full, Retry-After 1
    TransientError       503  storage or engine fault: a retry
    anything else        503  a retry, never a silent ack (logged)

The push route turns a job's outcome into its status itself (worker.STATUS_FOR): these rows are
for what reaches the app — /predict's errors, and a push request refused before it is a job.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from healer_core.schema import ErrorCode
from healer_media.errors import Busy, ImageRejected, TransientError
from healer_push.http import PUSH_ERRORS, Responder, install_error_table

STATUS_FOR_IMAGE_CODE = {
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_AN_IMAGE: 415,
    ErrorCode.UNSUPPORTED_IMAGE: 415,
}


def _rejected(exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageRejected)
    body = {"detail": {"code": exc.code, "message": exc.message}}
    return JSONResponse(body, status_code=STATUS_FOR_IMAGE_CODE.get(exc.code, 422))


def _busy(exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "busy: too many images queued"}, 429, headers={"Retry-After": "1"})


def _transient(exc: Exception) -> JSONResponse:
    assert isinstance(exc, TransientError)
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=503)


ERROR_TABLE: dict[type[Exception], Responder] = {
    **PUSH_ERRORS,
    ImageRejected: _rejected,
    Busy: _busy,
    TransientError: _transient,
}


def install(app: FastAPI) -> None:
    """Give `app` the table (and the catch-all 503)."""
    install_error_table(app, ERROR_TABLE)
