"""What the slide routes need (viewer, artifacts, resumable sessions), built once by the app factory.

`get_slides` depends on the console's `Context`, so whatever access rule guards the other routes
(context.py) guards the slide routes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from google.cloud import storage  # type: ignore[attr-defined]

from console.backend.artifacts import ArtifactReader
from console.backend.context import Context
from console.backend.deepzoom import SlideViewer
from console.backend.resumable import GcsSessionStarter, LocalSessionRelay, SessionStarter
from console.backend.settings import ConsoleSettings
from console.backend.slide_files import SlideFiles
from console.backend.slide_settings import SlideViewerSettings
from slide_service.open import SlideLimits


@dataclass
class SlideServices:
    """The slide viewer, the artifact reader and the resumable-session starter."""

    settings: SlideViewerSettings
    viewer: SlideViewer
    artifacts: ArtifactReader
    sessions: SessionStarter
    relay: LocalSessionRelay | None = None


def build_slide_services(
    settings: ConsoleSettings, slides: SlideViewerSettings, client: storage.Client | None = None
) -> SlideServices:
    """Wire the slide adapters over one Cloud Storage client (the emulator's on the local stack)."""
    client = client or storage.Client(project=settings.project_id)
    files = SlideFiles(
        client,
        mount=slides.slide_mount,
        cache_dir=slides.slide_cache_dir,
        cache_bytes=slides.slide_cache_bytes,
        max_slide_bytes=slides.max_slide_bytes,
    )
    viewer = SlideViewer(
        files,
        SlideLimits(max_bytes=slides.max_slide_bytes, max_pixels=slides.max_slide_pixels),
        open_slides=slides.open_slides,
        tile_cache_bytes=slides.tile_cache_bytes,
        openslide_cache_bytes=slides.openslide_cache_bytes,
        jpeg_quality=slides.tile_jpeg_quality,
    )
    relay = LocalSessionRelay(client, settings.emulator_url, slides.upload_chunk_bytes) if settings.local else None
    return SlideServices(
        settings=slides,
        viewer=viewer,
        artifacts=ArtifactReader(client, slides.results_bucket, slides.max_artifact_bytes),
        sessions=relay or GcsSessionStarter(client),
        relay=relay,
    )


def caller_email(request: Request) -> str | None:
    """Who IAP vouched for on this request, for the audit log (set on `request.state.caller` by
    the console's IAP verification when it runs; None otherwise)."""
    return getattr(getattr(request.state, "caller", None), "email", None)


def get_slides(ctx: Context, request: Request) -> SlideServices:
    """The slide services the app factory stored (after the console's own dependency ran)."""
    services: SlideServices = request.app.state.slides
    return services


Slides = Annotated[SlideServices, Depends(get_slides)]
