"""Downloading the uploaded bytes, pinned to the job's object generation."""

from __future__ import annotations

from typing import Protocol

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.schema import ErrorCode
from healer_media.errors import ImageRejected, ObjectGone, TransientError


class BlobSource(Protocol):
    """Reads one object generation, at most `max_bytes` of it."""

    def download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes: ...


class GcsBlobSource:
    """Cloud Storage (or its emulator, via STORAGE_EMULATOR_HOST)."""

    def __init__(self, project: str) -> None:
        self._client = storage.Client(project=project)

    def download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes:
        try:
            # Metadata first: an overwritten or deleted generation, or an oversize object, is
            # settled without reading a byte. (The storage emulator ignores generation pins on
            # reads, so this check is also what keeps local runs honest.)
            bucket_ref = self._client.bucket(bucket)
            blob = bucket_ref.get_blob(name, generation=generation)
            if blob is None or int(blob.generation or 0) != int(generation):
                raise ObjectGone("object generation not found")
            if int(blob.size or 0) > max_bytes:
                raise ImageRejected(ErrorCode.TOO_LARGE, f"The file is {blob.size} bytes; the limit is {max_bytes}.")
            # One byte past the limit tells "too large" without reading the whole object.
            # A fresh handle builds the download URL itself (properly quoted): the metadata's
            # mediaLink from gcp-storage-emulator leaves '#' and '?' in names unescaped.
            pinned = bucket_ref.blob(name, generation=generation)
            data: bytes = pinned.download_as_bytes(start=0, end=max_bytes)
        except gexc.NotFound as exc:
            raise ObjectGone("object generation not found") from exc
        except gexc.RequestRangeNotSatisfiable as exc:  # zero-byte object with a range read
            raise ImageRejected(ErrorCode.EMPTY, "The file is empty (0 bytes).") from exc
        except (gexc.ServerError, gexc.TooManyRequests, ConnectionError, TimeoutError) as exc:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from exc
        if len(data) > max_bytes:
            raise ImageRejected(ErrorCode.TOO_LARGE, f"The file is larger than the limit of {max_bytes} bytes.")
        return data
