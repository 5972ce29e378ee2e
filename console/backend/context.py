"""What the routes need, built once by the app factory and handed to them as dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from console.backend.preview import PreviewCache
from console.backend.settings import ConsoleSettings
from console.backend.uploads import LocalUploadSigner, UploadSigner
from healer_core.store import JobStore
from healer_media.blobs import BlobSource


@dataclass
class ConsoleContext:
    """The console's adapters: settings, the job store, object reads, upload signing, preview cache."""

    settings: ConsoleSettings
    store: JobStore
    blobs: BlobSource
    signer: UploadSigner
    previews: PreviewCache
    local_signer: LocalUploadSigner | None = None


def get_context(request: Request) -> ConsoleContext:
    """The context the app factory stored on the app."""
    ctx: ConsoleContext = request.app.state.console
    return ctx


Context = Annotated[ConsoleContext, Depends(get_context)]
