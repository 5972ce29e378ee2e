"""A slide's messages after tiling: one `shard` message per shard (to the jobs topic), one
`finalize` (to the slides topic) and, after the verdict, one `report` (to the jobs topic), each
recorded on its document once Pub/Sub acknowledged it.

The slide service (after tiling, after the verdict), the inference service (after the last
shard) and the sweep all publish through these functions, so "published_at is set" always means
"the server acked it".
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from healer_core.publisher import Publisher
from healer_core.report_store import ReportStore, report_of
from healer_core.schema import Job, JobMessage, ReportStatus, SlideStage, Task
from healer_core.slide_store import SlideStore
from healer_core.store import utcnow

# Shard messages in flight at once: a resection's 300 shards go out in seconds, not one by one.
PUBLISH_THREADS = 8


def publish_shards(slides: SlideStore, publisher: Publisher, job: Job, numbers: Sequence[int]) -> None:
    """Publish the messages of shards `numbers` of `job`, then record them as published."""
    message = JobMessage.for_job(job)
    with ThreadPoolExecutor(min(PUBLISH_THREADS, max(1, len(numbers))), thread_name_prefix="publish") as pool:
        list(pool.map(lambda n: publisher.publish(message.for_shard(n)), numbers))
    slides.mark_shards_published(job.job_id, list(numbers))


def publish_finalize(slides: SlideStore, publisher: Publisher, job: Job) -> str:
    """Publish the slide's `finalize` message and record it. Returns the message id."""
    message_id = publisher.publish(JobMessage.for_job(job).for_task(Task.FINALIZE))
    slides.mark_finalize_published(job.job_id, message_id)
    return message_id


def finalize_if_due(slides: SlideStore, publisher: Publisher, job_id: str) -> bool:
    """After a shard was counted (or found counted): claim the slide's finalize when every shard
    is in, and publish it; or publish a claimed finalize nobody recorded as published. True when
    a finalize message went out now."""
    job = slides.get(job_id)
    if job is None or job.slide is None or job.state.terminal:
        return False
    slide = job.slide
    all_counted = slide.shards_total > 0 and slide.shards_done >= slide.shards_total
    # Only a reader that saw every shard counted tries the claim (a transaction on the slide).
    if slide.stage == SlideStage.SCORING and all_counted and slides.claim_finalize(job_id):
        publish_finalize(slides, publisher, job)
        return True
    if slide.stage == SlideStage.FINALIZING and slide.finalize_published_at is None and job.lease is None:
        publish_finalize(slides, publisher, job)  # the claimer died before publishing (or is publishing now)
        return True
    return False


def publish_report(reports: ReportStore, publisher: Publisher, job: Job) -> str:
    """Publish the slide's `report` message (to the jobs topic: the inference service writes it)
    and record it. Returns the message id."""
    message_id = publisher.publish(JobMessage.for_job(job).for_task(Task.REPORT))
    reports.mark_report_published(job.job_id, message_id)
    return message_id


def report_unpublished(job: Job) -> bool:
    """Whether a done slide's pending report has no message recorded and nobody holds it (the
    finalizer died or its publish failed after the verdict was written)."""
    report = report_of(job)
    if report is None or report.status != ReportStatus.PENDING or report.published_at is not None:
        return False
    return report.lease is None or report.lease.expires_at <= utcnow()
