"""The safety net for the first hop: Eventarc has no dead-letter queue, so list the bucket
and ingest every generation that has no job, and republish queued jobs whose publish was
never recorded. Idempotent: running it twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice

from google.cloud import storage

from healer_core.ids import job_id_for
from healer_core.schema import JobMessage, JobState
from healer_core.store import JobStore, utcnow

from healer_ingest.event import StorageObject
from healer_ingest.ingest import Outcome, ingest_object
from healer_ingest.publisher import Publisher

log = logging.getLogger("healer.reconcile")


def list_objects(client: storage.Client, bucket: str, prefix: str | None = None) -> Iterator[StorageObject]:
    """Every live object (current generation) in the bucket, as ingest sees it."""
    for blob in client.list_blobs(bucket, prefix=prefix):
        yield StorageObject(
            bucket=bucket,
            name=blob.name,
            generation=int(blob.generation),
            content_type=blob.content_type or "",
            size=int(blob.size or 0),
            crc32c=blob.crc32c or "",
        )


def _chunks(items: Iterable[StorageObject], size: int) -> Iterator[list[StorageObject]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def reconcile(
    objects: Iterable[StorageObject],
    *,
    store: JobStore,
    publisher: Publisher,
    max_image_bytes: int,
    unpublished_grace_s: float,
) -> Counter[str]:
    """Ingest objects with no job; republish stale unpublished jobs. Returns counts by outcome."""
    counts: Counter[str] = Counter()
    cutoff = utcnow() - timedelta(seconds=unpublished_grace_s)
    for chunk in _chunks(objects, 100):
        ids = {job_id_for(o.bucket, o.name, o.generation): o for o in chunk if not o.is_folder_marker}
        existing = store.get_many(list(ids))
        for job_id, obj in ids.items():
            job = existing.get(job_id)
            if job is None:
                result = ingest_object(
                    obj, event_id="reconcile", store=store, publisher=publisher, max_image_bytes=max_image_bytes
                )
                counts[f"ingested_{result.outcome}"] += 1
            elif (
                job.state == JobState.QUEUED
                and job.published_at is None
                and job.created_at is not None
                and job.created_at < cutoff
            ):
                message_id = publisher.publish(JobMessage.for_object(obj.bucket, obj.name, obj.generation))
                store.mark_published(job_id, message_id)
                counts[str(Outcome.REPUBLISHED)] += 1
            else:
                counts["ok"] += 1
    log.info("reconcile finished", extra={"counts": dict(counts)})
    return counts
