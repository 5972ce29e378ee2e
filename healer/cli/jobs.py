"""`healer submit`, `healer results`, `healer watch`: put images and slides in, get verdicts out."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from healer.cli.app import app, console
from healer.cli.errors import CliError
from healer.cli.lookup import find_job
from healer.cli.render import DISCLAIMER, Format, add_job, job_table, limited, print_table, write_csv, write_json
from healer.cli.target import TargetCommand, target
from healer_core.schema import Job, JobKind, JobState

if TYPE_CHECKING:
    from healer.cli.uploads import Uploaded
    from healer_core.store import JobStore

EXIT_FAILED = 1
EXIT_TIMEOUT = 3


@app.command(cls=TargetCommand)
def submit(
    ctx: typer.Context,
    paths: Annotated[
        list[str], typer.Argument(metavar="PATH", help="Image or slide files, folders (recursive) or globs.")
    ],
    prefix: Annotated[str, typer.Option(help="Object name prefix, e.g. batch-7/.")] = "",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the jobs live and print the verdicts.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 1800.0,
    workers: Annotated[int, typer.Option(help="Parallel uploads.", min=1, max=64)] = 8,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Reuse objects already uploaded with identical bytes.")
    ] = False,
) -> None:
    """Upload images and slides; each upload becomes one job. Prints the job id per file.

    --wait follows the jobs live, with a bar over the tiles of each slide. Exit code with --wait:
    0 all done, 1 any job failed, 3 timed out. Ctrl-C stops cleanly: every file is either
    uploaded (its job runs) or not uploaded at all.
    """
    from healer.cli.uploads import Uploader, collect, upload_all

    clients = target(ctx).clients()
    settings = clients.settings
    items = collect(paths, prefix)
    clients.bucket()
    out = console()
    out.print(f"{len(items)} file(s) → gs://{settings.bucket}/{prefix}", style="dim")

    def announce(u: Uploaded) -> None:
        note = "  [dim](already uploaded)[/dim]" if u.reused else ""
        out.print(f"{u.job_id}  gs://{settings.bucket}/{u.name}{note}")

    uploader = Uploader(settings.project, settings.bucket, skip_existing)
    result = upload_all(uploader, items, workers, out, on_uploaded=announce)
    if result.interrupted:
        raise CliError(
            f"interrupted: {len(result.uploaded)} of {len(items)} uploaded (their jobs run); "
            f"{len(result.not_uploaded)} not uploaded: rerun with --skip-existing to finish",
            exit_code=130,
        )
    if not wait:
        out.print("follow with: healer results --since 1h   (or rerun with --wait)", style="dim")
        return
    order = sorted(result.uploaded, key=lambda u: u.name)
    _wait_and_report([(u.name, u.job_id) for u in order], clients.store, timeout)


def _wait_and_report(named: list[tuple[str, str]], store: JobStore, timeout: float) -> dict[str, Job]:
    """Follow jobs to the end, print the verdict table, exit non-zero on failure or timeout."""
    from healer.cli.follow import follow_with_progress

    out = console()
    ids = [job_id for _, job_id in named]
    try:
        jobs = follow_with_progress(store, ids, timeout, out)
    except KeyboardInterrupt:
        raise CliError("stopped waiting; the jobs carry on: healer results --since 1h", exit_code=130) from None
    table = job_table(f"Verdicts ({DISCLAIMER})")
    for name, job_id in named:
        add_job(table, jobs.get(job_id), name, job_id)
    out.print(table)
    done, failed, unfinished = _tally(ids, jobs)
    line = f"{done} done, {failed} failed, {unfinished} unfinished"
    slides = [j.job_id for j in jobs.values() if j.kind == JobKind.SLIDE]
    if slides:
        s_done, s_failed, s_unfinished = _tally(slides, jobs)
        line += f" (slides: {s_done} done, {s_failed} failed, {s_unfinished} unfinished)"
    out.print(line)
    if unfinished:
        raise CliError(f"{unfinished} job(s) not finished after {timeout:.0f}s", exit_code=EXIT_TIMEOUT)
    if failed:
        raise typer.Exit(EXIT_FAILED)
    return jobs


def _tally(ids: list[str], jobs: dict[str, Job]) -> tuple[int, int, int]:
    """(done, failed, unfinished) among `ids`; a job not seen yet is unfinished."""
    states = [jobs[i].state if i in jobs else None for i in ids]
    done = states.count(JobState.DONE)
    failed = states.count(JobState.FAILED)
    return done, failed, len(ids) - done - failed


@app.command(cls=TargetCommand)
def results(
    ctx: typer.Context,
    obj: Annotated[
        str | None,
        typer.Argument(metavar="OBJECT", help="Object name, gs://bucket/name or job id: its latest verdict."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Jobs updated since: 2h, 7d or an ISO time.")] = None,
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.TABLE,
    limit: Annotated[int, typer.Option(help="At most this many jobs (0: all).", min=0)] = 0,
    page_size: Annotated[int, typer.Option(help="Firestore page size; also rows per table.", min=1)] = 300,
) -> None:
    """The latest verdict of one object, or a listing (filtered by --since / --state), paginated."""
    from healer.cli.when import parse_since

    if obj is not None and (since or state):
        raise CliError("give an OBJECT or filters (--since, --state), not both")
    clients = target(ctx).clients(need_bucket=False)
    settings, store = clients.settings, clients.store
    jobs: Any
    if obj is not None:
        jobs = [find_job(store, obj, settings.bucket or None)]
    else:
        jobs = limited(store.iter_jobs(state, page_size, parse_since(since) if since else None), limit)
    if fmt == Format.JSON:
        write_json(sys.stdout, jobs)
    elif fmt == Format.CSV:
        write_csv(sys.stdout, jobs)
    else:
        out = console()
        count = print_table(out, jobs, page_size, f"Jobs in {settings.collection} ({DISCLAIMER})")
        out.print(f"{count} job(s)", style="dim")


class _Watch:
    """Jobs seen by a collection listener, most recently updated first."""

    def __init__(self, state: JobState | None) -> None:
        self.state = state
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def on_snapshot(self, snapshots: list[Any], changes: list[Any], read_time: Any) -> None:
        with self.lock:
            for change in changes:
                doc = change.document
                if change.type.name == "REMOVED" or not doc.exists:
                    continue
                job = Job.from_doc(doc.to_dict())
                if self.state is None or job.state == self.state:
                    self.jobs[doc.id] = job
                else:
                    self.jobs.pop(doc.id, None)
        self.changed.set()

    def render(self, rows: int, title: str) -> Any:
        from rich.console import Group
        from rich.text import Text

        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.updated_at or datetime.min.replace(tzinfo=UTC))
        counts = {s: sum(1 for j in jobs if j.state == s) for s in JobState}
        table = job_table(title)
        for job in reversed(jobs[-rows:]):
            add_job(table, job)
        summary = "   ".join(f"{s}: {n}" for s, n in counts.items())
        slides = sum(1 for j in jobs if j.kind == JobKind.SLIDE)
        if slides:
            summary += f"   ({slides} of them slides)"
        return Group(table, Text(f"{summary}   (Ctrl-C to stop)", style="dim"))


@app.command(cls=TargetCommand)
def watch(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="Also show jobs updated this long ago (e.g. 10m, 1h).")] = "10m",
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    rows: Annotated[int, typer.Option(help="Rows shown (most recently updated).", min=1)] = 20,
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds (0: until Ctrl-C).", min=0)] = 0,
) -> None:
    """A live view of jobs as they change (a Firestore listener)."""
    from rich.live import Live

    from healer.cli.when import parse_since

    clients = target(ctx).clients(need_bucket=False)
    settings, store = clients.settings, clients.store
    view = _Watch(state)
    query = store.query_updated_since(parse_since(since))
    title = f"Jobs in {settings.collection}, live ({DISCLAIMER})"
    handle = query.on_snapshot(view.on_snapshot)
    deadline = time.monotonic() + timeout if timeout else float("inf")
    out = console()
    try:
        with Live(view.render(rows, title), console=out, auto_refresh=False) as live:
            while time.monotonic() < deadline:
                if view.changed.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
                    view.changed.clear()
                    live.update(view.render(rows, title), refresh=True)
            live.update(view.render(rows, title), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        handle.unsubscribe()
        if not out.is_terminal:  # Live leaves the last line open when output is a pipe
            out.print()
