"""The slide viewer's and large uploads' knobs (docs/CONSOLE.md, "Configuration").

Kept apart from `ConsoleSettings` because they only matter to whole-slide jobs: where the console
reads a slide (a Cloud Storage FUSE mount, or a bounded download cache), how much memory its
caches may hold, where slide results live, and how large uploads are chunked.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Cloud Storage requires resumable chunks in multiples of 256 KiB (all but the last one).
CHUNK_GRANULE = 256 * 1024


class SlideViewerSettings(BaseSettings):
    """Slide viewing (Deep Zoom), slide artifacts and resumable uploads."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    # The results bucket of slide jobs (heatmap, GeoJSON, thumbnail): the only bucket besides the
    # inbox that the console reads, and only under `slides/<job_id>/`.
    results_bucket: str = Field(default="healer-results", validation_alias="RESULTS_BUCKET")
    # A Cloud Storage FUSE mount of the inbox bucket (Cloud Run: /mnt/inbox). Empty: slides are
    # downloaded, generation-pinned, into the cache directory below.
    slide_mount: str = Field(default="", validation_alias="SLIDE_MOUNT")
    slide_cache_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "healer-console-slides", validation_alias="CONSOLE_SLIDE_CACHE_DIR"
    )
    slide_cache_bytes: int = Field(default=8 * 1024**3, ge=1, validation_alias="CONSOLE_SLIDE_CACHE_BYTES")
    # Same budgets as the slide service: a slide over them is refused with `too_large`.
    max_slide_bytes: int = Field(default=10 * 1000**3, ge=1, validation_alias="MAX_SLIDE_BYTES")
    max_slide_pixels: int = Field(default=40_000_000_000, ge=1, validation_alias="MAX_SLIDE_PIXELS")

    # Memory: encoded Deep Zoom tiles kept, OpenSlide's own (decoded) tile cache shared by all open
    # slides, and how many slides stay open at once.
    tile_cache_bytes: int = Field(default=64 * 1024**2, ge=0, validation_alias="CONSOLE_TILE_CACHE_BYTES")
    openslide_cache_bytes: int = Field(default=64 * 1024**2, ge=0, validation_alias="CONSOLE_OPENSLIDE_CACHE_BYTES")
    open_slides: int = Field(default=8, ge=1, le=256, validation_alias="CONSOLE_OPEN_SLIDES")
    tile_jpeg_quality: int = Field(default=80, ge=30, le=100, validation_alias="CONSOLE_TILE_JPEG_QUALITY")
    # Largest heatmap / GeoJSON / thumbnail the console relays.
    max_artifact_bytes: int = Field(default=64 * 1024**2, ge=1024, validation_alias="CONSOLE_MAX_ARTIFACT_BYTES")

    # Resumable uploads: the browser sends chunks of this size (a multiple of 256 KiB).
    upload_chunk_bytes: int = Field(
        default=8 * 1024**2, ge=CHUNK_GRANULE, le=256 * 1024**2, validation_alias="CONSOLE_UPLOAD_CHUNK_BYTES"
    )

    @field_validator("upload_chunk_bytes")
    @classmethod
    def _whole_granules(cls, value: int) -> int:
        if value % CHUNK_GRANULE:
            raise ValueError(f"CONSOLE_UPLOAD_CHUNK_BYTES must be a multiple of {CHUNK_GRANULE} (256 KiB)")
        return value
