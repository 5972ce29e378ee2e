"""Safe decoding of untrusted image bytes into an RGB model input.

The format is decided by the leading bytes, never by the object's name or declared type.
Pixel count is checked from the header before any pixel is decoded (decompression bombs),
truncated files are rejected rather than half-decoded, and multi-frame files are capped.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from healer_core.schema import ErrorCode
from healer_media.errors import ImageRejected

# Never let Pillow half-decode a truncated file.
ImageFile.LOAD_TRUNCATED_IMAGES = False

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
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 178_956_970
    max_frames: int = 16


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


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any supported mode to 8-bit RGB (16-bit and float scaled by their range)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))  # slides are imaged on white
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


def decode_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Decode untrusted bytes into an RGB image, or raise ImageRejected with a specific code."""
    if not data:
        raise ImageRejected(ErrorCode.EMPTY, "The file is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            ErrorCode.TOO_LARGE, f"The file is {len(data)} bytes; the limit is {limits.max_bytes} bytes."
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, _describe_non_image(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(
                ErrorCode.DECOMPRESSION_BOMB, f"The image header claims too many pixels: {exc}"
            ) from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected(ErrorCode.TRUNCATED, f"The {fmt} file is corrupt or truncated.") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(ErrorCode.TRUNCATED, f"The {fmt} file is corrupt or truncated: {exc}") from exc
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
        try:
            im.load()
            return _to_rgb(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(ErrorCode.DECOMPRESSION_BOMB, str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = str(exc)
            if "truncated" in message or "broken" in message or isinstance(exc, EOFError | SyntaxError):
                raise ImageRejected(ErrorCode.TRUNCATED, f"The {fmt} file is truncated or corrupt.") from exc
            raise ImageRejected(ErrorCode.UNSUPPORTED_IMAGE, f"The {fmt} image cannot be decoded: {message}") from exc
