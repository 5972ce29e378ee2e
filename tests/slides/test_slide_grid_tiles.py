"""The tile plan and tile reads: level-0 geometry at 1.0 and 0.5 µm/px, the level each tile is
read from, the tissue threshold, the budgets, and pixels landing where the plan says."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from healer_core.schema import ErrorCode
from healer_media.errors import SlideRejected
from slide_service.grid import TilePlan, TileSpec, plan_tiles
from slide_service.open import Slide, open_slide
from slide_service.synth import SynthSlide
from slide_service.tiles import fit, iter_tiles, read_tile
from slide_service.tissue import TissueMask, detect_tissue


@pytest.fixture(scope="module")
def opened(aperio_slide: SynthSlide) -> Iterator[tuple[Slide, TissueMask]]:
    with open_slide(aperio_slide.path) as slide:
        yield slide, detect_tissue(slide)


def tile_at(plan: TilePlan, x: int, y: int) -> TileSpec:
    """The kept tile whose square contains the level-0 point (x, y)."""
    for tile in plan.tiles:
        if tile.x <= x < tile.x + tile.w and tile.y <= y < tile.y + tile.h:
            return tile
    raise LookupError((x, y))


def is_glass(pixels: np.ndarray) -> bool:
    return bool(pixels.mean() > 225 and np.ptp(pixels.reshape(-1, 3).mean(axis=0)) < 10)


@pytest.mark.parametrize(
    ("tile_mpp", "size0", "level", "grid"),
    [(1.0, 3584, 1, (3, 2)), (0.5, 1792, 0, (5, 4))],
    ids=["1.0um", "0.5um"],
)
def test_plan_geometry(
    opened: tuple[Slide, TissueMask], tile_mpp: float, size0: int, level: int, grid: tuple[int, int]
) -> None:
    slide, mask = opened
    plan = plan_tiles(slide.info, mask, tile_px=896, tile_mpp=tile_mpp, min_tissue=0.25, max_tiles=1000)
    assert (plan.size0, plan.level, (plan.cols, plan.rows)) == (size0, level, grid)
    assert plan.level_downsample == slide.info.levels[level].downsample
    assert [t.index for t in plan.tiles] == list(range(len(plan.tiles)))
    assert [(t.y, t.x) for t in plan.tiles] == sorted((t.y, t.x) for t in plan.tiles)  # row-major
    for tile in plan.tiles:
        assert tile.x % size0 == 0 and tile.y % size0 == 0 and tile.w == tile.h == size0
        assert tile.tissue >= 0.25
        assert tile.tissue == pytest.approx(mask.fraction(tile.x, tile.y, size0, size0), abs=1e-4)


@pytest.mark.parametrize(("tile_mpp", "scale"), [(1.0, 4), (0.5, 2)], ids=["1.0um", "0.5um"])
def test_tile_pixels_land_where_the_plan_says(
    opened: tuple[Slide, TissueMask], aperio_slide: SynthSlide, tile_mpp: float, scale: int
) -> None:
    slide, mask = opened
    plan = plan_tiles(slide.info, mask, tile_px=896, tile_mpp=tile_mpp, min_tissue=0.25, max_tiles=1000)
    normal, tumor = aperio_slide.regions
    y = tumor.y + tumor.h // 2
    tile = tile_at(plan, tumor.x, y)  # the tile over the tumor's left edge
    image = read_tile(slide, plan, tile)
    assert (image.mode, image.size) == ("RGB", (896, 896))
    pixels = np.asarray(image)
    row = (y - tile.y) // scale
    edge = (tumor.x - tile.x) / scale  # where the tumor starts, in tile pixels
    assert is_glass(pixels[row - 8 : row + 8, int(edge) - 24 : int(edge) - 8])
    assert not is_glass(pixels[row - 8 : row + 8, int(edge) + 8 : int(edge) + 24])
    if normal.x + normal.w > tile.x:  # the normal region's right edge, also in this tile
        end = (normal.x + normal.w - tile.x) / scale
        assert not is_glass(pixels[row - 8 : row + 8, int(end) - 24 : int(end) - 8])
        assert is_glass(pixels[row - 8 : row + 8, int(end) + 8 : int(end) + 24])
    # The same square read at full resolution and averaged down matches (JPEG noise only).
    full = slide.read_rgb((tile.x, tile.y), 0, (256 * scale, 256 * scale)).reduce(scale)
    diff = np.abs(np.asarray(full, np.int16) - pixels[:256, :256].astype(np.int16))
    assert diff.mean() < 8


def test_iter_tiles_yields_every_tile_once(opened: tuple[Slide, TissueMask]) -> None:
    slide, mask = opened
    plan = plan_tiles(slide.info, mask, tile_px=112, tile_mpp=1.0, min_tissue=0.5, max_tiles=1000)
    seen = [(tile.index, image.size) for tile, image in iter_tiles(slide, plan)]
    assert seen == [(t.index, (112, 112)) for t in plan.tiles]
    some = plan.tiles[3:5]
    assert [t for t, _ in iter_tiles(slide, plan, some)] == list(some)


def test_min_tissue_keeps_fewer_tiles_as_it_rises(opened: tuple[Slide, TissueMask]) -> None:
    slide, mask = opened
    counts = [
        len(plan_tiles(slide.info, mask, tile_px=112, tile_mpp=1.0, min_tissue=m, max_tiles=10_000).tiles)
        for m in (0.1, 0.5, 0.99)
    ]
    assert counts[0] > counts[1] > counts[2] > 0


def test_every_tumor_tile_is_planned(opened: tuple[Slide, TissueMask], aperio_slide: SynthSlide) -> None:
    slide, mask = opened
    plan = plan_tiles(slide.info, mask, tile_px=112, tile_mpp=1.0, min_tissue=0.25, max_tiles=10_000)
    tumor = aperio_slide.tumor
    size = plan.size0
    inside = {
        (x, y)
        for y in range(0, slide.info.height, size)
        for x in range(0, slide.info.width, size)
        if tumor.contains(x, y) and tumor.contains(x + size - 1, y + size - 1)
    }
    assert inside and inside <= {(t.x, t.y) for t in plan.tiles}


def test_tile_budget_and_no_tissue(opened: tuple[Slide, TissueMask], blank_slide: SynthSlide) -> None:
    slide, mask = opened
    with pytest.raises(SlideRejected) as over:
        plan_tiles(slide.info, mask, tile_px=112, tile_mpp=1.0, min_tissue=0.25, max_tiles=10)
    assert over.value.code == ErrorCode.TOO_LARGE and "MAX_SLIDE_TILES" in over.value.message
    with open_slide(blank_slide.path) as blank, pytest.raises(SlideRejected) as empty:
        plan_tiles(blank.info, detect_tissue(blank), tile_px=112, tile_mpp=1.0, min_tissue=0.25, max_tiles=10)
    assert empty.value.code == ErrorCode.NO_TISSUE and "MIN_TISSUE" in empty.value.message


def test_fit_resizes_to_the_tile() -> None:
    assert fit(Image.new("RGB", (1792, 1792)), 896).size == (896, 896)  # area average
    assert fit(Image.new("RGB", (1000, 1000)), 896).size == (896, 896)  # Lanczos
    assert fit(Image.new("RGB", (500, 500)), 896).size == (896, 896)  # a finer tile than the scan
    same = Image.new("RGB", (896, 896))
    assert fit(same, 896) is same
