"""Image or slide? Decided from a generation-pinned ranged read of the object's first bytes, plus
its size: never a download (`healer_core.sniff` holds the rules; this module reads the bytes).

A generation that is gone by the time ingest looks (overwritten, deleted) is left to the image
path, which records it as `object_gone`; any other storage error propagates, so the trigger
retries the event.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.schema import ErrorCode, JobError, JobKind, Slide
from healer_core.sniff import IMAGE, ReadRange, Sniffed, SniffLimits, classify
from healer_ingest.event import StorageObject

READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Admission:
    """What ingest makes of one object: its kind, the slide's first facts, or why it fails now."""

    kind: JobKind
    slide: Slide | None = None
    error: JobError | None = None


def pinned_range_reader(client: storage.Client, obj: StorageObject) -> ReadRange:
    """`read_range(offset, length)` over `obj`'s own generation (a ranged GET each call)."""
    blob = client.bucket(obj.bucket).blob(obj.name, generation=obj.generation)

    def read_range(offset: int, length: int) -> bytes:
        if length <= 0 or offset >= obj.size:
            return b""
        end = min(offset + length, obj.size) - 1
        # checksum=None: a range has no whole-object hash to check (and the client would log the URL).
        data: bytes = blob.download_as_bytes(start=offset, end=end, checksum=None, timeout=READ_TIMEOUT_S)
        return data

    return read_range


def slide_rejection(obj: StorageObject, sniffed: Sniffed, max_slide_bytes: int) -> JobError | None:
    """The permanent error a slide fails with at ingest, or None to queue it for the slide service."""
    if sniffed.unsupported:
        return JobError(code=ErrorCode.UNSUPPORTED_SLIDE, message=sniffed.unsupported)
    if obj.size > max_slide_bytes:
        return JobError(
            code=ErrorCode.TOO_LARGE,
            message=f"The slide is {obj.size} bytes; the limit is {max_slide_bytes} bytes (MAX_SLIDE_BYTES).",
        )
    return None


class Classifier:
    """Tells slides from images for ingest, reading at most a few small ranges of each object."""

    def __init__(self, client: storage.Client, limits: SniffLimits, max_slide_bytes: int) -> None:
        self.client = client
        self.limits = limits
        self.max_slide_bytes = max_slide_bytes

    def sniff(self, obj: StorageObject) -> Sniffed:
        """The object's kind by content (an image when its generation is gone or it is empty)."""
        if obj.size == 0:
            return IMAGE
        try:
            return classify(obj.name, obj.size, pinned_range_reader(self.client, obj), self.limits)
        except (gexc.NotFound, gexc.PreconditionFailed, gexc.RequestRangeNotSatisfiable):
            return IMAGE

    def admit(self, obj: StorageObject) -> Admission:
        """A slide's admission (kind, first facts, or a coded rejection); images are `kind=image`."""
        sniffed = self.sniff(obj)
        if not sniffed.is_slide:
            return Admission(JobKind.IMAGE)
        slide = Slide(format=sniffed.format, vendor=sniffed.vendor, width=sniffed.width, height=sniffed.height)
        return Admission(JobKind.SLIDE, slide, slide_rejection(obj, sniffed, self.max_slide_bytes))
