"""Follow a set of jobs live with Firestore listeners until every one is done or failed.

One `on_snapshot` query listener per 30 job ids (Firestore's `in` limit) delivers each change
as it is written; a slow re-read every few seconds covers a listener that drops silently.
Works the same on the Firestore emulator and in GCP. A slide job also shows its progress over
tiles (`slide.tiles_scored` of `slide.tiles_total`) and its stage, as the pipeline writes them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from healer_core.schema import Job, JobKind, JobState

if TYPE_CHECKING:
    from healer_core.store import JobStore

IN_LIMIT = 30


class JobFollower:
    """Latest known state of each followed job, kept current by listeners."""

    def __init__(self, store: JobStore, job_ids: Iterable[str], resync_s: float = 10.0) -> None:
        self.store = store
        self.job_ids = list(dict.fromkeys(job_ids))
        self.jobs: dict[str, Job] = {}
        self.resync_s = resync_s
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._watches: list[Any] = []

    def _on_snapshot(self, snapshots: list[Any], changes: list[Any], read_time: Any) -> None:
        with self._lock:
            for snap in snapshots:
                if snap.exists:
                    self.jobs[snap.id] = Job.from_doc(snap.to_dict())
        self._changed.set()

    def start(self) -> JobFollower:
        """Open the listeners and read what already exists."""
        for query in self.store.queries_for_ids(self.job_ids, IN_LIMIT):
            self._watches.append(query.on_snapshot(self._on_snapshot))
        self.resync()
        return self

    def resync(self) -> None:
        """Re-read every followed job (the safety net under the listeners)."""
        found = self.store.get_many(self.job_ids)
        with self._lock:
            self.jobs.update(found)
        self._changed.set()

    def snapshot(self) -> dict[str, Job]:
        with self._lock:
            return dict(self.jobs)

    def finished(self) -> bool:
        jobs = self.snapshot()
        return all(j in jobs and jobs[j].state.terminal for j in self.job_ids)

    def wait(self, timeout_s: float, on_change: Callable[[dict[str, Job]], None] = lambda _: None) -> dict[str, Job]:
        """Block until every job is terminal or `timeout_s` passes; call `on_change` on each change."""
        deadline = time.monotonic() + timeout_s
        next_resync = time.monotonic() + self.resync_s
        while True:
            now = time.monotonic()
            if now >= next_resync:
                self.resync()
                next_resync = now + self.resync_s
            if self._changed.is_set():
                self._changed.clear()
                on_change(self.snapshot())
            if self.finished() or now >= deadline:
                # The last change may have landed after the check above: show what is returned.
                final = self.snapshot()
                on_change(final)
                return final
            self._changed.wait(timeout=min(0.5, max(0.0, deadline - now)))

    def close(self) -> None:
        for watch in self._watches:
            with contextlib.suppress(Exception):  # closing a listener must never mask the result
                watch.unsubscribe()
        self._watches.clear()

    def __enter__(self) -> JobFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def follow_with_progress(
    store: JobStore, job_ids: list[str], timeout_s: float, console: Any, label: str = "waiting for verdicts"
) -> dict[str, Job]:
    """Follow jobs with a Rich progress line (done/failed counts) and one bar over the tiles of
    each slide among them (at most `SLIDE_BARS`). Returns the jobs as last seen."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # The count is a field, not MofNCompleteColumn: a slide counts tiles, and none before it is tiled.
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress, JobFollower(store, job_ids) as follower:
        task = progress.add_task(label, total=len(job_ids), count=f"0/{len(job_ids)}")
        bars = SlideBars(progress)

        def update(jobs: dict[str, Job]) -> None:
            states = [jobs[j].state for j in job_ids if j in jobs]
            done = sum(1 for s in states if s == "done")
            failed = sum(1 for s in states if s == "failed")
            running = sum(1 for s in states if s == "running")
            desc = f"{label}: {done} done, {failed} failed, {running} running"
            progress.update(task, completed=done + failed, description=desc, count=f"{done + failed}/{len(job_ids)}")
            bars.update(jobs[j] for j in job_ids if j in jobs)

        return follower.wait(timeout_s, update)


SLIDE_BARS = 12  # more slides than this are counted in the jobs line only


class SlideBars:
    """One progress bar per slide job: tiles scored of tiles total, and the slide's stage."""

    def __init__(self, progress: Any, limit: int = SLIDE_BARS) -> None:
        self.progress = progress
        self.limit = limit
        self.tasks: dict[str, Any] = {}

    def update(self, jobs: Iterable[Job]) -> None:
        """Add a bar for each slide seen for the first time (up to the limit); move every bar."""
        for job in jobs:
            if job.kind != JobKind.SLIDE:
                continue
            if job.job_id not in self.tasks:
                if len(self.tasks) >= self.limit:
                    continue
                self.tasks[job.job_id] = self.progress.add_task("", total=None, count="")
            self.progress.update(self.tasks[job.job_id], **slide_bar(job))


def slide_bar(job: Job) -> dict[str, Any]:
    """A slide's bar: `  name · stage` over tiles scored of total; it pulses until the slide is tiled."""
    slide = job.slide
    total = slide.tiles_total if slide else 0
    scored = slide.tiles_scored if slide else 0
    if job.state == JobState.DONE and job.verdict and job.verdict.slide:
        scored = job.verdict.slide.tiles_scored
        total = max(total, scored)
    if job.state == JobState.FAILED:
        stage = f"failed: {job.error.code}" if job.error else "failed"
    elif job.state == JobState.DONE:
        stage = "done"
    else:
        stage = str(slide.stage) if slide else "queued"
    bar: dict[str, Any] = {"description": f"  {job.name} · {stage}", "completed": scored}
    if total:
        bar |= {"total": total, "count": f"{scored}/{total} tiles"}
    else:  # not tiled yet: a pulsing bar while it runs, an empty one once it has ended
        bar |= {"total": 1 if job.state.terminal else None, "count": ""}
    return bar
