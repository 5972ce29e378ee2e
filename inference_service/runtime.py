"""Everything the routes share, built once per process: settings, model, batcher, clients.

The model loads in a background task started by the app's lifespan, so `/healthz` answers at
once while `/readyz` stays 503 until load, warm-up and the self-test have passed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from functools import cached_property

from healer_core.store import JobStore, new_client
from inference_service.batcher import MicroBatcher
from inference_service.blobs import BlobSource, GcsBlobSource
from inference_service.engine.base import Engine
from inference_service.imaging import DecodeLimits
from inference_service.inference import Inference
from inference_service.settings import Settings
from inference_service.worker import WorkerDeps

log = logging.getLogger("healer.runtime")


class Runtime:
    """The service's long-lived state."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        store: JobStore | None = None,
        blobs: BlobSource | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._store = store
        self._blobs = blobs
        self.inference: Inference | None = None
        self.ready = False
        self.draining = False
        self.failure = ""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._task: asyncio.Task[None] | None = None

    @property
    def limits(self) -> DecodeLimits:
        s = self.settings
        return DecodeLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, max_frames=s.max_frames)

    @cached_property
    def store(self) -> JobStore:
        if self._store is None:
            s = self.settings
            self._store = JobStore(new_client(s.project_id, s.firestore_database), s.jobs_collection)
        return self._store

    @cached_property
    def blobs(self) -> BlobSource:
        return self._blobs if self._blobs is not None else GcsBlobSource(self.settings.project_id)

    def worker_deps(self) -> WorkerDeps:
        assert self.inference is not None
        s = self.settings
        return WorkerDeps(
            store=self.store,
            blobs=self.blobs,
            inference=self.inference,
            limits=self.limits,
            owner=self.owner,
            lease_seconds=s.lease_seconds,
            budget_seconds=s.inference_budget_seconds,
            explain=s.explain,
        )

    async def start(self) -> None:
        """Begin loading the model in the background."""
        self._task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        s = self.settings
        try:
            engine = self._engine
            if engine is None:
                from inference_service.engine.loader import load_engine, selftest, warmup

                started = time.perf_counter()
                engine = await asyncio.to_thread(load_engine, s)
                if s.warmup:
                    await asyncio.to_thread(warmup, engine, sorted({1, s.max_batch_size}))
                await asyncio.to_thread(selftest, engine, s.explain)
                log.info("model ready", extra={"seconds": round(time.perf_counter() - started, 2)})
            batcher = MicroBatcher(engine, s.max_batch_size, s.batch_window_ms, s.max_queue)
            await batcher.start()
            self.inference = Inference(engine, batcher)
            self.ready = True
        except Exception as exc:  # noqa: BLE001 — keep serving /healthz; /readyz reports why
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load", extra={"reason": self.failure})

    async def wait_ready(self) -> None:
        """Block until loading finished (tests and benchmarks)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """SIGTERM: stop taking work, let in-flight batches finish within the grace period."""
        self.draining = True
        self.ready = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.inference is not None:
            await self.inference.batcher.stop(self.settings.shutdown_grace_seconds)
