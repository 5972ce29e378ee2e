"""Keeping a slide step's lease alive while it works, and noticing when it was lost.

A tiling can outlast LEASE_SECONDS (a resection at 20X), so the lease is renewed every third of
it. A renewal refused (the token no longer holds the lease: this worker was presumed dead and
another took over) sets `lost`; the step then stops at its next check and writes nothing.
A worker that dies stops renewing, and its lease expires within LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from types import TracebackType

from healer_core.slide_store import SlideStore

log = logging.getLogger("healer.slide.lease")


class LeaseLost(RuntimeError):
    """Another worker took the step over: stop, write nothing."""


class Heartbeat:
    """`async with Heartbeat(...) as beat:` renews the lease until the block ends."""

    def __init__(self, store: SlideStore, job_id: str, token: str, lease_seconds: float) -> None:
        self.store = store
        self.job_id = job_id
        self.token = token
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()  # read by the step's worker thread
        self._task: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Raise LeaseLost once a renewal was refused."""
        if self.lost.is_set():
            raise LeaseLost("the lease was taken over")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                held = await asyncio.to_thread(self.store.extend_lease, self.job_id, self.token, self.lease_seconds)
            except Exception as exc:  # Firestore hiccup: try again next beat, the lease has time left
                log.warning("lease renewal failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
                continue
            if not held:
                log.warning("lease lost to another worker", extra={"job_id": self.job_id})
                self.lost.set()
                return

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
