"""The slide path's objects and where they live (docs/SLIDES.md, "Artifacts"):

    gs://$WORK_BUCKET/shards/{job_id}/{n:05d}.tar        one shard of tiles (healer_media.shard)
    gs://$WORK_BUCKET/thumbnails/{job_id}.png            the thumbnail, written while tiling
    gs://$RESULTS_BUCKET/slides/{job_id}/heatmap.png     tile p_yes over the thumbnail
    gs://$RESULTS_BUCKET/slides/{job_id}/tiles.geojson   tile polygons with p_yes (QuPath)
    gs://$RESULTS_BUCKET/slides/{job_id}/thumbnail.png   the thumbnail, kept with the results

Keyed by job id only: object names can carry patient identifiers. The work bucket's objects are
deleted by its lifecycle rule; the results stay. Writes overwrite: a step run twice writes the
same bytes to the same names.
"""

from __future__ import annotations

from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.schema import ErrorCode
from healer_media.errors import TransientError

HEATMAP, GEOJSON, THUMBNAIL = "heatmap.png", "tiles.geojson", "thumbnail.png"
CONTENT_TYPES = {HEATMAP: "image/png", THUMBNAIL: "image/png", GEOJSON: "application/geo+json"}
TIMEOUT_S = 120.0


def thumbnail_name(job_id: str) -> str:
    """The thumbnail in the work bucket."""
    return f"thumbnails/{job_id}.png"


def result_name(job_id: str, artifact: str) -> str:
    """One of HEATMAP, GEOJSON, THUMBNAIL in the results bucket."""
    return f"slides/{job_id}/{artifact}"


def gs_uri(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


class Objects:
    """Uploads and reads of the slide path's own objects (never the lab's uploads)."""

    def __init__(self, client: storage.Client) -> None:
        self.client = client

    def put(self, bucket: str, name: str, data: bytes, content_type: str) -> int:
        """Write the object; returns its generation. Storage errors are transient."""
        blob = self.client.bucket(bucket).blob(name)
        try:
            blob.upload_from_string(data, content_type=content_type, timeout=TIMEOUT_S)
        except Exception as exc:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error writing: {type(exc).__name__}") from None
        return int(blob.generation or 0)

    def get(self, bucket: str, name: str) -> bytes:
        """Read one of our objects whole. Storage errors (and a missing object) are transient."""
        try:
            data: bytes = self.client.bucket(bucket).blob(name).download_as_bytes(timeout=TIMEOUT_S)
        except Exception as exc:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error reading: {type(exc).__name__}") from None
        return data
