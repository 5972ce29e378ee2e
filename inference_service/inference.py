"""The service's view of the model: the engine behind the micro-batcher, plus its provenance."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL.Image import Image

from healer_core.schema import ErrorCode
from healer_media.errors import Busy, TransientError
from inference_service.batcher import BatcherFull, BatcherStopped, MicroBatcher
from inference_service.engine.base import Engine, EngineResult, ModelInfo, default_prepare_workers


class Inference:
    """Submit one image, get its result with queue and inference times (ms).

    Images are preprocessed in a pool of their own (`prepare_workers` threads, named "prepare"),
    apart from the threads that download and talk to Firestore.
    """

    def __init__(self, engine: Engine, batcher: MicroBatcher, prepare_workers: int = 0) -> None:
        self.engine = engine
        self.batcher = batcher
        workers = prepare_workers or default_prepare_workers()
        self._prepare_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
        # Push deliveries past the door (lease → download → decode → batch): as many as the queue
        # and one batch hold. Without it, dozens of concurrent pushes all pass the queue check
        # while they download, lease their jobs, then meet a full queue and hand the leases back.
        self.max_admitted = batcher.max_queue + batcher.max_batch_size
        self._admitted = 0

    def close(self) -> None:
        """Stop the preprocessing threads (after the batcher has stopped)."""
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    def try_admit(self) -> bool:
        """Take one of the `max_admitted` places for a push delivery; False when all are taken.
        Called on the event loop only (no lock needed); give it back with `leave()`."""
        if self._admitted >= self.max_admitted or not self.has_capacity():
            return False
        self._admitted += 1
        return True

    def leave(self) -> None:
        """Give back a place taken by `try_admit`."""
        self._admitted -= 1

    def has_capacity(self) -> bool:
        """Whether a new image would be queued now rather than refused (cheap pre-check)."""
        return self.batcher.running and self.batcher.unreserved_waiting < self.batcher.max_queue

    async def prepare(self, image: Image) -> Any:
        """`engine.prepare(image)` in the preprocessing pool (off the event loop and the engine)."""
        return await asyncio.get_running_loop().run_in_executor(self._prepare_pool, self.engine.prepare, image)

    async def run(self, image: Image, explain: bool) -> tuple[EngineResult, float, float]:
        """(result, queue_ms, inference_ms). Raises Busy when full, TransientError when stopping.

        The image is preprocessed (`engine.prepare`) in the preprocessing pool first, so its CPU work
        overlaps the batch now running; inference_ms counts that preprocessing plus its batch.
        """
        if not self.batcher.running:
            raise TransientError(ErrorCode.ENGINE_ERROR, "service shutting down")
        if not self.has_capacity():
            raise Busy("batcher full")  # refuse before spending CPU on preprocessing
        start = time.perf_counter()
        item = await self.prepare(image)
        prepare_ms = (time.perf_counter() - start) * 1000.0
        try:
            outcome = await self.batcher.submit(item, explain)
        except BatcherFull as exc:
            raise Busy("batcher full") from exc
        except BatcherStopped as exc:
            raise TransientError(ErrorCode.ENGINE_ERROR, "service shutting down") from exc
        total_ms = (time.perf_counter() - start) * 1000.0
        queue_ms = round(outcome.queue_ms, 2)
        batch_ms = outcome.result.inference_ms or max(total_ms - prepare_ms - queue_ms, 0.0)
        return outcome.result, queue_ms, round(prepare_ms + batch_ms, 2)
