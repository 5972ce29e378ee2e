"""Downloading the uploaded bytes, pinned to the job's object generation.

Every way a read can fail ends as one of the service's coded errors, and none of them carries
the library's message or traceback (both hold the object's URL, whose name may carry patient
identifiers), only the exception's type:

    generation gone (404, 412)                       → ObjectGone                        permanent
    zero-byte object                                 → ImageRejected(empty)              permanent
    object over the byte limit                       → ImageRejected(too_large)          permanent
    access refused (401, 403), any other HTTP error,
    5xx, 429, timeouts, connection resets, retries
    exhausted, checksum mismatch, a short or padded
    answer, unreadable answers                       → TransientError(download_failed)   retried
"""

from __future__ import annotations

import base64
from typing import Protocol

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.retry import DEFAULT_RETRY

from healer_core.schema import ErrorCode
from healer_media.errors import ImageRejected, ObjectGone, TransientError

_GONE = (gexc.NotFound, gexc.PreconditionFailed)


class BlobSource(Protocol):
    """Reads one object generation, at most `max_bytes` of it."""

    def download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes: ...


class GcsBlobSource:
    """Cloud Storage (or its emulator, via STORAGE_EMULATOR_HOST).

    `timeout_s` bounds each HTTP request, `retry_deadline_s` the library's own retries of
    transient answers; past them the job is handed back to Pub/Sub, which retries with backoff.
    """

    def __init__(
        self,
        project: str,
        *,
        client: storage.Client | None = None,
        timeout_s: float = 60.0,
        retry_deadline_s: float = 120.0,
    ) -> None:
        self._client = client if client is not None else storage.Client(project=project)
        self._timeout_s = timeout_s
        self._retry: Retry = DEFAULT_RETRY.with_timeout(retry_deadline_s)

    @classmethod
    def at_endpoint(cls, project: str, endpoint: str, **kwargs: float) -> GcsBlobSource:
        """A source reading from `endpoint` (an emulator or a proxy in front of one), unauthenticated."""
        client = storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
        )
        return cls(project, client=client, **kwargs)

    def download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes:
        """The bytes of `bucket/name#generation`, or a coded error (see the module docstring)."""
        try:
            return self._download(bucket, name, generation, max_bytes)
        except (ImageRejected, ObjectGone, TransientError):
            raise
        except _GONE:
            raise ObjectGone("object generation not found") from None
        except gexc.RequestRangeNotSatisfiable:  # zero-byte object with a range read
            raise ImageRejected(ErrorCode.EMPTY, "The file is empty (0 bytes).") from None
        except Exception as exc:
            # `from None`: the cause's message and traceback hold the object's URL.
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from None

    def _download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes:
        # Metadata first: an overwritten or deleted generation, or an oversize object, is
        # settled without reading a byte. (The storage emulator ignores generation pins on
        # reads, so this check is also what keeps local runs honest.)
        bucket_ref = self._client.bucket(bucket)
        blob = bucket_ref.get_blob(name, generation=generation, timeout=self._timeout_s, retry=self._retry)
        if blob is None or int(blob.generation or 0) != int(generation):
            raise ObjectGone("object generation not found")
        size = int(blob.size or 0)
        if size > max_bytes:
            raise ImageRejected(ErrorCode.TOO_LARGE, f"The file is {size} bytes; the limit is {max_bytes}.")
        if size == 0:
            raise ImageRejected(ErrorCode.EMPTY, "The file is empty (0 bytes).")
        # One byte past the limit tells "too large" without reading the whole object.
        # A fresh handle builds the download URL itself (properly quoted): the metadata's
        # mediaLink from gcp-storage-emulator leaves '#' and '?' in names unescaped.
        pinned = bucket_ref.blob(name, generation=generation)
        # checksum=None: the client validates only whole-object answers, and logs the object's URL
        # at INFO when the hash header is missing; the CRC32C is compared here instead.
        data: bytes = pinned.download_as_bytes(
            start=0, end=max_bytes, timeout=self._timeout_s, retry=self._retry, checksum=None
        )
        if len(data) > max_bytes:
            raise ImageRejected(ErrorCode.TOO_LARGE, f"The file is larger than the limit of {max_bytes} bytes.")
        if (blob.content_encoding or "").lower() == "gzip":
            return data  # served decompressed: neither the stored size nor the stored CRC32C apply
        if len(data) != size:
            # A cut or padded answer must not be judged as the upload (it would "be truncated").
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, "storage error: incomplete download")
        _check_crc32c(data, blob.crc32c)
        return data


def _check_crc32c(data: bytes, expected: str | None) -> None:
    """Compare the bytes with the CRC32C in the object's metadata."""
    if not expected:
        return
    actual = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    if actual != expected:
        raise TransientError(ErrorCode.DOWNLOAD_FAILED, "storage error: checksum mismatch")
