"""What the routes need, built once by the app factory and handed to them as dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from console.backend.iap import Caller, IapVerifier
from console.backend.preview import PreviewCache
from console.backend.settings import ConsoleSettings
from console.backend.uploads import LocalUploadSigner, UploadSigner
from healer_core.store import JobStore
from healer_media.blobs import BlobSource
from healer_media.imaging import DecodeLimits


@dataclass
class ConsoleContext:
    """The console's adapters: settings, the job store, object reads, upload signing, previews
    (their decode limits and shared memory budget, and a cache), and IAP verification (None
    without IAP_AUDIENCE)."""

    settings: ConsoleSettings
    store: JobStore
    blobs: BlobSource
    signer: UploadSigner
    previews: PreviewCache
    preview_limits: DecodeLimits
    local_signer: LocalUploadSigner | None = None
    iap: IapVerifier | None = None


def get_context(request: Request) -> ConsoleContext:
    """The context the app factory stored on the app."""
    ctx: ConsoleContext = request.app.state.console
    return ctx


def get_caller(request: Request) -> Caller | None:
    """The user IAP vouched for on this request (None when the console runs without IAP)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller


Context = Annotated[ConsoleContext, Depends(get_context)]
CallerDep = Annotated[Caller | None, Depends(get_caller)]
