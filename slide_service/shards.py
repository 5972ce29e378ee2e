"""Tiles into shard objects, streaming: shard n holds tiles [n * SHARD_TILES, (n + 1) * SHARD_TILES)
of the plan, and only one shard's JPEG bytes (per worker) are in memory at a time.

`parallel_shards` spreads the tile reads over worker processes (each opens the slide itself: an
OpenSlide handle cannot cross processes; OpenSlide and JPEG coding hold the GIL-free part only
partly, so threads would not scale), a few tiles per task with a bounded number in flight, and
packs and yields the shards in order, so memory stays flat however slow the consumer (an upload)
is. make bench-slide measures tiles/s with 1 and 2 processes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from healer_core.schema import ErrorCode
from healer_media.errors import SlideRejected
from healer_media.shard import encode_shard, encode_tile, shard_object_name
from slide_service.grid import TilePlan, TileSpec
from slide_service.isolation import ChildFailed
from slide_service.open import Slide, SlideLimits, open_slide
from slide_service.tiles import read_tile


@dataclass(frozen=True)
class ShardBlob:
    """One encoded shard, ready to upload as `name`."""

    n: int
    name: str
    tiles: tuple[TileSpec, ...]
    data: bytes


def shard_count(plan: TilePlan, shard_tiles: int) -> int:
    """How many shards the plan makes."""
    return (len(plan.tiles) + shard_tiles - 1) // shard_tiles


def shard_tiles_of(plan: TilePlan, shard_tiles: int, n: int) -> tuple[TileSpec, ...]:
    """The tiles of shard `n`."""
    return plan.tiles[n * shard_tiles : (n + 1) * shard_tiles]


def build_shard(slide: Slide, plan: TilePlan, job_id: str, n: int, shard_tiles: int, quality: int) -> ShardBlob:
    """Read, encode and pack the tiles of shard `n`."""
    tiles = shard_tiles_of(plan, shard_tiles, n)
    if not tiles:
        raise IndexError(f"the plan has no shard {n}")
    encoded = [(tile, encode_tile(read_tile(slide, plan, tile), quality)) for tile in tiles]
    return ShardBlob(n, shard_object_name(job_id, n), tiles, encode_shard(job_id, n, plan.tile_px, encoded))


def iter_shards(slide: Slide, plan: TilePlan, job_id: str, shard_tiles: int, quality: int) -> Iterator[ShardBlob]:
    """Every shard of the plan, in order, built in this process."""
    for n in range(shard_count(plan, shard_tiles)):
        yield build_shard(slide, plan, job_id, n, shard_tiles, quality)


# --- worker processes ------------------------------------------------------------------------

# Tiles per task handed to a worker: small enough to balance two workers on a biopsy's few
# dozen tiles, large enough that the round trip per task is noise next to ~0.1 s per tile.
CHUNK_TILES = 4


@dataclass(frozen=True)
class _Job:
    plan: TilePlan
    quality: int


_worker: tuple[Slide, _Job] | None = None


def _init_worker(path: str, limits: SlideLimits, job: _Job) -> None:
    # The plan travels once per worker, not once per task (20,000 tiles pickle to megabytes).
    global _worker
    _worker = (open_slide(Path(path), limits), job)


def _encode_in_worker(start: int, stop: int) -> list[bytes]:
    assert _worker is not None, "worker not initialised"
    slide, job = _worker
    return [encode_tile(read_tile(slide, job.plan, tile), job.quality) for tile in job.plan.tiles[start:stop]]


def parallel_shards(
    path: Path,
    limits: SlideLimits,
    plan: TilePlan,
    job_id: str,
    shard_tiles: int,
    quality: int,
    processes: int,
    deadline: float | None = None,
) -> Iterator[ShardBlob]:
    """Every shard of the plan, in order, with tiles read and encoded by `processes` worker
    processes (CHUNK_TILES tiles per task, at most two tasks per process in flight) and packed
    here. Memory: one shard's JPEG bytes plus the tasks in flight. A worker's SlideRejected
    re-raises here; a worker that crashes (OpenSlide on a corrupt tile) is SlideRejected
    (unreadable_slide); past `deadline` (time.monotonic()) the workers are killed (ChildFailed)."""
    total = len(plan.tiles)
    chunks = [(start, min(start + CHUNK_TILES, total)) for start in range(0, total, CHUNK_TILES)]
    # spawn, not fork: the parent holds OpenSlide (and maybe threads); a forked copy of them is unsafe.
    context = multiprocessing.get_context("spawn")
    job = _Job(plan, quality)
    with ProcessPoolExecutor(processes, context, initializer=_init_worker, initargs=(str(path), limits, job)) as pool:
        pending: deque[Future[list[bytes]]] = deque()
        next_chunk = 0
        encoded: list[bytes] = []
        n = 0
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < 2 * processes:
                pending.append(pool.submit(_encode_in_worker, *chunks[next_chunk]))
                next_chunk += 1
            encoded.extend(_result(pool, pending.popleft(), deadline))
            done = n * shard_tiles + len(encoded)
            while len(encoded) >= shard_tiles or (encoded and done == total):
                batch, encoded = encoded[:shard_tiles], encoded[shard_tiles:]
                yield _pack(plan, job_id, n, shard_tiles, batch)
                n += 1


def _result(pool: ProcessPoolExecutor, future: Future[list[bytes]], deadline: float | None) -> list[bytes]:
    try:
        return future.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
    except BrokenProcessPool:
        raise SlideRejected(
            ErrorCode.UNREADABLE_SLIDE, "Reading the slide's tiles crashed OpenSlide: the file is corrupt."
        ) from None
    except TimeoutError:
        # A hung read: kill the workers (the pool has no public way), or leaving the `with` would wait forever.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        raise ChildFailed("tiling ran past its budget (TILING_BUDGET_SECONDS)") from None


def _pack(plan: TilePlan, job_id: str, n: int, shard_tiles: int, jpegs: list[bytes]) -> ShardBlob:
    tiles = shard_tiles_of(plan, shard_tiles, n)
    data = encode_shard(job_id, n, plan.tile_px, list(zip(tiles, jpegs, strict=True)))
    return ShardBlob(n, shard_object_name(job_id, n), tiles, data)
