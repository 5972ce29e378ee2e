"""Admission and scoring for shards: a shard's many tiles go through the same micro-batcher and
engine as single images, without starving them, being refused halfway, or holding memory unbounded.

- A shard is admitted only while fewer than MAX_SHARDS_IN_FLIGHT shards run in this process
  (each holds its shard object's JPEG bytes, ~16 MB for 64 tiles). A push that finds no room waits
  up to ADMISSION_WAIT_S for one, then is refused with 429 *before* its lease is taken, so a
  refusal costs a Pub/Sub redelivery, not a Firestore write or an attempt.
- An admitted shard's tiles enter the batcher through at most `tile_slots` (2 x MAX_BATCH_SIZE)
  places shared by all shards of the process, as `reserved` requests: never refused by
  MAX_QUEUE (a shard is never cut off halfway), and never counted against it (single images keep
  every one of their MAX_QUEUE places). Two batches' worth, as for single images under load (the
  inference instance's concurrency is 2 x MAX_BATCH_SIZE: one batch running, one filling): the
  next batch's tiles are preprocessed and queued while a batch runs, so shard batches run full.
  With one batch's worth they ran half full on a GPU whose batches have a fixed cost (modelled
  on the H200's measured batch times at MAX_BATCH_SIZE 8: 26.7 tiles/s, mean batch 3.9, against
  38.6 for single images; `make bench-slide`, docs/SLIDES.md). The batcher serves requests
  oldest first, so a single image waits behind at most `tile_slots` shard tiles — the running
  batch and the next — however many shards are queued.
- A tile can be given as a function that decodes it (the shard path's `OpenedShard.decode`):
  it is called in a worker thread once the tile holds one of those places, so a shard's tiles
  reach the batcher as they are decoded (the first batch starts after one batch's decode, not the
  whole shard's), and only the tiles in the batcher's places are held decoded, not all 64.
- Tiles run verdict-only (no explanation): one forward pass, no generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from PIL.Image import Image

from healer_core.schema import ErrorCode
from healer_media.errors import TransientError
from inference_service.batcher import BatchedResult, BatcherStopped
from inference_service.inference import Inference
from inference_service.slots import held

ADMISSION_WAIT_S = 30.0

# A decoded tile, or a function that decodes it (called in a worker thread, in the tile's turn).
TileSource = Image | Callable[[], Image]


class TileScorer:
    """Scores the tiles of shards through `inference`'s batcher (see the module docstring)."""

    def __init__(self, inference: Inference, max_shards: int, max_batch_size: int) -> None:
        self.inference = inference
        self.max_shards = max_shards
        self.tile_slots = 2 * max_batch_size  # one batch running, the next one filling
        self._shards = asyncio.Semaphore(max_shards)
        self._tiles = asyncio.Semaphore(self.tile_slots)

    def admitted(self, wait_s: float = ADMISSION_WAIT_S) -> contextlib.AbstractAsyncContextManager[bool]:
        """`async with scorer.admitted() as ok:` ok is True while this shard holds a place."""
        return held(self._shards, wait_s)

    async def score(self, tiles: Sequence[TileSource]) -> tuple[list[float], float]:
        """P(yes) per tile, in order, and the milliseconds it took. Raises TransientError when the
        service stops meanwhile or a tile has no score; anything a tile's decoding or the engine
        raised, as it was (the other tiles are cancelled)."""
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._one(tile)) for tile in tiles]
        try:
            outcomes = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        scores: list[float] = []
        for outcome in outcomes:
            p_yes = outcome.result.p_yes
            if p_yes is None:
                raise TransientError(ErrorCode.ENGINE_ERROR, "the model gave a tile no probability")
            scores.append(float(p_yes))
        return scores, (time.perf_counter() - started) * 1000.0

    async def _one(self, tile: TileSource) -> BatchedResult:
        async with self._tiles:
            if not self.inference.batcher.running:
                raise TransientError(ErrorCode.ENGINE_ERROR, "service shutting down")
            image = tile if isinstance(tile, Image) else await asyncio.to_thread(tile)
            item = await self.inference.prepare(image)
            try:
                return await self.inference.batcher.submit(item, False, reserved=True)
            except BatcherStopped as exc:
                raise TransientError(ErrorCode.ENGINE_ERROR, "service shutting down") from exc
