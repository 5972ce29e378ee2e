"""A test-only app factory: the real service with a FakeEngine, for running under uvicorn.

`uvicorn --factory tests.reliability_app:create_app` — everything else (store, blobs, timing)
comes from the environment as in production; `FAKE_ENGINE_DELAY_S` makes each batch slow so
tests can signal or kill the process mid-inference.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from inference_service import app
from inference_service.settings import Settings
from tests.fakes import FakeEngine


def create_app() -> FastAPI:
    """The service on a FakeEngine whose batches take FAKE_ENGINE_DELAY_S seconds."""
    engine = FakeEngine(delay_s=float(os.environ.get("FAKE_ENGINE_DELAY_S", "0")))
    return app.create_app(Settings(), engine=engine)
