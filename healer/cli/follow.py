"""Follow a set of jobs live with Firestore listeners until every one is done or failed.

One `on_snapshot` query listener per 30 job ids (Firestore's `in` limit) delivers each change
as it is written; a slow re-read every few seconds covers a listener that drops silently.
Works the same on the Firestore emulator and in GCP.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from healer_core.schema import Job

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
                return self.snapshot()
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
    """Follow jobs with a Rich progress line (done/failed counts). Returns the jobs as last seen."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress, JobFollower(store, job_ids) as follower:
        task = progress.add_task(label, total=len(job_ids))

        def update(jobs: dict[str, Job]) -> None:
            states = [jobs[j].state for j in job_ids if j in jobs]
            done = sum(1 for s in states if s == "done")
            failed = sum(1 for s in states if s == "failed")
            running = sum(1 for s in states if s == "running")
            desc = f"{label}: {done} done, {failed} failed, {running} running"
            progress.update(task, completed=done + failed, description=desc)

        return follower.wait(timeout_s, update)
