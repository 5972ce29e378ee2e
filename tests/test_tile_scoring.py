"""Shard tiles fill the batcher the way single images under load do: while one batch runs, the
next batch's tiles are prepared and queued, so the engine never gets a half-full batch only
because the shard path ran out of places (make bench-slide measures what that cost on a GPU)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from healer_media.errors import ShardRejected
from inference_service.batcher import MicroBatcher
from inference_service.engine.base import EngineResult
from inference_service.inference import Inference
from inference_service.tile_scoring import TileScorer
from tests.fakes import FakeEngine


@dataclass
class GatedEngine(FakeEngine):
    """A FakeEngine whose first batch runs only once `gate` is set (a GPU busy with it)."""

    gate: threading.Event = field(default_factory=threading.Event)
    started: list[int] = field(default_factory=list)  # each batch's size, as it reaches the engine

    def predict(self, images: Sequence[Any], explain: bool) -> list[EngineResult]:
        self.started.append(len(images))  # the engine's single worker thread: no race
        if len(self.started) == 1:
            self.gate.wait(60)
        return super().predict(images, explain)


async def _until(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def test_a_full_next_batch_of_shard_tiles_queues_while_a_batch_runs() -> None:
    batch_size = 4

    async def scenario() -> tuple[int, list[float], list[int]]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine, max_batch_size=batch_size, window_ms=5, max_queue=2)
        await batcher.start()
        inference = Inference(engine, batcher, prepare_workers=2)
        scorer = TileScorer(inference, 1, batch_size)
        tiles = [Image.new("RGB", (16, 16), (i * 9, 40, 90)) for i in range(3 * batch_size)]
        scoring = asyncio.ensure_future(scorer.score(tiles))
        try:
            await _until(lambda: len(engine.started) == 1)  # the first batch is on the "GPU"
            await _until(lambda: batcher.waiting >= batch_size)  # and a whole next one waits behind it
            queued = batcher.waiting
            engine.gate.set()
            scores, _ = await scoring
        finally:
            engine.gate.set()
            await asyncio.gather(scoring, return_exceptions=True)
            await batcher.stop()
            inference.close()
        return queued, scores, [call.batch_size for call in engine.calls]

    queued, scores, sizes = asyncio.run(scenario())
    assert queued >= batch_size
    assert len(scores) == 3 * batch_size and all(0.0 <= p <= 1.0 for p in scores)
    assert sum(sizes) == 3 * batch_size and max(sizes) <= batch_size
    assert sizes[1] == batch_size  # the batch queued behind the first one ran full


def test_tiles_given_as_decoders_are_decoded_in_their_turn_and_a_broken_one_fails_the_shard() -> None:
    """The shard path hands the scorer one decoder per tile: while the first batch holds the
    "GPU", only the tiles that have a place in the batcher (2 x MAX_BATCH_SIZE) were decoded, not
    the whole shard; a tile that cannot be decoded fails the scoring with its own error."""
    batch_size, n = 4, 24

    async def scenario(broken: int | None) -> tuple[int, list[float] | BaseException]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine, max_batch_size=batch_size, window_ms=5, max_queue=2)
        await batcher.start()
        inference = Inference(engine, batcher, prepare_workers=2)
        scorer = TileScorer(inference, 1, batch_size)
        decoded: list[int] = []

        def decoder(i: int) -> Callable[[], Image.Image]:
            def decode() -> Image.Image:
                decoded.append(i)
                if i == broken:
                    raise ShardRejected("bad_tile", f"tile {i}: not a JPEG")
                return Image.new("RGB", (16, 16), (i * 9, 40, 90))

            return decode

        scoring = asyncio.ensure_future(scorer.score([decoder(i) for i in range(n)]))
        try:
            await _until(lambda: len(engine.started) == 1)  # the first batch is on the "GPU"
            await _until(lambda: batcher.waiting >= batch_size)  # the next one waits behind it
            await asyncio.sleep(0.2)  # room for any further decoding to (wrongly) happen
            held = len(decoded)
        finally:
            engine.gate.set()
            (result,) = await asyncio.gather(scoring, return_exceptions=True)
            await batcher.stop()
            inference.close()
        return held, result if isinstance(result, BaseException) else result[0]

    held, scores = asyncio.run(scenario(None))
    assert batch_size < held <= 2 * batch_size, held  # the places' worth, not the shard's 24
    assert isinstance(scores, list) and len(scores) == n
    _, failure = asyncio.run(scenario(n - 3))
    assert isinstance(failure, ShardRejected) and failure.reason == "bad_tile"
