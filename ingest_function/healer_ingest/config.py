"""Ingest configuration, read once from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from healer_core.settings import JobStoreSettings


class IngestSettings(JobStoreSettings):
    """Environment of the ingest and reconcile functions (the jobs' project, database, collection
    and TTL: JobStoreSettings)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    # GCP_PROJECT too: what older Cloud Functions runtimes set.
    project_id: str = Field(
        default="healer-local",
        validation_alias=AliasChoices("PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"),
    )
    jobs_topic: str = Field(default="jobs", validation_alias="JOBS_TOPIC")
    max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1, validation_alias="MAX_IMAGE_BYTES")
    bucket: str = Field(default="healer-inbox", validation_alias="HEALER_BUCKET")
    publish_timeout_seconds: float = Field(default=30.0, gt=0, validation_alias="PUBLISH_TIMEOUT_SECONDS")
    # A queued job whose publish was never recorded is republished by reconcile after this long.
    unpublished_grace_seconds: float = Field(default=120.0, ge=0, validation_alias="UNPUBLISHED_GRACE_SECONDS")
    # The sweep republishes a published, queued job nobody touched for this long (lost message).
    stale_queued_seconds: float = Field(default=3600.0, gt=0, validation_alias="STALE_QUEUED_SECONDS")
    # Whole-slide images (docs/SLIDES.md): ingest tells them from images by their first bytes.
    # Slide jobs are published to SLIDES_TOPIC; a tiled TIFF over either image limit is a slide.
    slides_topic: str = Field(default="slides", validation_alias="SLIDES_TOPIC")
    max_image_pixels: int = Field(default=178_956_970, ge=1, validation_alias="MAX_IMAGE_PIXELS")
    max_slide_bytes: int = Field(default=10 * 1000**3, ge=1, validation_alias="MAX_SLIDE_BYTES")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    return IngestSettings()
