"""How jobs are shown: Rich tables for people, JSON and CSV for programs.

A slide job takes the same row as an image: its answer and slide score in the answer and p_yes
columns, and in the detail column `slide · ` and where it is (stage, tiles scored of total) or
what it found (tiles positive of scored, the report's status).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from healer_core.schema import Job, JobKind, JobState, SlideVerdict

DISCLAIMER = "screening aid, not a diagnosis"
ANSWER_STYLE = {"yes": "red", "no": "green", "indeterminate": "yellow"}
SHORT = 90
STATE_STYLE = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red"}

CSV_FIELDS = [
    "job_id",
    "bucket",
    "name",
    "generation",
    "state",
    "answer",
    "p_yes",
    "explanation",
    "error_code",
    "error_message",
    "attempts",
    "model_id",
    "prompt_version",
    "created_at",
    "finished_at",
    "total_ms",
    # Slide columns (empty for images); JSON carries the whole slide document.
    "kind",
    "slide_stage",
    "tiles_total",
    "tiles_scored",
    "tiles_positive",
    "shards_done",
    "shards_total",
    "report_status",
]


class Format(StrEnum):
    """Output formats of `healer results`."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def seconds(job: Job) -> str:
    """Upload-to-verdict time, when the job finished."""
    if job.finished_at and job.created_at:
        return f"{(job.finished_at - job.created_at).total_seconds():.1f}"
    return ""


def flat(job: Job) -> dict[str, Any]:
    """One CSV row: the verdict and error flattened, timestamps in ISO 8601."""
    v, e = job.verdict, job.error
    return {
        "job_id": job.job_id,
        "bucket": job.bucket,
        "name": job.name,
        "generation": job.generation,
        "state": str(job.state),
        "answer": v.answer if v else "",
        "p_yes": "" if v is None or v.p_yes is None else round(v.p_yes, 6),
        "explanation": v.explanation if v else "",
        "error_code": e.code if e else "",
        "error_message": e.message if e else "",
        "attempts": job.attempts,
        "model_id": v.model_id if v else "",
        "prompt_version": v.prompt_version if v else "",
        "created_at": job.created_at.isoformat() if job.created_at else "",
        "finished_at": job.finished_at.isoformat() if job.finished_at else "",
        "total_ms": v.timings_ms.total if v else "",
        **_slide_fields(job),
    }


def _slide_fields(job: Job) -> dict[str, Any]:
    """The slide columns of a CSV row: progress while it runs, the counts of its verdict when done."""
    progress, found = job.slide, job.verdict.slide if job.verdict else None
    if progress is None and found is None:
        return {"kind": str(job.kind)}
    return {
        "kind": str(job.kind),
        "slide_stage": str(progress.stage) if progress else "",
        "tiles_total": progress.tiles_total if progress else "",
        "tiles_scored": found.tiles_scored if found else progress.tiles_scored if progress else "",
        "tiles_positive": found.tiles_positive if found else "",
        "shards_done": progress.shards_done if progress else "",
        "shards_total": progress.shards_total if progress else "",
        "report_status": found.report.status if found else "",
    }


def slide_progress(job: Job) -> str:
    """Where a slide job is: `scoring 192/400 tiles, 3/7 shards` (the stage alone until tiled)."""
    slide = job.slide
    if slide is None:
        return "waiting to be tiled"  # queued: the slide service has not opened it yet
    if not slide.tiles_total:
        return str(slide.stage)
    tiles = f"{slide.tiles_scored}/{slide.tiles_total} tiles"
    return f"{slide.stage} {tiles}, {slide.shards_done}/{slide.shards_total} shards"


def slide_outcome(found: SlideVerdict) -> str:
    """What a slide verdict found, in one line: `12/40 tiles positive, report done`."""
    return f"{found.tiles_positive}/{found.tiles_scored} tiles positive, report {found.report.status}"


def _detail(job: Job) -> str:
    """The detail cell: the explanation or the error; for a slide, its progress or outcome."""
    if job.kind != JobKind.SLIDE:
        if job.verdict:
            return job.verdict.explanation
        return f"{job.error.code}: {job.error.message}" if job.error else ""
    if job.verdict and job.verdict.slide:
        what = slide_outcome(job.verdict.slide)
    elif job.error:
        what = f"{job.error.code}: {job.error.message}"
    else:
        what = slide_progress(job)
    return f"slide · {what}"


def state_cell(state: JobState | str) -> str:
    style = STATE_STYLE.get(str(state), "white")
    return f"[{style}]{state}[/{style}]"


def job_table(title: str | None = None) -> Table:
    """An empty verdict table; fill it with `add_job`."""
    table = Table(title=title, title_justify="left")
    table.add_column("object", overflow="fold", ratio=1)
    for col in ("job", "state", "answer", "p_yes"):
        table.add_column(col, no_wrap=True)
    table.add_column("explanation / error", overflow="fold", ratio=1)
    table.add_column("s", justify="right", no_wrap=True)
    return table


def add_job(table: Table, job: Job | None, name: str = "", job_id: str = "") -> None:
    """One row: the verdict, or the error, or the state it is in (a slide: its progress)."""
    if job is None:
        table.add_row(name, job_id[:12], "[dim]no job yet[/dim]", "", "", "", "")
        return
    answer = p_yes = ""
    if job.verdict:
        style = ANSWER_STYLE[job.verdict.answer]
        answer = f"[{style}]{job.verdict.answer}[/{style}]"
        p_yes = "—" if job.verdict.p_yes is None else f"{job.verdict.p_yes:.3f}"
    row = (answer, p_yes, short(_detail(job)), seconds(job))
    table.add_row(name or job.name, job.job_id[:12], state_cell(job.state), *row)


def short(text: str, limit: int = SHORT) -> str:
    """Table cells stay a few lines long; --format json/csv carries the full text."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def print_table(console: Console, jobs: Iterable[Job], page_size: int, title: str) -> int:
    """Print jobs as tables of `page_size` rows each (streams large listings). Returns the count."""
    count = 0
    table = job_table(title)
    for job in jobs:
        add_job(table, job)
        count += 1
        if table.row_count >= page_size:
            console.print(table)
            table = job_table()
    if table.row_count or count == 0:
        console.print(table)
    return count


def write_json(out: IO[str], jobs: Iterable[Job]) -> int:
    """A JSON array of job documents (history left out), written as it streams."""
    count = 0
    out.write("[")
    for job in jobs:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(job.model_dump(mode="json", exclude={"history"})))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_csv(out: IO[str], jobs: Iterable[Job]) -> int:
    """CSV with a header row (`CSV_FIELDS`)."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for job in jobs:
        writer.writerow(flat(job))
        count += 1
    return count


def limited(jobs: Iterable[Job], limit: int) -> Iterator[Job]:
    """At most `limit` jobs (0 = all)."""
    for i, job in enumerate(jobs):
        if limit and i >= limit:
            return
        yield job
