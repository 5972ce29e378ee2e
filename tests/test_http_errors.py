"""The inference service's one error table: each domain error gets its documented status, and an
unexpected one a 503 (a retry for Pub/Sub, never a silent ack)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from healer_core.schema import ErrorCode
from healer_media.errors import Busy, ImageRejected, TransientError
from healer_push.envelope import BadEnvelope
from healer_push.http import NotReady
from inference_service import http_errors


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (BadEnvelope("not an envelope"), 400, None),
        (NotReady("starting"), 503, "10"),
        (ImageRejected(ErrorCode.TOO_LARGE, "big"), 413, None),
        (ImageRejected(ErrorCode.NOT_AN_IMAGE, "pdf"), 415, None),
        (ImageRejected(ErrorCode.UNSUPPORTED_IMAGE, "mode"), 415, None),
        (ImageRejected(ErrorCode.TRUNCATED, "cut"), 422, None),
        (ImageRejected(ErrorCode.DECOMPRESSION_BOMB, "bomb"), 422, None),
        (Busy(), 429, "1"),
        (TransientError(ErrorCode.DOWNLOAD_FAILED, "storage error: ServiceUnavailable"), 503, None),
        (RuntimeError("a bug"), 503, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_each_domain_error_gets_its_status(error: Exception, status: int, retry_after: str | None) -> None:
    app = FastAPI()
    http_errors.install(app)

    @app.get("/raise")
    async def raise_it() -> None:
        raise error

    response = TestClient(app, raise_server_exceptions=False).get("/raise")
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    if isinstance(error, ImageRejected):
        assert response.json()["detail"] == {"code": error.code, "message": error.message}
