"""The stuck-slide sweep: part of reconcile (Cloud Scheduler runs it every 15 minutes).

The job sweep (`reconcile.sweep_stuck`) already requeues a slide whose tiler died (stage
`tiling`, lease expired: `JobStore.requeue` allows it) and publishes queued slides whose message
was lost. This sweep covers what comes after tiling, where the job itself holds no lease:

- scoring, shard running with an expired lease (its worker died): requeue the shard, publish it;
- scoring, shard queued and never published (the tiler died while publishing), older than
  `unpublished_grace_s`: publish it;
- scoring, shard queued and untouched for `stale_s` (its message was lost): publish it again;
- scoring, every shard counted but nobody claimed the finalize (the last shard's worker died
  between counting and claiming): claim it, publish `finalize`;
- finalizing, no live lease and nothing happened for `unpublished_grace_s` (the finalize
  publish was lost, or the finalizer died): publish `finalize` again;
- done, its report pending and stuck (`report_sweep.sweep_reports`).

Duplicate messages are harmless (shards and finalize are leased and fenced), so the sweep errs
on the side of publishing.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from healer_core.publisher import Publisher
from healer_core.schema import Job, JobState, SlideStage
from healer_core.slide_messages import publish_finalize, publish_shards
from healer_core.slide_store import SlideStore, older_than
from healer_core.store import JobStore, utcnow
from healer_ingest.report_sweep import sweep_reports

log = logging.getLogger("healer.reconcile")


def sweep_slides(store: JobStore, publisher: Publisher, *, unpublished_grace_s: float, stale_s: float) -> Counter[str]:
    """Make sure no slide stays scoring or finalizing forever. Returns counts by what was done."""
    slides = SlideStore.of(store)
    counts: Counter[str] = Counter()
    for job in slides.slides_in_flight():
        slide = job.slide
        if slide is None or slide.stage == SlideStage.TILING:
            continue
        if slide.stage == SlideStage.SCORING:
            if slide.shards_total and slide.shards_done >= slide.shards_total:
                if slides.claim_finalize(job.job_id):
                    publish_finalize(slides, publisher, job)
                    log.warning("finalize claimed and published by the sweep", extra={"job_id": job.job_id})
                    counts["slide_finalize_published"] += 1
                continue
            counts.update(_sweep_shards(slides, publisher, job, unpublished_grace_s, stale_s))
        elif slide.stage == SlideStage.FINALIZING:
            lease_live = job.lease is not None and job.lease.expires_at > utcnow()
            grace = utcnow() - timedelta(seconds=unpublished_grace_s)
            if not lease_live and older_than(job.updated_at, grace):
                publish_finalize(slides, publisher, job)
                log.warning("finalize republished", extra={"job_id": job.job_id})
                counts["slide_finalize_republished"] += 1
    counts.update(sweep_reports(store, publisher, unpublished_grace_s=unpublished_grace_s, stale_s=stale_s))
    return counts


def _sweep_shards(
    slides: SlideStore, publisher: Publisher, job: Job, unpublished_grace_s: float, stale_s: float
) -> Counter[str]:
    counts: Counter[str] = Counter()
    now = utcnow()
    unpublished_cutoff = now - timedelta(seconds=unpublished_grace_s)
    stale_cutoff = now - timedelta(seconds=stale_s)
    again: list[int] = []
    for shard in slides.shards(job.job_id, [JobState.QUEUED, JobState.RUNNING]):
        if shard.state == JobState.RUNNING:
            if slides.requeue_shard(job.job_id, shard.n):
                again.append(shard.n)
                counts["shard_requeued_stuck"] += 1
        elif shard.published_at is None:
            if older_than(shard.updated_at, unpublished_cutoff):
                again.append(shard.n)
                counts["shard_published"] += 1
        elif older_than(shard.updated_at, stale_cutoff):
            again.append(shard.n)
            counts["shard_republished_stale"] += 1
    if again:
        publish_shards(slides, publisher, job, again)
        log.warning("shards published by the sweep", extra={"job_id": job.job_id, "shards": len(again)})
    return counts
