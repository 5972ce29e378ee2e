"""Safe decoding of untrusted image bytes into an RGB model input.

The format is decided by the leading bytes, never by the object's name or declared type. From
the header alone, before any pixel is decoded: the pixel count is checked against the configured
`max_pixels` (our own check, the same in every thread: Pillow's process-wide bomb limit is turned
off here), the frame count is capped, a JPEG is told to decode at the smallest scale that still
serves `target_px`, and the decode's peak memory — width × height × bytes per pixel of the mode
it decodes into, plus its decoder's and the conversion's buffers (`healer_media.cost`) — is
reserved from the process's shared `DecodeBudget` or refused. Truncated files are rejected rather
than half-decoded, and whatever Pillow raises on the bytes becomes a coded `ImageRejected`:
a bad upload is a permanent failure of that image, never a retry.
"""

from __future__ import annotations

import io
from contextlib import nullcontext
from dataclasses import dataclass

from PIL import Image, ImageFile

from healer_core.schema import ErrorCode
from healer_media.budget import DecodeBudget
from healer_media.convert import to_rgb
from healer_media.cost import PIXEL_BYTES, decode_cost
from healer_media.errors import ImageRejected

# Never let Pillow half-decode a truncated file.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own bomb check compares against one process-wide number (a warning above ≈ 89.5 Mpx,
# an error above twice that) that would silently override the configured limit; decode_image
# enforces DecodeLimits.max_pixels itself, per call. Set once at import, never toggled per call.
Image.MAX_IMAGE_PIXELS = None

_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
]


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may cost.

    `target_px`: the consumer needs no more than this many pixels on the shorter side; larger
    images are decoded at a reduced JPEG scale or box-reduced by an integer factor, never below
    it (0: full resolution). `budget`: the process's shared decode memory budget (None: each
    decode is bounded by `max_pixels` alone).
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 178_956_970
    max_frames: int = 16
    target_px: int = 0
    budget: DecodeBudget | None = None


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's magic bytes, or None."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_non_image(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "The file is a PDF document, not an image."
    if head.startswith((b"<!doctype html", b"<html")):
        return "The file is an HTML document, not an image."
    return "The file's content is not a PNG, JPEG, TIFF or WebP image."


def decode_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Decode untrusted bytes into an RGB image, or raise ImageRejected with a specific code.

    With a budget, raises TransientError(busy) when no decode memory was free in time.
    """
    if not data:
        raise ImageRejected(ErrorCode.EMPTY, "The file is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            ErrorCode.TOO_LARGE, f"The file is {len(data)} bytes; the limit is {limits.max_bytes} bytes."
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, _describe_non_image(data))
    try:
        im, factor, cost = _open(data, fmt, limits)
    except ImageRejected:
        raise
    except Exception as exc:  # whatever Pillow raises on a header is the file's fault
        raise _header_failure(fmt, exc) from exc
    what = f"a {im.size[0]}x{im.size[1]} {fmt} image in mode {im.mode}"
    with limits.budget.reserve(cost, what) if limits.budget is not None else nullcontext():
        try:
            return _pixels(im, fmt, factor)
        finally:
            im.close()  # frees the decoded buffer before the reservation is returned


def _pixels(im: Image.Image, fmt: str, factor: int) -> Image.Image:
    """Decode the pixels and convert them; any failure becomes a coded rejection."""
    try:
        im.load()
    except Exception as exc:
        raise _load_failure(fmt, exc) from exc
    try:
        return to_rgb(im, factor)
    except Exception as exc:
        raise _load_failure(fmt, exc, converting=True) from exc


def _open(data: bytes, fmt: str, limits: DecodeLimits) -> tuple[Image.Image, int, int]:
    """Open the header, check it against the limits, draft; (image, reduce factor, peak bytes)."""
    im = Image.open(io.BytesIO(data), formats=[fmt])
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageRejected(ErrorCode.TRUNCATED, f"The {fmt} header declares an empty image.")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            ErrorCode.DECOMPRESSION_BOMB,
            f"The image claims {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}.",
        )
    frames = int(getattr(im, "n_frames", 1) or 1)
    if frames > limits.max_frames:
        raise ImageRejected(
            ErrorCode.TOO_MANY_FRAMES, f"The image has {frames} frames; the limit is {limits.max_frames}."
        )
    if im.mode not in PIXEL_BYTES:
        raise ImageRejected(ErrorCode.UNSUPPORTED_IMAGE, f"The {fmt} image's pixel mode {im.mode} is not supported.")
    full_size = im.size
    target = limits.target_px
    if target and fmt == "JPEG":
        im.draft(im.mode, (target, target))  # DCT scaling: 1/2, 1/4 or 1/8, never below target
    factor = max(1, min(im.size[0] // target, im.size[1] // target)) if target else 1
    return im, factor, decode_cost(im, fmt, len(data), factor, full_size)


def _corrupt(fmt: str, exc: BaseException) -> ImageRejected:
    return ImageRejected(ErrorCode.TRUNCATED, f"The {fmt} file is corrupt or truncated ({type(exc).__name__}).")


def _header_failure(fmt: str, exc: BaseException) -> ImageRejected:
    """The coded rejection for an exception raised while reading the header or the frame chain."""
    if isinstance(exc, Image.DecompressionBombError):  # only if someone re-enabled Pillow's check
        return ImageRejected(ErrorCode.DECOMPRESSION_BOMB, f"The {fmt} image claims too many pixels.")
    return _corrupt(fmt, exc)


def _load_failure(fmt: str, exc: BaseException, converting: bool = False) -> ImageRejected:
    """The coded rejection for an exception raised while decoding or converting pixels."""
    if isinstance(exc, MemoryError):
        return ImageRejected(ErrorCode.DECOMPRESSION_BOMB, f"The {fmt} image needs more memory than is available.")
    message = str(exc)
    if converting and isinstance(exc, ValueError) and "conversion" in message:
        return ImageRejected(ErrorCode.UNSUPPORTED_IMAGE, f"The {fmt} image's pixel mode cannot be converted to RGB.")
    if isinstance(exc, OSError) and not ("truncated" in message or "broken" in message):
        # e.g. "decoder … not available", "unsupported … compression": readable bytes, unreadable encoding
        return ImageRejected(ErrorCode.UNSUPPORTED_IMAGE, f"The {fmt} image cannot be decoded ({type(exc).__name__}).")
    return _corrupt(fmt, exc)
