"""The report sweep: part of reconcile (Cloud Scheduler runs it every 15 minutes).

A slide's report runs after its verdict (job `done`), with a lease of its own on
`verdict.slide.report`, so neither the job sweep nor the slide sweep sees it. Here, for every
report still `pending`:

- leased, lease expired (its worker died): publish its `report` message again (the next delivery
  takes the expired lease);
- never published, older than `unpublished_grace_s` (the finalizer died, or its publish failed,
  between the verdict and the message): publish it;
- published and untouched for `stale_s` (its message was lost): publish it again.

Duplicate messages are harmless (the report is leased and fenced), so the sweep errs on the side
of publishing.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from healer_core.publisher import Publisher
from healer_core.report_store import ReportStore, report_of
from healer_core.slide_messages import publish_report
from healer_core.slide_store import older_than
from healer_core.store import JobStore, utcnow

log = logging.getLogger("healer.reconcile")


def sweep_reports(store: JobStore, publisher: Publisher, *, unpublished_grace_s: float, stale_s: float) -> Counter[str]:
    """Make sure no slide report stays pending forever. Returns counts by what was done."""
    reports = ReportStore.of(store)
    counts: Counter[str] = Counter()
    now = utcnow()
    unpublished_cutoff = now - timedelta(seconds=unpublished_grace_s)
    stale_cutoff = now - timedelta(seconds=stale_s)
    for job in reports.pending_reports():
        report = report_of(job)
        assert report is not None  # pending_reports yields pending reports only
        touched = report.updated_at or job.finished_at
        if report.lease is not None:
            if report.lease.expires_at > now:
                continue
            what = "report_retaken"
        elif report.published_at is None:
            if not older_than(touched, unpublished_cutoff):
                continue
            what = "report_published"
        elif older_than(touched, stale_cutoff):
            what = "report_republished_stale"
        else:
            continue
        publish_report(reports, publisher, job)
        log.warning("report task published by the sweep", extra={"job_id": job.job_id, "why": what})
        counts[what] += 1
    return counts
