"""The scheduling part of `make bench-slide`: shard tiles against single images through the
inference service's own `Inference`, `MicroBatcher` and `TileScorer`, on a modelled GPU.

The tiny model on this machine's CPU cannot show how full the batches are that a GPU would run:
its batches cost about what their images cost one by one. A GPU's batch has a cost of its own
(the H200 measured 100.7 ms for one image and 722.9 ms for 32, docs/BENCHMARKS.md), so a path
that runs half-full batches loses throughput there. Here the engine is a stand-in whose
`prepare` sleeps for the measured CPU preprocessing per image (in the service's PREPARE_WORKERS
threads) and whose `predict` sleeps for the measured (H200) or projected (L4) cost of a batch of
that size; everything else — admission, reserved tile slots, the batcher's window, preprocessing
threads — is the service's code. Single images arrive as the service gets them under load (2 x
MAX_BATCH_SIZE in flight); shard tiles as the shard worker submits them (64 per shard, at most
MAX_SHARDS_IN_FLIGHT shards).
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from inference_service.batcher import MicroBatcher  # noqa: E402
from inference_service.engine.base import EngineResult, ModelInfo  # noqa: E402
from inference_service.inference import Inference  # noqa: E402
from inference_service.settings import Settings  # noqa: E402
from inference_service.tile_scoring import TileScorer  # noqa: E402

# Milliseconds per batch by batch size. H200: measured (docs/BENCHMARKS.md, MedGemma-4B shapes,
# bf16, verdict only), interpolated between the measured sizes. L4: the projection there
# (compute-bound at any batch size: ≈ 182 ms per image).
H200_BATCH_MS = {1: 100.7, 8: 200.3, 32: 722.9, 64: 1425.8}
L4_MS_PER_IMAGE = 182.0
# CPU preprocessing of one 896-px tile on the H200 host (torchvision backend: 9.8–13.8 ms).
PREPARE_MS = 12.0
SHARD_TILES = 64


def h200_batch_ms(size: int) -> float:
    """The H200's measured batch time, linear between (and beyond) the measured sizes."""
    sizes = sorted(H200_BATCH_MS)
    i = min(max(bisect.bisect_left(sizes, size), 1), len(sizes) - 1)
    (a, b) = sizes[i - 1], sizes[i]
    return H200_BATCH_MS[a] + (H200_BATCH_MS[b] - H200_BATCH_MS[a]) * (size - a) / (b - a)


def l4_batch_ms(size: int) -> float:
    """The L4's projected batch time."""
    return L4_MS_PER_IMAGE * size


GPUS = {"H200 (measured batch times)": h200_batch_ms, "L4 (projected)": l4_batch_ms}


@dataclass
class ModelledGpu:
    """An engine that takes the time a GPU takes: `prepare` sleeps PREPARE_MS (a CPU thread),
    `predict` sleeps the batch's time (the engine thread waiting for the device)."""

    batch_ms: Any  # Callable[[int], float]
    sizes: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(model_id="modelled-gpu", model_revision="", quantization="none", prompt_version="-")

    def prepare(self, image: Image.Image) -> Image.Image:
        time.sleep(PREPARE_MS / 1000.0)
        return image

    def predict(self, images: Sequence[Any], explain: bool) -> list[EngineResult]:
        with self._lock:
            self.sizes.append(len(images))
        time.sleep(self.batch_ms(len(images)) / 1000.0)
        return [EngineResult(answer="no", p_yes=0.1, explanation="") for _ in images]

    def probe(self) -> None:
        return None


@dataclass(frozen=True)
class PathRate:
    """Tiles per second through one path, and the mean size of the batches it ran."""

    per_s: float
    mean_batch: float


def _default(name: str) -> Any:
    """The service's default for a setting (BATCH_WINDOW_MS, MAX_QUEUE, ...), whatever this
    environment sets."""
    return Settings.model_fields[name].default


async def _through(path: str, batch_ms: Any, batch_size: int, tiles: int) -> PathRate:
    engine = ModelledGpu(batch_ms)
    batcher = MicroBatcher(engine, batch_size, _default("batch_window_ms"), _default("max_queue"))
    await batcher.start()
    inference = Inference(engine, batcher, _default("prepare_workers"))
    images = [Image.new("RGB", (8, 8)) for _ in range(tiles)]
    started = time.perf_counter()
    try:
        if path == "shards":
            scorer = TileScorer(inference, _default("max_shards_in_flight"), batch_size)  # as shard_deps builds it

            async def shard(chunk: list[Image.Image]) -> None:
                async with scorer.admitted(wait_s=3600) as admitted:
                    assert admitted
                    await scorer.score(chunk)

            await asyncio.gather(*(shard(images[i : i + SHARD_TILES]) for i in range(0, tiles, SHARD_TILES)))
        else:
            in_flight = asyncio.Semaphore(2 * batch_size)

            async def single(image: Image.Image) -> None:
                async with in_flight:
                    await inference.run(image, False)

            await asyncio.gather(*(single(image) for image in images))
        seconds = time.perf_counter() - started
    finally:
        await batcher.stop()
        inference.close()
    return PathRate(tiles / seconds, sum(engine.sizes) / len(engine.sizes))


@dataclass(frozen=True)
class BatchingRow:
    gpu: str
    batch_size: int
    tiles: int
    shards: PathRate
    images: PathRate

    @property
    def ratio(self) -> float:
        return self.shards.per_s / self.images.per_s if self.images.per_s else 0.0


def measure(batch_sizes: list[int], h200_tiles: int, l4_tiles: int) -> list[BatchingRow]:
    """Each modelled GPU at each MAX_BATCH_SIZE: the same number of tiles through both paths."""
    rows = []
    for gpu, batch_ms in GPUS.items():
        tiles = h200_tiles if gpu.startswith("H200") else l4_tiles
        for size in batch_sizes:
            shards = asyncio.run(_through("shards", batch_ms, size, tiles))
            images = asyncio.run(_through("images", batch_ms, size, tiles))
            rows.append(BatchingRow(gpu, size, tiles, shards, images))
    return rows
