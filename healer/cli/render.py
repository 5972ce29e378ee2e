"""How jobs are shown: Rich tables for people, JSON and CSV for programs."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from healer_core.schema import Job, JobState

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
    }


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
    """One row: the verdict, or the error, or the state it is in."""
    if job is None:
        table.add_row(name, job_id[:12], "[dim]no job yet[/dim]", "", "", "", "")
        return
    answer = p_yes = detail = ""
    if job.verdict:
        style = ANSWER_STYLE[job.verdict.answer]
        answer = f"[{style}]{job.verdict.answer}[/{style}]"
        p_yes = "—" if job.verdict.p_yes is None else f"{job.verdict.p_yes:.3f}"
        detail = job.verdict.explanation
    elif job.error:
        detail = f"{job.error.code}: {job.error.message}"
    table.add_row(name or job.name, job.job_id[:12], state_cell(job.state), answer, p_yes, short(detail), seconds(job))


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
