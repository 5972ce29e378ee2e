"""The slide service's configuration: one pydantic-settings class, built once and passed down.

Every value that cannot work is refused when the settings are built (at start-up), with the
environment variable named in the message, rather than failing on the first slide.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from healer_core.settings import JobStoreSettings
from healer_push.settings import PushAuthSettings


class SlideSettings(JobStoreSettings, PushAuthSettings):
    """The slide path's knobs (tiling, tissue, shards, budgets, aggregation) and the slide service's
    deployment (project, topics, buckets, the FUSE mount, leases, push authentication); names as
    documented in README."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True)

    # Tile geometry: the model sees TILE_PX x TILE_PX pixels at TILE_MPP micrometres per pixel.
    tile_mpp: float = Field(default=1.0, gt=0.0, le=16.0, validation_alias="TILE_MPP")
    tile_px: int = Field(default=896, ge=64, le=4096, validation_alias="TILE_PX")
    # Tissue detection: the mask is computed at about TISSUE_MPP µm/px; a tile is kept when at
    # least MIN_TISSUE of its area is tissue.
    tissue_mpp: float = Field(default=8.0, gt=0.0, le=64.0, validation_alias="TISSUE_MPP")
    min_tissue: float = Field(default=0.25, gt=0.0, le=1.0, validation_alias="MIN_TISSUE")
    # A slide without (plausible) MPP metadata is assumed to be scanned at this resolution (40X).
    assumed_mpp: float = Field(default=0.25, gt=0.0, le=16.0, validation_alias="SLIDE_ASSUMED_MPP")

    # Shards: tiles per shard object, and the JPEG quality of the tiles inside.
    shard_tiles: int = Field(default=64, ge=1, le=1024, validation_alias="SHARD_TILES")
    shard_jpeg_quality: int = Field(default=90, ge=50, le=100, validation_alias="SHARD_JPEG_QUALITY")

    # Budgets: bytes of the file, pixels of level 0, tissue tiles kept. Over any: too_large.
    max_slide_bytes: int = Field(default=10 * 1000**3, ge=1, validation_alias="MAX_SLIDE_BYTES")
    max_slide_pixels: int = Field(default=40_000_000_000, ge=1, validation_alias="MAX_SLIDE_PIXELS")
    max_slide_tiles: int = Field(default=20_000, ge=1, validation_alias="MAX_SLIDE_TILES")

    # Aggregation (docs/SLIDES.md): the slide score is the mean p_yes of the SLIDE_TOP_K highest
    # tiles; the answer uses the same THRESHOLD / INDETERMINATE_BAND as single images.
    slide_top_k: int = Field(default=8, ge=1, le=1024, validation_alias="SLIDE_TOP_K")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, validation_alias="THRESHOLD")
    indeterminate_band: float = Field(default=0.1, ge=0.0, le=0.5, validation_alias="INDETERMINATE_BAND")

    # The slide report (report.py): how many tiles its one prompt holds, chosen at finalize; 0 turns
    # it off (no report task). The inference service reads the same variable as its engine's
    # ceiling: Terraform and the local stack give both services one value.
    slide_report_patches: int = Field(default=125, ge=0, le=256, validation_alias="SLIDE_REPORT_PATCHES")

    # Artifacts: the longest side of the thumbnail the heatmap is drawn over.
    heatmap_max_px: int = Field(default=2048, ge=128, le=16384, validation_alias="HEATMAP_MAX_PX")

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")

    # ---- the deployable (slide_service.app): where messages, slides and artifacts live (the
    # project and the jobs' Firestore database and collection: JobStoreSettings) ----
    # Shard messages go to JOBS_TOPIC (the inference service); tile and finalize come from SLIDES_TOPIC.
    jobs_topic: str = Field(default="jobs", validation_alias="JOBS_TOPIC")
    slides_topic: str = Field(default="slides", validation_alias="SLIDES_TOPIC")
    publish_timeout_seconds: float = Field(default=30.0, gt=0, validation_alias="PUBLISH_TIMEOUT_SECONDS")
    # Shards and thumbnails (lifecycle-deleted) / heatmaps, GeoJSON and thumbnails (kept).
    work_bucket: str = Field(default="healer-work", validation_alias="WORK_BUCKET")
    results_bucket: str = Field(default="healer-results", validation_alias="RESULTS_BUCKET")
    # Where slides are read: a Cloud Storage FUSE mount of the inbox (Cloud Run, /mnt/inbox), or
    # empty: each slide is downloaded to a temporary file under SLIDE_TMP_DIR (the local stack).
    slide_mount: str = Field(default="", validation_alias="SLIDE_MOUNT")
    slide_tmp_dir: str = Field(default="", validation_alias="SLIDE_TMP_DIR")
    # The slide job's lease while tiling or finalizing (renewed while the work progresses).
    lease_seconds: float = Field(default=300.0, gt=0, validation_alias="LEASE_SECONDS")
    # Processes that read and encode tiles (0: one per core, at most 4); every OpenSlide call
    # runs in a child process, so a slide that crashes OpenSlide fails alone (unreadable_slide).
    tiling_processes: int = Field(default=0, ge=0, le=64, validation_alias="TILING_PROCESSES")
    # A tiling still running after this long is abandoned (its processes killed, the job released);
    # under the push subscription's ack deadline and Cloud Run's request timeout (600 s each).
    tiling_budget_seconds: float = Field(default=540.0, gt=0, validation_alias="TILING_BUDGET_SECONDS")

    @model_validator(mode="after")
    def _tiles_resolve_against_the_mask(self) -> SlideSettings:
        # A tile's tissue fraction is read off the mask: a tile narrower than a few mask pixels
        # would be judged on one or two pixels, i.e. by chance.
        tile_um = self.tile_px * self.tile_mpp
        if tile_um < 4 * self.tissue_mpp:
            raise ValueError(
                f"TILE_PX x TILE_MPP = {tile_um:g} µm is under 4 mask pixels of TISSUE_MPP = {self.tissue_mpp:g} µm:"
                " lower TISSUE_MPP or raise TILE_PX / TILE_MPP"
            )
        # The rule must be able to answer yes and no at all.
        if self.threshold + self.indeterminate_band > 1.0 or self.threshold - self.indeterminate_band < 0.0:
            raise ValueError(
                f"THRESHOLD ± INDETERMINATE_BAND ({self.threshold:g} ± {self.indeterminate_band:g}) leaves [0, 1]:"
                " a slide could never answer yes or no"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> SlideSettings:
    """The process-wide settings, read from the environment once."""
    return SlideSettings()
