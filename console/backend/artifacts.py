"""A slide verdict's artifacts (heatmap PNG, tiles GeoJSON, thumbnail PNG), read for the browser.

The verdict names them by `gs://` URI. The console follows a URI only into the results bucket
(RESULTS_BUCKET) and only under `slides/<job_id>/`, the results location's layout: a verdict can
never make the console read another object. The heatmap's overlay part (the slide, without the
colour bar) is cut out here, using the scale the slide service wrote into the PNG
(`healer:overlay_width`, `healer:downsample`), so the viewer can lay it over the slide.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]
from PIL import Image

from healer_core.schema import ErrorCode, Job
from healer_media.errors import ObjectGone, TransientError

Artifact = Literal["heatmap", "geojson", "thumbnail"]
MEDIA_TYPES: dict[Artifact, str] = {
    "heatmap": "image/png",
    "geojson": "application/geo+json",
    "thumbnail": "image/png",
}
# A heatmap has at most HEATMAP_MAX_PX (16384) a side in the slide service (PIL's own bomb guard,
# which errors at twice its 178 Mpx default, stays in force too).
_MAX_HEATMAP_PIXELS = 16384 * 16384


class NoArtifact(LookupError):
    """The job has no such artifact (not a slide, not finished, or the URI is not ours)."""


@dataclass(frozen=True)
class Overlay:
    """The heatmap's slide part as PNG, and the level-0 size it covers."""

    png: bytes
    width0: float  # level-0 pixels covered horizontally
    height0: float


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """(bucket, object name) of a gs:// URI; ValueError when it is not one."""
    if not uri.startswith("gs://"):
        raise ValueError("not a gs:// URI")
    bucket, _, name = uri[5:].partition("/")
    if not bucket or not name:
        raise ValueError("a gs:// URI needs a bucket and an object name")
    return bucket, name


class ArtifactReader:
    """Reads a job's slide artifacts from the results bucket."""

    def __init__(self, client: storage.Client, results_bucket: str, max_bytes: int) -> None:
        self._client = client
        self._bucket = results_bucket
        self._max_bytes = max_bytes

    def read(self, job: Job, artifact: Artifact) -> bytes:
        """The artifact's bytes. Raises NoArtifact, ObjectGone or TransientError."""
        bucket, name = self._location(job, artifact)
        try:
            blob = self._client.bucket(bucket).get_blob(name)
            if blob is None:
                raise ObjectGone("artifact not found")
            if int(blob.size or 0) > self._max_bytes:
                raise NoArtifact(f"the {artifact} is larger than CONSOLE_MAX_ARTIFACT_BYTES")
            data: bytes = blob.download_as_bytes(if_generation_match=blob.generation)
        except gexc.NotFound as exc:
            raise ObjectGone("artifact not found") from exc
        except (gexc.ServerError, gexc.TooManyRequests, ConnectionError, TimeoutError) as exc:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from exc
        return data

    def overlay(self, job: Job) -> Overlay:
        """The heatmap without its colour bar, and the level-0 extent it covers."""
        png = self.read(job, "heatmap")
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG" or image.width * image.height > _MAX_HEATMAP_PIXELS:
                raise NoArtifact("the heatmap is not a PNG of a plausible size")
            text = getattr(image, "text", {})
            try:
                overlay_width = int(text.get("healer:overlay_width", image.width))
                downsample = float(text.get("healer:downsample", "0"))
            except ValueError as exc:
                raise NoArtifact("the heatmap's scale metadata is malformed") from exc
            overlay_width = min(max(overlay_width, 1), image.width)
            if downsample <= 0 and job.slide is not None and job.slide.width:
                downsample = job.slide.width / overlay_width  # no scale written: it spans the slide
            if downsample <= 0:
                raise NoArtifact("the heatmap does not say its scale")
            cropped = image.convert("RGB").crop((0, 0, overlay_width, image.height))
        out = io.BytesIO()
        cropped.save(out, format="PNG")
        return Overlay(out.getvalue(), overlay_width * downsample, cropped.height * downsample)

    def _location(self, job: Job, artifact: Artifact) -> tuple[str, str]:
        slide = job.verdict.slide if job.verdict is not None else None
        if slide is None:
            raise NoArtifact("the job has no slide verdict")
        uri = {"heatmap": slide.heatmap_uri, "geojson": slide.geojson_uri, "thumbnail": slide.thumbnail_uri}[artifact]
        if not uri:
            raise NoArtifact(f"the slide verdict has no {artifact}")
        try:
            bucket, name = parse_gs_uri(uri)
        except ValueError as exc:
            raise NoArtifact(str(exc)) from exc
        if bucket != self._bucket or not name.startswith(f"slides/{job.job_id}/"):
            raise NoArtifact(f"the {artifact} is outside this console's results location")
        return bucket, name
