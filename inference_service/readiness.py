"""Readiness that touches the device: the engine's probe, under a timeout, one at a time.

`/readyz` runs the probe on every call (microseconds on a healthy device). A probe that does not
answer within the timeout (a wedged GPU) fails readiness; while it is still stuck, no second one
starts, so threads never pile up behind a wedged device: the next checks fail at once, saying for
how long it has been stuck, until it returns and a fresh probe can pass.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

log = logging.getLogger("healer.readiness")

# Far above a healthy probe (microseconds, also while a batch runs: see DeviceProbe), and below the
# probes that ask /readyz (Cloud Run's startup probe allows 5 s, the local tools 1-2 s).
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Readiness:
    """What `/readyz` answers: `status` is ready, starting, failed (the model did not load) or
    unhealthy (loaded, but its device fails the probe now); `detail` says why when not ready."""

    status: str
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "ready"


def _in_daemon_thread(probe: Callable[[], None]) -> Future[None]:
    """Run `probe` in a thread of its own, a daemon: a wedged one must not keep the process alive."""
    future: Future[None] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            probe()
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name="device-probe", daemon=True).start()
    return future


class DeviceCheck:
    """The engine's probe with a timeout; logs when the device turns unhealthy and when it recovers."""

    def __init__(self, probe: Callable[[], None], timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self._probe = probe
        self.timeout_s = timeout_s
        self._running: Future[None] | None = None
        self._started = 0.0
        self._problem = ""

    async def problem(self) -> str:
        """ "" when the device answered the probe in time; otherwise what is wrong, in one line."""
        if self._running is not None and not self._running.done():
            stuck_s = time.monotonic() - self._started
            return self._report(f"the device probe has not answered for {stuck_s:.1f} s (device wedged?)")
        self._started = time.monotonic()
        self._running = _in_daemon_thread(self._probe)
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._running), self.timeout_s)
        except TimeoutError:
            return self._report(f"the device probe did not answer within {self.timeout_s:g} s (device wedged?)")
        except Exception as exc:
            return self._report(f"the device probe failed: {type(exc).__name__}: {exc}")
        return self._report("")

    def _report(self, problem: str) -> str:
        if problem and not self._problem:
            log.error("device unhealthy: not ready", extra={"reason": problem})
        elif self._problem and not problem:
            log.info("device healthy again: ready")
        self._problem = problem
        return problem
