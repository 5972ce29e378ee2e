"""Object → job: create-if-absent, publish once, record the publish."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from healer_core.ids import job_id_for
from healer_core.schema import Job, JobKind, JobState
from healer_core.store import JobStore
from healer_ingest.admission import rejection
from healer_ingest.event import StorageObject
from healer_ingest.kinds import Admission, Classifier
from healer_ingest.publisher import Publisher, publish_job

log = logging.getLogger("healer.ingest")


class Outcome(StrEnum):
    """What ingest did with one object."""

    QUEUED = "queued"  # new job, message published
    REPUBLISHED = "republished"  # job existed but its publish was never recorded
    REJECTED = "rejected"  # new job, failed at admission (no message)
    DUPLICATE = "duplicate"  # job existed and was handled: nothing to do
    SKIPPED = "skipped"  # folder marker: no job


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    job_id: str = ""


def ingest_object(
    obj: StorageObject,
    *,
    event_id: str,
    store: JobStore,
    publisher: Publisher,
    max_image_bytes: int,
    classifier: Classifier | None = None,
) -> IngestResult:
    """Make sure `obj` (one generation) has exactly one job, published exactly once.

    Safe to call any number of times for the same generation: a duplicate event publishes
    again only if the earlier attempt died between creating the job and recording its publish.
    Raises (so the trigger retries) only on infrastructure errors.

    With a `classifier`, a whole-slide image becomes a `kind: slide` job (its own limits and
    codes; its message goes to the slides topic through a `TopicRouter`); without one, every
    object is an image, as before slides.
    """
    if obj.is_folder_marker:
        log.info("folder marker skipped", extra={"event_id": event_id})
        return IngestResult(Outcome.SKIPPED)
    job_id = job_id_for(obj.bucket, obj.name, obj.generation)
    admission = classifier.admit(obj) if classifier is not None else Admission(JobKind.IMAGE)
    error = admission.error if admission.kind == JobKind.SLIDE else rejection(obj, max_image_bytes)
    job = Job(
        job_id=job_id,
        kind=admission.kind,
        slide=admission.slide,
        bucket=obj.bucket,
        name=obj.name,
        generation=obj.generation,
        content_type=obj.content_type,
        size_bytes=obj.size,
        crc32c=obj.crc32c,
        event_id=event_id,
        state=JobState.FAILED if error else JobState.QUEUED,
        error=error,
    )
    created, stored = store.create(job)
    if error is not None and created:
        log.info("job rejected at ingest", extra={"job_id": job_id, "error_code": error.code})
        return IngestResult(Outcome.REJECTED, job_id)
    if stored.published_at is not None or stored.state != JobState.QUEUED:
        log.info("duplicate event acknowledged", extra={"job_id": job_id, "state": str(stored.state)})
        return IngestResult(Outcome.DUPLICATE, job_id)
    # The stored job, not the one built here: a duplicate event republishes what the first one
    # created (its kind included), whatever a second look at the object would say now.
    message_id = publish_job(store, publisher, stored)
    outcome = Outcome.QUEUED if created else Outcome.REPUBLISHED
    log.info(
        "job published",
        extra={"job_id": job_id, "kind": str(stored.kind), "outcome": str(outcome), "message_id": message_id},
    )
    return IngestResult(outcome, job_id)
