"""Everything the routes share, built once per process: settings, model, batcher, clients.

The model loads in a background task started by the app's lifespan, so `/healthz` answers at
once while `/readyz` stays 503 until load, warm-up and the self-test have passed; after that,
`/readyz` also runs the engine's device probe each time (`inference_service.readiness`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from functools import cached_property
from types import FrameType

from healer_core.publisher import Publisher, PubSubPublisher
from healer_core.store import JobStore, open_job_store
from healer_media.blobs import BlobSource, GcsBlobSource
from healer_media.budget import MIB, DecodeBudget
from healer_media.imaging import DecodeLimits
from inference_service.batcher import MicroBatcher
from inference_service.engine.base import Engine
from inference_service.inference import Inference
from inference_service.readiness import PROBE_TIMEOUT_S, DeviceCheck, Readiness
from inference_service.report_worker import ReportDeps, report_deps
from inference_service.settings import Settings
from inference_service.shard_worker import ShardDeps, shard_deps
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
        publisher: Publisher | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._store = store
        self._blobs = blobs
        self._publisher = publisher
        self.inference: Inference | None = None
        self.ready = False
        self.draining = False
        self.failure = ""
        self.probe_timeout_s = PROBE_TIMEOUT_S
        self._device_check: DeviceCheck | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # One decode memory budget for every decode of this process: push jobs and /predict.
        self.decode_budget = DecodeBudget(settings.decode_memory_mb * MIB)
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    @property
    def limits(self) -> DecodeLimits:
        s = self.settings
        return DecodeLimits(
            max_bytes=s.max_image_bytes,
            max_pixels=s.max_image_pixels,
            max_frames=s.max_frames,
            target_px=s.decode_target_px,
            budget=self.decode_budget,
        )

    @cached_property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = open_job_store(self.settings)
        return self._store

    @cached_property
    def blobs(self) -> BlobSource:
        return self._blobs if self._blobs is not None else GcsBlobSource(self.settings.project_id)

    @cached_property
    def publisher(self) -> Publisher:
        """Publishes to the jobs topic (dead letters put back in flight)."""
        if self._publisher is None:
            self._publisher = PubSubPublisher(self.settings.project_id, self.settings.jobs_topic)
        return self._publisher

    @cached_property
    def shards(self) -> ShardDeps:
        """What shard messages need (built on first use: the model is loaded by then)."""
        return shard_deps(self)

    @cached_property
    def reports(self) -> ReportDeps:
        """What slide `report` messages need (built on first use: the model is loaded by then)."""
        return report_deps(self)

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
        """Begin loading the model in the background; start draining on the server's SIGTERM."""
        self._task = asyncio.create_task(self._load())
        self._chain_sigterm(asyncio.get_running_loop())

    def _chain_sigterm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain as soon as SIGTERM arrives, then let the server's own handler run.

        uvicorn first waits for open requests and only then runs the lifespan shutdown, so
        draining there would come too late: a batch still running when the server's graceful
        timeout ends would be cancelled with its lease held. Draining at the signal lets the batch
        finish within SHUTDOWN_GRACE_SECONDS or be released (503) while the request can answer.
        Chained only onto a Python handler a server installed (never in tests' worker threads).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.draining = True
            loop.call_soon_threadsafe(self._begin_drain)
            previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    async def _load(self) -> None:
        s = self.settings
        try:
            engine = self._engine
            if engine is None:
                from inference_service.engine.loader import load_engine, selftest, warmup, warmup_batch_sizes

                started = time.perf_counter()
                engine = await asyncio.to_thread(load_engine, s)
                if s.warmup:
                    # Warm the generate path too when explanations are on: its kernels differ from prefill's.
                    flags = (False, True) if s.explain else (False,)
                    await asyncio.to_thread(warmup, engine, warmup_batch_sizes(s.max_batch_size), flags)
                await asyncio.to_thread(selftest, engine, s.explain)
                log.info("model ready", extra={"seconds": round(time.perf_counter() - started, 2)})
            batcher = MicroBatcher(engine, s.max_batch_size, s.batch_window_ms, s.max_queue)
            await batcher.start()
            self.inference = Inference(engine, batcher, s.prepare_workers)
            self._device_check = DeviceCheck(engine.probe, self.probe_timeout_s)
            self.ready = True
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load", extra={"reason": self.failure})

    async def readiness(self) -> Readiness:
        """Ready: loaded, warmed up and self-tested (once, at start-up), and not draining, and the
        engine's device answers its probe now, within `probe_timeout_s`."""
        if not self.ready or self._device_check is None:
            return Readiness("failed" if self.failure else "starting", self.failure)
        problem = await self._device_check.problem()
        return Readiness("unhealthy", problem) if problem else Readiness("ready")

    async def wait_ready(self) -> None:
        """Block until loading finished (tests and benchmarks)."""
        if self._task is not None:
            await self._task

    def _begin_drain(self) -> asyncio.Future[None]:
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._stop())
        return self._drain

    async def stop(self) -> None:
        """SIGTERM: stop taking work, let in-flight batches finish within the grace period.

        Idempotent: the signal starts it, the lifespan shutdown waits for the same drain.
        """
        await asyncio.shield(self._begin_drain())

    async def _stop(self) -> None:
        self.draining = True
        self.ready = False
        log.info("draining", extra={"grace_seconds": self.settings.shutdown_grace_seconds})
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.inference is not None:
            # Unfinished requests get BatcherStopped → TransientError → lease released, 503.
            await self.inference.batcher.stop(self.settings.shutdown_grace_seconds)
            self.inference.close()
        if "reports" in self.__dict__:  # built: stop its thread (a running report's result is dropped)
            self.reports.runner.close()
