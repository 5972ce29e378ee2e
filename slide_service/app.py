"""The slide service's FastAPI app factory (Cloud Run, CPU only).

    uvicorn --factory slide_service.app:create_app

Routes: `POST /pubsub/push` (the slides topic's push subscription: `tile` and `finalize`),
`POST /pubsub/dead-letter`, `GET /healthz`, `GET /readyz`. Tests inject emulator-backed clients.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core import logs
from healer_core.publisher import Publisher
from healer_core.store import JobStore
from slide_service import routes
from slide_service.runtime import SlideRuntime
from slide_service.settings import SlideSettings, get_settings

log = logging.getLogger("healer.slide.app")


def create_app(
    settings: SlideSettings | None = None,
    store: JobStore | None = None,
    storage_client: storage.Client | None = None,
    publisher: Publisher | None = None,
) -> FastAPI:
    """Build the slide service (clients built on first use unless injected)."""
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    runtime = SlideRuntime(settings, store=store, storage_client=storage_client, publisher=publisher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.ready = True
        yield
        # Shutting down: refuse new steps; a step the server cancels releases its lease itself.
        runtime.draining = True

    app = FastAPI(title="Healer slide service", version="0.2.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(routes.health)
    app.include_router(routes.pubsub)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Any non-2xx makes Pub/Sub redeliver: an unexpected fault is a retry, never a silent ack.
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return JSONResponse({"detail": "internal error"}, status_code=503)

    return app
