"""Functions the isolation tests run in child processes (importable by reference, light imports)."""

from __future__ import annotations

import os
import signal
import time

from healer_core.schema import ErrorCode
from healer_media.errors import SlideRejected


def double(x: int) -> int:
    return 2 * x


def reject() -> None:
    raise SlideRejected(ErrorCode.NO_TISSUE, "No tissue at all.")


def crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)  # what a corrupt file can do to OpenSlide


def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does


def bug() -> None:
    raise KeyError("/secret/path/PATIENT-name.svs")


def hang() -> None:
    time.sleep(600)
