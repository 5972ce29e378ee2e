"""The tile plan: which squares of the slide the model sees, in level-0 pixels.

A tile shows TILE_PX x TILE_PX pixels at TILE_MPP µm/px, so on the slide it is a square of
`round(TILE_PX * TILE_MPP / mpp)` level-0 pixels (3584 at 1.0 µm/px on a 0.25 µm/px scan). The
grid starts at the slide's origin and does not overlap; tiles on the right and bottom edges may
run past the slide (the part outside reads as background and counts as no tissue). A tile is
kept when at least MIN_TISSUE of it is tissue. Each tile is read from the coarsest level that
still has at least the target resolution (tiles.py). Kept tiles are numbered row-major from 0:
that index is what shards, scores, heatmaps and GeoJSON refer to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from healer_core.schema import ErrorCode
from healer_media.errors import SlideRejected
from slide_service.open import SlideInfo
from slide_service.tissue import TissueMask, best_level


@dataclass(frozen=True)
class TileSpec:
    """One tile: its index in the plan, its level-0 square, and its tissue fraction."""

    index: int
    x: int
    y: int
    w: int
    h: int
    tissue: float


@dataclass(frozen=True)
class TilePlan:
    """Every kept tile, and how to read them."""

    tiles: tuple[TileSpec, ...]
    tile_px: int
    tile_mpp: float
    size0: int  # tile side in level-0 pixels
    level: int  # the pyramid level tiles are read from
    level_downsample: float
    cols: int  # grid size over the whole slide (kept or not)
    rows: int


def tile_size0(info: SlideInfo, tile_px: int, tile_mpp: float) -> int:
    """The side of one tile in level-0 pixels."""
    return max(1, round(tile_px * tile_mpp / info.mpp))


def plan_tiles(
    info: SlideInfo,
    mask: TissueMask,
    tile_px: int,
    tile_mpp: float,
    min_tissue: float,
    max_tiles: int,
) -> TilePlan:
    """The tiles with enough tissue, or SlideRejected: `no_tissue` when none, `too_large` when
    more than `max_tiles` (MAX_SLIDE_TILES) would be scored."""
    size0 = tile_size0(info, tile_px, tile_mpp)
    cols, rows = math.ceil(info.width / size0), math.ceil(info.height / size0)
    kept: list[TileSpec] = []
    best_fraction = 0.0
    for row in range(rows):
        for col in range(cols):
            x, y = col * size0, row * size0
            fraction = mask.fraction(x, y, size0, size0)
            best_fraction = max(best_fraction, fraction)
            if fraction >= min_tissue:
                if len(kept) >= max_tiles:
                    raise SlideRejected(
                        ErrorCode.TOO_LARGE,
                        f"The slide has more than {max_tiles} tissue tiles at {tile_mpp:g} µm/px; the budget"
                        f" (MAX_SLIDE_TILES) is {max_tiles}.",
                    )
                kept.append(TileSpec(len(kept), x, y, size0, size0, round(fraction, 4)))
    if not kept:
        raise SlideRejected(
            ErrorCode.NO_TISSUE,
            f"No tile of the slide reaches {min_tissue:.0%} tissue (MIN_TISSUE); the most any tile has is"
            f" {best_fraction:.0%} and tissue covers {mask.tissue_fraction:.1%} of the slide.",
        )
    target_ds = tile_mpp / info.mpp
    level = best_level([lv.downsample for lv in info.levels], target_ds)
    return TilePlan(
        tiles=tuple(kept),
        tile_px=tile_px,
        tile_mpp=tile_mpp,
        size0=size0,
        level=level,
        level_downsample=info.levels[level].downsample,
        cols=cols,
        rows=rows,
    )
