"""Running OpenSlide away from the service process.

OpenSlide is C code reading untrusted files: a malformed slide can crash it (SIGSEGV, abort) or
make it spin. Every OpenSlide call of the service therefore happens in a child process — the
survey (open, tissue, plan) through `run_isolated`, tile reading in `shards.parallel_shards`'
workers — so a bad slide kills a child, never the service, and fails with its own code:

    the child died on a signal other than SIGKILL  → SlideRejected(unreadable_slide)
    the child was SIGKILLed (the kernel's OOM killer) or ran past its budget
                                                   → ChildFailed (transient: the job is released)
    the child raised SlideRejected                 → re-raised here, as it was
    the child raised anything else                 → ChildFailed, with the exception's type
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from healer_core.schema import ErrorCode
from healer_media.errors import SlideRejected

T = TypeVar("T")


class ChildFailed(RuntimeError):
    """The child process failed in a way a later attempt may not (killed, timed out, a bug)."""


def crash_rejection(exitcode: int | None) -> SlideRejected | None:
    """The permanent rejection for a child that died on signal `-exitcode`, or None when the death
    says nothing about the slide (SIGKILL: the OOM killer or an operator; a normal exit)."""
    if exitcode is None or exitcode >= 0 or -exitcode == signal.SIGKILL:
        return None
    name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else str(-exitcode)
    return SlideRejected(
        ErrorCode.UNREADABLE_SLIDE, f"Reading the slide crashed OpenSlide ({name}): the file is corrupt."
    )


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except SlideRejected as exc:
        conn.send(("rejected", (str(exc.code), exc.message)))
    except BaseException as exc:  # reported by type only: messages can hold paths
        conn.send(("error", type(exc).__name__))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., T], args: tuple[Any, ...], timeout_s: float) -> T:
    """`fn(*args)` in a fresh (spawned) process; its result, or the errors in the module docstring.
    `fn`, its arguments and its result must pickle."""
    context = multiprocessing.get_context("spawn")  # never fork a process that holds threads and clients
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, fn, args), daemon=True, name="slide-survey")
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise ChildFailed(f"the slide survey ran past its budget of {timeout_s:.0f}s")
        try:
            kind, payload = receiver.recv()
        except EOFError:  # the child died without answering
            process.join(5)
            rejection = crash_rejection(process.exitcode)
            if rejection is not None:
                raise rejection from None
            raise ChildFailed(f"the slide survey process died (exit code {process.exitcode})") from None
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
    if kind == "ok":
        result: T = payload
        return result
    if kind == "rejected":
        code, message = payload
        raise SlideRejected(ErrorCode(code), message)
    raise ChildFailed(f"the slide survey failed: {payload}")
