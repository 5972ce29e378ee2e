"""The slide's survey, run in a child process (`isolation.run_isolated`): open it, find its
tissue, plan its tiles, and render the thumbnail the heatmap is drawn on. Everything that
returns pickles: SlideInfo, the TilePlan, the thumbnail as PNG bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healer_core.schema import Slide
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


def slide_geometry(info: SlideInfo, plan: TilePlan, **progress: Any) -> Slide:
    """The job document's `slide` for a surveyed slide: its geometry and tile plan, plus `progress`
    (stage, shard counts, timings: any other `Slide` field)."""
    return Slide(
        format=info.format,
        vendor=info.vendor,
        width=info.width,
        height=info.height,
        mpp=info.mpp,
        mpp_assumed=info.mpp_assumed,
        objective=info.objective,
        levels=len(info.levels),
        tile_px=plan.tile_px,
        tile_mpp=plan.tile_mpp,
        tiles_total=len(plan.tiles),
        **progress,
    )
