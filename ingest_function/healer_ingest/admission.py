"""What ingest decides from metadata alone, without downloading a byte.

The format is decided by content later (the service sniffs the bytes); here only a declared
type that is clearly something else (text, PDF, video, ...) fails fast. Untyped uploads
(`application/octet-stream`, empty) go on to the service, which decides by content.
"""

from __future__ import annotations

from healer_core.schema import ErrorCode, JobError
from healer_ingest.event import StorageObject

UNDECLARED_TYPES = {
    "",
    "application/octet-stream",
    "binary/octet-stream",
    "application/x-www-form-urlencoded",
}


def rejection(obj: StorageObject, max_image_bytes: int) -> JobError | None:
    """The permanent error this object fails with before inference, or None to queue it."""
    if obj.size == 0:
        return JobError(code=ErrorCode.EMPTY, message="The object is empty (0 bytes).")
    if obj.size > max_image_bytes:
        return JobError(
            code=ErrorCode.TOO_LARGE,
            message=f"The object is {obj.size} bytes; the limit is {max_image_bytes} bytes (MAX_IMAGE_BYTES).",
        )
    declared = obj.content_type.split(";", 1)[0].strip().lower()
    if declared not in UNDECLARED_TYPES and not declared.startswith("image/"):
        return JobError(
            code=ErrorCode.NOT_AN_IMAGE,
            message=f"Declared content type {declared!r} is not an image type.",
        )
    return None
