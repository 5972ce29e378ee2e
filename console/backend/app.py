"""The console's app factory: `uvicorn --factory console.backend.app:create_app`.

With IAP_AUDIENCE set, every route but /healthz first verifies IAP's signed assertion (iap.py).

GET  /healthz                        liveness
GET  /api/config                     deployment facts for the page (bucket, error descriptions)
GET  /api/jobs                       newest jobs, filters state/answer, search q, offset/limit
GET  /api/jobs/{job_id}              one job: full verdict, error in plain words, history
GET  /api/jobs/{job_id}/preview.png  downscaled PNG rendered from the stored object
POST /api/uploads                    signed PUT URLs for the inbox bucket
PUT  /api/uploads/local/...          local stack only: forwards an upload to the emulator
POST /api/uploads/resumable          a resumable session for a large file (api_resumable.py)
GET  /api/jobs/{job_id}/slide.dzi, slide_files/…, heatmap…, tiles.geojson  slide jobs (api_slides.py)
GET  /…                              the built frontend (console/web/dist)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import google.auth.exceptions
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from google.cloud import storage  # type: ignore[attr-defined]
from starlette.concurrency import run_in_threadpool

from console.backend import api_jobs, api_resumable, api_slides, api_uploads
from console.backend.context import ConsoleContext
from console.backend.iap import IAP_HEADER, IapAuthError, IapVerifier
from console.backend.preview import PreviewCache
from console.backend.settings import ConsoleSettings
from console.backend.slide_context import build_slide_services
from console.backend.slide_settings import SlideViewerSettings
from console.backend.static import mount_frontend
from console.backend.uploads import GcsUploadSigner, LocalUploadSigner, UploadSigner
from healer_core import logs
from healer_core.store import JobStore, new_client
from healer_media.blobs import BlobSource, GcsBlobSource
from healer_media.budget import MIB, DecodeBudget
from healer_media.imaging import DecodeLimits

log = logging.getLogger("healer.console")

# The page loads only its own scripts and styles; uploads go to Cloud Storage (or, locally, to us).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' https://storage.googleapis.com; frame-ancestors 'none'; base-uri 'none'"
)


def build_context(
    settings: ConsoleSettings,
    store: JobStore | None = None,
    blobs: BlobSource | None = None,
    signer: UploadSigner | None = None,
) -> ConsoleContext:
    """Wire the adapters: Firestore, Cloud Storage (or the emulators), and the upload signer."""
    if store is None:
        store = JobStore(new_client(settings.project_id, settings.firestore_database), settings.jobs_collection)
    if blobs is None:
        blobs = GcsBlobSource(settings.project_id)
    local_signer = LocalUploadSigner() if settings.local else None
    if signer is None:
        if local_signer is not None:
            signer = local_signer
        else:
            signer = GcsUploadSigner(storage.Client(project=settings.project_id), settings.signer_service_account)
    elif isinstance(signer, LocalUploadSigner):
        local_signer = signer
    preview_limits = DecodeLimits(
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        target_px=settings.preview_max_px,  # a preview needs no more: large images decode reduced
        budget=DecodeBudget(settings.decode_memory_mb * MIB),
    )
    iap = IapVerifier(settings.iap_audience, settings.iap_certs_url) if settings.iap_audience else None
    return ConsoleContext(
        settings=settings,
        store=store,
        blobs=blobs,
        signer=signer,
        previews=PreviewCache(settings.preview_cache_entries),
        preview_limits=preview_limits,
        local_signer=local_signer,
        iap=iap,
    )


def create_app(
    settings: ConsoleSettings | None = None,
    store: JobStore | None = None,
    blobs: BlobSource | None = None,
    signer: UploadSigner | None = None,
    slide_settings: SlideViewerSettings | None = None,
) -> FastAPI:
    """The console app. Tests pass their own settings and store; production reads the environment."""
    settings = settings or ConsoleSettings()
    logs.configure(settings.log_level)
    # httpx logs every request's URL at INFO; the local stack's upload forwarding puts the object
    # name in the URL, and names may carry patient identifiers.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = FastAPI(title="Healer console", version="0.1.0", docs_url="/api/docs", openapi_url="/api/openapi.json")
    ctx = app.state.console = build_context(settings, store, blobs, signer)
    if ctx.iap is not None:
        _require_iap(app, ctx.iap)
    app.state.slides = build_slide_services(settings, slide_settings or SlideViewerSettings())

    @app.middleware("http")  # added last: outermost, so refusals carry the headers too
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith("/api/docs"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(api_jobs.router)
    app.include_router(api_uploads.router)
    app.include_router(api_resumable.router)
    app.include_router(api_slides.router)
    mount_frontend(app, settings.static_dir)
    return app


def _require_iap(app: FastAPI, verifier: IapVerifier) -> None:
    """Admit only requests carrying a valid IAP assertion (the liveness probe, sent by Cloud Run
    itself and never through IAP, excepted); the verified caller goes to `request.state.caller`."""

    @app.middleware("http")
    async def require_iap(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path == "/healthz":
            return await call_next(request)
        try:
            request.state.caller = await run_in_threadpool(verifier.verify, request.headers.get(IAP_HEADER))
        except IapAuthError as exc:
            log.warning("request refused", extra={"status": exc.status, "reason": exc.reason})
            return JSONResponse({"detail": exc.reason}, status_code=exc.status)
        except google.auth.exceptions.TransportError as exc:
            log.error("could not fetch IAP's public keys", extra={"error_type": type(exc).__name__})
            detail = {"detail": "cannot verify sign-in right now"}
            return JSONResponse(detail, status_code=503, headers={"Retry-After": "10"})
        return await call_next(request)
