"""Micro-batching: concurrent requests share one forward pass.

Callers `await batcher.submit(item, explain)`, where an item is a PIL image or what the engine's
`prepare` made of one (the service prepares in request threads, off the engine's thread). A single
collector task takes the oldest waiting request, gathers others with the same `explain` flag for up
to `window_ms` (or until `max_batch_size`), and runs them as ONE `engine.predict` call in the
batcher's own worker thread, so the event loop keeps accepting requests meanwhile (those form the
next batch, and are preprocessed while this one runs).

Errors, drawn once:

    BatcherError
    ├── BatcherFull     more than `max_queue` requests already waiting  → answer 429
    └── BatcherStopped  the batcher is stopping or not started          → answer 503

Anything the engine raises for one image reaches that image's caller unchanged: a failed batch is
retried image by image, so one bad image never fails the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL.Image import Image

from inference_service.engine.base import Engine, EngineResult

log = logging.getLogger(__name__)


class BatcherError(RuntimeError):
    """Base of the batcher's own errors (never raised for an engine failure)."""


class BatcherFull(BatcherError):
    """Too many requests are waiting: back off and retry (HTTP 429)."""


class BatcherStopped(BatcherError):
    """The batcher is not running (stopping, stopped, or never started): HTTP 503."""


@dataclass(frozen=True)
class BatchedResult:
    """One caller's verdict and how it was obtained.

    `queue_ms`: from submit until its batch started running; `result.inference_ms`: the whole
    batch's engine time (each image waited for all of it); `batch_size`: images in that batch.
    """

    result: EngineResult
    queue_ms: float
    batch_size: int


@dataclass
class _Request:
    item: Image | object  # a PIL image or what engine.prepare() returned
    explain: bool
    future: asyncio.Future[BatchedResult]
    enqueued: float = field(default_factory=time.perf_counter)
    reserved: bool = False  # admitted by a caller that bounds its own requests (not counted in max_queue)


class MicroBatcher:
    """Gathers concurrent `submit` calls into batches for one engine; one batch runs at a time."""

    def __init__(self, engine: Engine, max_batch_size: int = 8, window_ms: float = 10.0, max_queue: int = 64):
        if max_batch_size < 1 or max_queue < 1 or window_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, window_ms >= 0")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.window_s = window_ms / 1000.0
        self.max_queue = max_queue
        self._waiting: deque[_Request] = deque()
        self._in_flight: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        self.batches_run = 0  # engine.predict calls made for batches (retries not counted)

    @property
    def waiting(self) -> int:
        """Requests queued and not yet in a running batch."""
        return len(self._waiting)

    @property
    def unreserved_waiting(self) -> int:
        """Waiting requests that count against `max_queue` (all but reserved ones)."""
        return sum(1 for r in self._waiting if not r.reserved)

    @property
    def running(self) -> bool:
        """True between start() and stop(): submit() accepts work."""
        return self._accepting

    async def start(self) -> None:
        """Start the collector task (and the engine's worker thread). Idempotent."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._accepting = True
        self._task = asyncio.create_task(self._collect(), name="micro-batcher")

    async def stop(self, grace_s: float = 8.0) -> None:
        """Stop taking work; let waiting and in-flight requests finish within `grace_s`.

        Requests still unfinished after the grace period get BatcherStopped (the running engine
        call cannot be interrupted; its results are dropped).
        """
        self._accepting = False
        if self._task is None:
            return
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_s)
        except TimeoutError:
            leftovers = [*self._in_flight, *self._waiting]  # before cancelling clears _in_flight
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        else:
            leftovers = [*self._in_flight, *self._waiting]
        for request in leftovers:
            _fail(request, BatcherStopped("the service is shutting down"))
        self._waiting.clear()
        self._in_flight = []
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._task = None
        self._executor = None

    async def submit(self, item: Image | object, explain: bool, *, reserved: bool = False) -> BatchedResult:
        """Queue one image (PIL, or prepared by the engine) and wait for its verdict.

        Raises BatcherFull when `max_queue` requests are already waiting, BatcherStopped when not
        running, or whatever the engine raised for this image. A `reserved` request is never
        refused as full and does not count against `max_queue`: its caller bounds how many it has
        waiting (the shard path's tile slots), so a shard is never refused halfway through and its
        tiles never take the places of single images.
        """
        if not self._accepting or self._wakeup is None:
            raise BatcherStopped("the batcher is not running")
        if not reserved and self.unreserved_waiting >= self.max_queue:
            raise BatcherFull(f"{self.unreserved_waiting} requests already waiting (MAX_QUEUE={self.max_queue})")
        request = _Request(item, explain, asyncio.get_running_loop().create_future(), reserved=reserved)
        self._waiting.append(request)
        self._wakeup.set()
        return await request.future

    async def _collect(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_cancelled()
            if not self._waiting:
                if not self._accepting:
                    return  # drained: stop() may finish
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill_window()
            batch = self._take_batch()
            if batch:
                await self._run(batch)

    async def _fill_window(self) -> None:
        """Wait until the oldest request's group is full or its window has passed."""
        assert self._wakeup is not None
        oldest = self._waiting[0]
        deadline = oldest.enqueued + self.window_s
        while self._accepting and self._group_size(oldest.explain) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)

    def _group_size(self, explain: bool) -> int:
        return sum(1 for r in self._waiting if r.explain == explain)

    def _take_batch(self) -> list[_Request]:
        """The oldest request and the next ones with its explain flag, up to max_batch_size, FIFO."""
        self._drop_cancelled()
        if not self._waiting:
            return []
        flag = self._waiting[0].explain
        batch: list[_Request] = []
        kept: deque[_Request] = deque()
        while self._waiting:
            request = self._waiting.popleft()
            if request.explain == flag and len(batch) < self.max_batch_size:
                batch.append(request)
            else:
                kept.append(request)
        self._waiting = kept
        return batch

    def _drop_cancelled(self) -> None:
        # A caller that went away (client disconnect, timeout) needs no inference.
        if any(r.future.done() for r in self._waiting):
            self._waiting = deque(r for r in self._waiting if not r.future.done())

    async def _run(self, batch: list[_Request]) -> None:
        self._in_flight = batch
        started = time.perf_counter()
        explain = batch[0].explain
        try:
            self.batches_run += 1
            results = await self._predict([r.item for r in batch], explain)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
            else:
                log.warning(
                    "batch failed; retrying its images one by one",
                    extra={"event": "batch_failed", "batch_size": len(batch), "error": type(exc).__name__},
                )
                await self._run_singly(batch)
        else:
            for request, result in zip(batch, results, strict=True):
                _resolve(request, result, started, len(batch))
        finally:
            self._in_flight = []

    async def _run_singly(self, batch: list[_Request]) -> None:
        for request in batch:
            if request.future.done():
                continue
            started = time.perf_counter()
            try:
                (result,) = await self._predict([request.item], request.explain)
            except Exception as exc:
                _fail(request, exc)
            else:
                _resolve(request, result, started, 1)

    async def _predict(self, items: Sequence[Image | object], explain: bool) -> list[EngineResult]:
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self.engine.predict, items, explain)
        if len(results) != len(items):
            raise RuntimeError(f"engine returned {len(results)} results for {len(items)} images")
        return results


def _resolve(request: _Request, result: EngineResult, started: float, batch_size: int) -> None:
    if not request.future.done():
        queue_ms = (started - request.enqueued) * 1000.0
        request.future.set_result(BatchedResult(result, round(queue_ms, 3), batch_size))


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
