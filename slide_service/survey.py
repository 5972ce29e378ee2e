"""The slide's survey, run in a child process (`isolation.run_isolated`): open it, find its
tissue, plan its tiles, and render the thumbnail the heatmap is drawn on. Everything that
returns pickles: SlideInfo, the TilePlan, the thumbnail as PNG bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from slide_service.grid import TilePlan, plan_tiles
from slide_service.open import SlideInfo, SlideLimits, open_slide
from slide_service.settings import SlideSettings
from slide_service.tissue import detect_tissue


@dataclass(frozen=True)
class Survey:
    """What tiling needs to know before reading a single tile."""

    info: SlideInfo
    plan: TilePlan
    thumbnail_png: bytes
    thumbnail_downsample: float  # level-0 pixels per thumbnail pixel
    tissue_fraction: float


def survey_slide(path: str, settings: SlideSettings) -> Survey:
    """Open the slide at `path`, detect tissue and plan the tiles (SlideRejected when it cannot be
    read, has no tissue or is over a budget)."""
    with open_slide(Path(path), SlideLimits.from_settings(settings)) as slide:
        mask = detect_tissue(slide, settings.tissue_mpp)
        plan = plan_tiles(
            slide.info, mask, settings.tile_px, settings.tile_mpp, settings.min_tissue, settings.max_slide_tiles
        )
        buf = io.BytesIO()
        mask.thumbnail.save(buf, format="PNG")
        return Survey(slide.info, plan, buf.getvalue(), mask.downsample, mask.tissue_fraction)
