"""Reading jobs for the console: filtered, searched and paginated listings, and job detail.

Firestore cannot search by substring, so a listing streams the newest jobs (optionally of one
state, which Firestore filters) and applies the answer filter and the name search here, over at
most `scan_limit` documents. The response says how many it scanned, so the page can tell the
user when a search may have missed older jobs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from console.backend.slide_summary import SlideSummary, summarize_slide
from healer_core.schema import ERROR_DESCRIPTIONS, Job, JobKind, JobState
from healer_core.store import JobStore

ANSWERS = ("yes", "no", "indeterminate")


class JobSummary(BaseModel):
    """One row of the job list."""

    job_id: str
    kind: JobKind = JobKind.IMAGE
    name: str
    bucket: str
    generation: int
    state: JobState
    attempts: int
    content_type: str
    size_bytes: int
    created_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime | None
    answer: str | None = None
    p_yes: float | None = None
    explanation: str = ""
    model_id: str = ""
    model_revision: str = ""
    quantization: str = ""
    prompt_version: str = ""
    timings_ms: dict[str, float] | None = None
    error_code: str | None = None
    error_description: str | None = None
    error_message: str | None = None
    slide: SlideSummary | None = None  # slide jobs only


class JobPage(BaseModel):
    """A page of the job list."""

    items: list[JobSummary]
    offset: int
    limit: int
    next_offset: int | None
    scanned: int
    scan_limited: bool = Field(description="True when the scan stopped at its limit: older jobs were not searched")
    counts: dict[str, int] | None = None


def describe_error(code: str | None) -> str | None:
    """The plain-words description of an error code (the code itself when unknown)."""
    if code is None:
        return None
    return ERROR_DESCRIPTIONS.get(code, f"Processing failed ({code}).")


def summarize(job: Job) -> JobSummary:
    """Flatten a job into a list row."""
    verdict = job.verdict
    error = job.error
    return JobSummary(
        job_id=job.job_id,
        kind=job.kind,
        name=job.name,
        bucket=job.bucket,
        generation=job.generation,
        state=job.state,
        attempts=job.attempts,
        content_type=job.content_type,
        size_bytes=job.size_bytes,
        created_at=job.created_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        answer=verdict.answer if verdict else None,
        p_yes=verdict.p_yes if verdict else None,
        explanation=verdict.explanation if verdict else "",
        model_id=verdict.model_id if verdict else "",
        model_revision=verdict.model_revision if verdict else "",
        quantization=verdict.quantization if verdict else "",
        prompt_version=verdict.prompt_version if verdict else "",
        timings_ms=verdict.timings_ms.model_dump() if verdict else None,
        error_code=error.code if error else None,
        error_description=describe_error(error.code) if error else None,
        error_message=error.message if error else None,
        slide=summarize_slide(job),
    )


def job_detail(job: Job) -> dict[str, Any]:
    """The full job for the detail view: verdict, error in plain words, history oldest first.

    The fencing tokens (the job's lease, a slide report's lease) are left out: the browser has no
    use for them.
    """
    data = job.model_dump(
        mode="json", exclude={"lease": {"token"}, "verdict": {"slide": {"report": {"lease": {"token"}}}}}
    )
    data["history"] = sorted(data["history"], key=lambda entry: entry["at"])
    if job.error is not None:
        data["error"]["description"] = describe_error(job.error.code)
    return data


def _matches(job: Job, answer: str | None, search: str | None) -> bool:
    if answer is not None and (job.verdict is None or job.verdict.answer != answer):
        return False
    return not search or search.casefold() in job.name.casefold()


def list_jobs(
    store: JobStore,
    *,
    state: JobState | None = None,
    answer: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
    scan_limit: int = 2000,
    with_counts: bool = True,
) -> JobPage:
    """Newest jobs first, filtered by state and answer, searched by object-name substring."""
    items: list[JobSummary] = []
    matched = 0
    scanned = 0
    has_more = False
    for job in store.newest(state, scan_limit):
        scanned += 1
        if not _matches(job, answer, search):
            continue
        if matched >= offset + limit:
            has_more = True
            break
        if matched >= offset:
            items.append(summarize(job))
        matched += 1
    return JobPage(
        items=items,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if has_more else None,
        scanned=scanned,
        scan_limited=scanned >= scan_limit and not has_more,
        counts=store.count_by_state() if with_counts else None,
    )
