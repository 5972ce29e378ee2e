"""What the routes take as parameters: the service's runtime, typed (never `request.app.state`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from healer_push.http import NotReady
from inference_service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The runtime the app factory built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def ready_runtime(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Runtime:
    """The runtime, once the model is ready and while the service is not draining (else 503)."""
    if runtime.draining or not runtime.ready:
        raise NotReady("model is not ready" if not runtime.ready else "shutting down")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ReadyRuntime = Annotated[Runtime, Depends(ready_runtime)]
