"""Tiles into shards: sizes, names, what a shard decodes to, and worker processes producing the
same bytes as one process."""

from __future__ import annotations

import numpy as np
import pytest

from healer_media.shard import decode_shard
from slide_service.grid import TilePlan, plan_tiles
from slide_service.open import SlideLimits, open_slide
from slide_service.shards import build_shard, iter_shards, parallel_shards, shard_count
from slide_service.synth import SynthSlide
from slide_service.tiles import read_tile
from slide_service.tissue import detect_tissue

JOB = "feedfacefeedfacefeedfacefeedface"


@pytest.fixture(scope="module")
def plan(aperio_slide: SynthSlide) -> TilePlan:
    with open_slide(aperio_slide.path) as slide:
        return plan_tiles(slide.info, detect_tissue(slide), tile_px=128, tile_mpp=1.0, min_tissue=0.25, max_tiles=1000)


def test_shards_partition_the_plan(aperio_slide: SynthSlide, plan: TilePlan) -> None:
    with open_slide(aperio_slide.path) as slide:
        blobs = list(iter_shards(slide, plan, JOB, shard_tiles=8, quality=90))
    assert len(blobs) == shard_count(plan, 8) == -(-len(plan.tiles) // 8)
    assert [b.n for b in blobs] == list(range(len(blobs)))
    assert [b.name for b in blobs[:2]] == [f"shards/{JOB}/00000.tar", f"shards/{JOB}/00001.tar"]
    assert all(len(b.tiles) == 8 for b in blobs[:-1]) and 1 <= len(blobs[-1].tiles) <= 8
    assert [t for b in blobs for t in b.tiles] == list(plan.tiles)  # each tile once, in order


def test_a_shard_decodes_to_its_tiles(aperio_slide: SynthSlide, plan: TilePlan) -> None:
    with open_slide(aperio_slide.path) as slide:
        blob = build_shard(slide, plan, JOB, 1, shard_tiles=8, quality=90)
        shard = decode_shard(blob.data, job_id=JOB, shard=1)
        assert [(t.index, t.x, t.y, t.w, t.h) for t in shard.tiles] == [
            (s.index, s.x, s.y, s.w, s.h) for s in plan.tiles[8:16]
        ]
        for spec, tile in zip(plan.tiles[8:16], shard.tiles, strict=True):
            original = np.asarray(read_tile(slide, plan, spec), np.int16)
            assert np.abs(np.asarray(tile.image, np.int16) - original).mean() < 4
        with pytest.raises(IndexError):
            build_shard(slide, plan, JOB, shard_count(plan, 8), shard_tiles=8, quality=90)


def test_worker_processes_build_the_same_shards(aperio_slide: SynthSlide, plan: TilePlan) -> None:
    with open_slide(aperio_slide.path) as slide:
        alone = [b.data for b in iter_shards(slide, plan, JOB, shard_tiles=16, quality=85)]
    workers = parallel_shards(aperio_slide.path, SlideLimits(), plan, JOB, shard_tiles=16, quality=85, processes=2)
    assert [b.data for b in workers] == alone
