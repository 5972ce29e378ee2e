"""The FastAPI app factory. `import inference_service.app` never imports torch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from healer_core import logs
from healer_core.publisher import Publisher
from healer_core.store import JobStore
from healer_media.blobs import BlobSource
from inference_service import http_errors
from inference_service.engine.base import Engine
from inference_service.routes import health, predict, pubsub
from inference_service.runtime import Runtime
from inference_service.settings import Settings, get_settings

log = logging.getLogger("healer.app")


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    store: JobStore | None = None,
    blobs: BlobSource | None = None,
    publisher: Publisher | None = None,
) -> FastAPI:
    """Build the service. Tests inject a fake engine, an emulator-backed store, blob source or publisher."""
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    runtime = Runtime(settings, engine=engine, store=store, blobs=blobs, publisher=publisher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app = FastAPI(title="Healer inference service", version="0.2.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(predict.router)
    app.include_router(pubsub.router)

    http_errors.install(app)
    return app
