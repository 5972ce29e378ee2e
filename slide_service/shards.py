"""Tiles into shard objects, streaming: shard n holds tiles [n * SHARD_TILES, (n + 1) * SHARD_TILES)
of the plan, and only one shard's JPEG bytes (per worker) are in memory at a time.

A shard is also the unit of parallelism: `parallel_shards` builds shards in worker processes
(each opens the slide itself: an OpenSlide handle cannot cross processes) with a bounded number
in flight, and yields them in order, so memory stays flat however slow the consumer (an upload)
is. One process is what Cloud Run's first vCPU does; more processes scale tiles/s with cores
(make bench-slide measures it).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from healer_media.shard import encode_shard, encode_tile, shard_object_name
from slide_service.grid import TilePlan, TileSpec
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


@dataclass(frozen=True)
class _Job:
    plan: TilePlan
    job_id: str
    shard_tiles: int
    quality: int


_worker: tuple[Slide, _Job] | None = None


def _init_worker(path: str, limits: SlideLimits, job: _Job) -> None:
    # The plan travels once per worker, not once per shard (20,000 tiles pickle to megabytes).
    global _worker
    _worker = (open_slide(Path(path), limits), job)


def _build_in_worker(n: int) -> ShardBlob:
    assert _worker is not None, "worker not initialised"
    slide, job = _worker
    return build_shard(slide, job.plan, job.job_id, n, job.shard_tiles, job.quality)


def parallel_shards(
    path: Path,
    limits: SlideLimits,
    plan: TilePlan,
    job_id: str,
    shard_tiles: int,
    quality: int,
    processes: int,
) -> Iterator[ShardBlob]:
    """Every shard of the plan, in order, built by `processes` worker processes with at most
    two shards per process in flight. A worker's SlideRejected re-raises here."""
    total = shard_count(plan, shard_tiles)
    job = _Job(plan, job_id, shard_tiles, quality)
    # spawn, not fork: the parent holds OpenSlide (and maybe threads); a forked copy of them is unsafe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, context, initializer=_init_worker, initargs=(str(path), limits, job)) as pool:
        pending: deque[Future[ShardBlob]] = deque()
        submitted = 0
        while submitted < total or pending:
            while submitted < total and len(pending) < 2 * processes:
                pending.append(pool.submit(_build_in_worker, submitted))
                submitted += 1
            yield pending.popleft().result()
