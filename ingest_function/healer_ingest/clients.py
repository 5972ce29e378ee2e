"""The job store, the publisher and the image/slide classifier that ingest works through, built
from IngestSettings.

The deployed functions (`handlers`) and the `healer` CLI both build them here, so a job the CLI
ingests gets the same TTL (`JOB_TTL_DAYS`), its publish the same timeout and topic, and its
object the same image-or-slide decision as the function's.
"""

from __future__ import annotations

from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.publisher import Publisher
from healer_core.sniff import SniffLimits
from healer_core.store import JobStore, open_job_store
from healer_core.topics import topic_router
from healer_ingest.config import IngestSettings
from healer_ingest.kinds import Classifier


def job_store(settings: IngestSettings) -> JobStore:
    """The jobs collection of the configured project and database."""
    return open_job_store(settings)


def jobs_publisher(settings: IngestSettings) -> Publisher:
    """Publishes job messages to their task's topic (images to JOBS_TOPIC, slides to SLIDES_TOPIC),
    waiting `PUBLISH_TIMEOUT_SECONDS` for the server's ack."""
    return topic_router(
        settings.project_id, settings.jobs_topic, settings.slides_topic, settings.publish_timeout_seconds
    )


def classifier(settings: IngestSettings, client: storage.Client | None = None) -> Classifier:
    """Tells slides from images by a ranged read of each object, with the configured limits."""
    limits = SniffLimits(max_image_bytes=settings.max_image_bytes, max_image_pixels=settings.max_image_pixels)
    return Classifier(client or storage.Client(project=settings.project_id), limits, settings.max_slide_bytes)
