"""The job store and the jobs-topic publisher ingest writes through, built from IngestSettings.

The deployed functions (`handlers`) and the `healer` CLI both build them here, so a job the CLI
ingests gets the same TTL (`JOB_TTL_DAYS`) and its publish the same timeout as the function's.
"""

from __future__ import annotations

from healer_core.store import JobStore, new_client
from healer_ingest.config import IngestSettings
from healer_ingest.publisher import PubSubPublisher


def job_store(settings: IngestSettings) -> JobStore:
    """The jobs collection of the configured project and database."""
    return JobStore(
        new_client(settings.project_id, settings.firestore_database), settings.jobs_collection, settings.job_ttl_days
    )


def jobs_publisher(settings: IngestSettings) -> PubSubPublisher:
    """A publisher to the configured jobs topic that waits `PUBLISH_TIMEOUT_SECONDS` for the server's ack."""
    return PubSubPublisher(settings.project_id, settings.jobs_topic, settings.publish_timeout_seconds)
