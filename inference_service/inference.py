"""The service's view of the model: the engine behind the micro-batcher, plus its provenance."""

from __future__ import annotations

import time

from PIL.Image import Image

from healer_core.schema import ErrorCode
from inference_service.batcher import BatcherFull, BatcherStopped, MicroBatcher
from inference_service.engine.base import Engine, EngineResult, ModelInfo
from inference_service.errors import Busy, TransientError


class Inference:
    """Submit one image, get its result with queue and inference times (ms)."""

    def __init__(self, engine: Engine, batcher: MicroBatcher) -> None:
        self.engine = engine
        self.batcher = batcher

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    def has_capacity(self) -> bool:
        """Whether a new image would be queued now rather than refused (cheap pre-check)."""
        return self.batcher.running and self.batcher.waiting < self.batcher.max_queue

    async def run(self, image: Image, explain: bool) -> tuple[EngineResult, float, float]:
        """(result, queue_ms, inference_ms). Raises Busy when full, TransientError when stopping."""
        start = time.perf_counter()
        try:
            outcome = await self.batcher.submit(image, explain)
        except BatcherFull as exc:
            raise Busy("batcher full") from exc
        except BatcherStopped as exc:
            raise TransientError(ErrorCode.ENGINE_ERROR, "service shutting down") from exc
        total_ms = (time.perf_counter() - start) * 1000.0
        queue_ms = round(outcome.queue_ms, 2)
        inference_ms = round(outcome.result.inference_ms or max(total_ms - queue_ms, 0.0), 2)
        return outcome.result, queue_ms, inference_ms
