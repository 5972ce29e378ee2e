"""What the slide service's routes take as parameters: its runtime, typed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from healer_push.http import NotReady
from slide_service.runtime import SlideRuntime


def get_runtime(request: Request) -> SlideRuntime:
    """The runtime the app factory built."""
    runtime: SlideRuntime = request.app.state.runtime
    return runtime


def ready_runtime(runtime: Annotated[SlideRuntime, Depends(get_runtime)]) -> SlideRuntime:
    """The runtime while the service takes work (started, not draining), else 503."""
    if runtime.draining or not runtime.ready:
        raise NotReady("shutting down" if runtime.draining else "starting")
    return runtime


RuntimeDep = Annotated[SlideRuntime, Depends(get_runtime)]
ReadyRuntime = Annotated[SlideRuntime, Depends(ready_runtime)]
