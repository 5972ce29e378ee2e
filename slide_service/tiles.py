"""Reading one tile of the plan: its level-0 square, from the coarsest level that still has the
target resolution, resized to TILE_PX x TILE_PX RGB. Only that region is decoded, never more.

On a 0.25 µm/px (40X) scan with a level at downsample 4, a 1.0 µm/px tile is read at level 1 as
exactly 896 px (no resize); at 0.5 µm/px it is read at level 0 as 1792 px and halved by area
averaging. Any other ratio is resized with Lanczos (antialiased), with a box pre-reduction for
large ratios (Pillow's `reducing_gap`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from PIL import Image

from slide_service.grid import TilePlan, TileSpec
from slide_service.open import Slide


def read_tile(slide: Slide, plan: TilePlan, tile: TileSpec) -> Image.Image:
    """The tile as a TILE_PX x TILE_PX RGB image (SlideRejected `unreadable_slide` if its data
    is damaged)."""
    ds = plan.level_downsample
    size = (max(1, round(tile.w / ds)), max(1, round(tile.h / ds)))
    region = slide.read_rgb((tile.x, tile.y), plan.level, size)
    return fit(region, plan.tile_px)


def fit(region: Image.Image, tile_px: int) -> Image.Image:
    """`region` resized to tile_px x tile_px: area averaging for whole-number reductions (exact,
    and ~30x faster than Lanczos), Lanczos for anything else."""
    width, height = region.size
    if (width, height) == (tile_px, tile_px):
        return region
    factor = width // tile_px
    if factor >= 2 and width == height == factor * tile_px:
        return region.reduce(factor)
    return region.resize((tile_px, tile_px), Image.Resampling.LANCZOS, reducing_gap=3.0)


def iter_tiles(
    slide: Slide, plan: TilePlan, tiles: Iterable[TileSpec] | None = None
) -> Iterator[tuple[TileSpec, Image.Image]]:
    """Each tile of the plan (or of `tiles`) with its pixels, one at a time."""
    for tile in plan.tiles if tiles is None else tiles:
        yield tile, read_tile(slide, plan, tile)
