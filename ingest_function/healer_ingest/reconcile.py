"""The safety net for the first hop: Eventarc has no dead-letter queue, so list the bucket
and ingest every generation that has no job, and republish queued jobs whose publish was
never recorded. Idempotent: running it twice changes nothing the second time.

It is also the stuck-job sweep (Cloud Scheduler runs it every 15 minutes): a `running` job
whose lease expired (its worker died and the message was lost or exhausted) is requeued and
republished, and a `queued` job nobody touched for `stale_queued_s` is republished. The lease
keeps a duplicate message harmless, so the sweep errs on the side of publishing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice

from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.ids import job_id_for
from healer_core.schema import JobState
from healer_core.store import JobStore, utcnow
from healer_ingest.config import IngestSettings
from healer_ingest.event import StorageObject, object_from_blob
from healer_ingest.ingest import Outcome, ingest_object
from healer_ingest.kinds import Classifier
from healer_ingest.publisher import Publisher, publish_job
from healer_ingest.slide_sweep import sweep_slides

log = logging.getLogger("healer.reconcile")


def list_objects(client: storage.Client, bucket: str, prefix: str | None = None) -> Iterator[StorageObject]:
    """Every live object (current generation) in the bucket, as ingest sees it."""
    for blob in client.list_blobs(bucket, prefix=prefix):
        yield object_from_blob(blob)


def reconcile_bucket(
    client: storage.Client,
    bucket: str,
    prefix: str | None,
    *,
    store: JobStore,
    publisher: Publisher,
    settings: IngestSettings,
    classifier: Classifier | None = None,
) -> Counter[str]:
    """`reconcile` over one bucket (or prefix) with the limits and grace periods of `settings`.

    The scheduled reconcile function and `healer reconcile` both run this, so they cannot drift.
    """
    return reconcile(
        list_objects(client, bucket, prefix),
        store=store,
        publisher=publisher,
        max_image_bytes=settings.max_image_bytes,
        unpublished_grace_s=settings.unpublished_grace_seconds,
        stale_queued_s=settings.stale_queued_seconds,
        classifier=classifier,
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
    sweep: bool = True,
    stale_queued_s: float,
    classifier: Classifier | None = None,
) -> Counter[str]:
    """Ingest objects with no job; republish stale unpublished jobs; then (`sweep`) requeue and
    republish stuck jobs across the collection. Returns counts by outcome."""
    counts: Counter[str] = Counter()
    cutoff = utcnow() - timedelta(seconds=unpublished_grace_s)
    for chunk in _chunks(objects, 100):
        ids = {job_id_for(o.bucket, o.name, o.generation): o for o in chunk if not o.is_folder_marker}
        existing = store.get_many(list(ids))
        for job_id, obj in ids.items():
            job = existing.get(job_id)
            if job is None:
                result = ingest_object(
                    obj,
                    event_id="reconcile",
                    store=store,
                    publisher=publisher,
                    max_image_bytes=max_image_bytes,
                    classifier=classifier,
                )
                counts[f"ingested_{result.outcome}"] += 1
            elif (
                job.state == JobState.QUEUED
                and job.published_at is None
                and job.created_at is not None
                and job.created_at < cutoff
            ):
                publish_job(store, publisher, job)
                counts[str(Outcome.REPUBLISHED)] += 1
            else:
                counts["ok"] += 1
    if sweep:
        counts.update(
            sweep_stuck(store, publisher, unpublished_grace_s=unpublished_grace_s, stale_queued_s=stale_queued_s)
        )
        counts.update(sweep_slides(store, publisher, unpublished_grace_s=unpublished_grace_s, stale_s=stale_queued_s))
    log.info("reconcile finished", extra={"counts": dict(counts)})
    return counts


def sweep_stuck(
    store: JobStore, publisher: Publisher, *, unpublished_grace_s: float, stale_queued_s: float
) -> Counter[str]:
    """Make sure no job stays `queued` or `running` forever. Returns counts by what was done.

    - running, lease expired: requeue (fenced by the expiry, in a transaction) and republish;
    - queued, never published, older than `unpublished_grace_s` (its object may have been
      overwritten, so the bucket listing would not find it): publish;
    - queued, published, untouched for `stale_queued_s` (its message was lost): republish.
    """
    counts: Counter[str] = Counter()
    now = utcnow()
    for job in store.iter_jobs(JobState.RUNNING):
        if job.lease is not None and job.lease.expires_at > now:
            continue
        if store.requeue(job.job_id, stuck_only=True) is None:
            continue  # finished or leased again meanwhile
        publish_job(store, publisher, job)
        log.warning("stuck job requeued", extra={"job_id": job.job_id, "attempts": job.attempts})
        counts["requeued_stuck"] += 1
    unpublished_cutoff = now - timedelta(seconds=unpublished_grace_s)
    stale_cutoff = now - timedelta(seconds=stale_queued_s)
    for job in store.iter_jobs(JobState.QUEUED):
        if job.published_at is None:
            if job.created_at is None or job.created_at >= unpublished_cutoff:
                continue
            counts[str(Outcome.REPUBLISHED)] += 1
        elif job.updated_at is not None and job.updated_at < stale_cutoff:
            counts["republished_stale"] += 1
        else:
            continue
        publish_job(store, publisher, job)
        log.warning("queued job republished", extra={"job_id": job.job_id})
    return counts
