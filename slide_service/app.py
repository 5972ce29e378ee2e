"""The slide service's FastAPI app factory (Cloud Run, CPU only).

    uvicorn --factory slide_service.app:create_app

Routes: `POST /pubsub/push` (the slides topic's push subscription: `tile` and `finalize`),
`POST /pubsub/dead-letter`, `GET /healthz`, `GET /readyz`. Tests inject emulator-backed clients.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core import logs
from healer_core.publisher import Publisher
from healer_core.store import JobStore
from healer_push.http import PUSH_ERRORS, install_error_table
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

    # The error table: bad envelope 400, not ready 503, anything unexpected 503 (a retry).
    install_error_table(app, PUSH_ERRORS)
    return app
