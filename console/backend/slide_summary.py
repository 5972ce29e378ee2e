"""What the job list shows of a slide job: progress while it runs, counts and report when done."""

from __future__ import annotations

from pydantic import BaseModel

from healer_core.schema import Job, JobKind


class SlideSummary(BaseModel):
    """A slide job's row extras (absent for single images)."""

    stage: str
    tiles_total: int
    tiles_scored: int
    shards_total: int
    shards_done: int
    width: int
    height: int
    format: str
    tiles_positive: int | None = None  # from the slide verdict, once there is one
    report_status: str | None = None


def summarize_slide(job: Job) -> SlideSummary | None:
    """The slide part of a list row, or None for an image job."""
    if job.kind != JobKind.SLIDE:
        return None
    slide = job.slide
    verdict = job.verdict.slide if job.verdict is not None else None
    return SlideSummary(
        stage=str(slide.stage) if slide is not None else "tiling",
        tiles_total=slide.tiles_total if slide is not None else 0,
        # Scoring counts tiles as their shards are counted; a verdict has the final number.
        tiles_scored=verdict.tiles_scored if verdict is not None else (slide.tiles_scored if slide is not None else 0),
        shards_total=slide.shards_total if slide is not None else 0,
        shards_done=slide.shards_done if slide is not None else 0,
        width=slide.width if slide is not None else 0,
        height=slide.height if slide is not None else 0,
        format=slide.format if slide is not None else "",
        tiles_positive=verdict.tiles_positive if verdict is not None else None,
        report_status=verdict.report.status if verdict is not None else None,
    )
