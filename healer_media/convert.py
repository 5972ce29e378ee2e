"""Turning a decoded image of any supported mode into 8-bit RGB, one band of rows at a time.

Working on horizontal bands keeps the conversion's extra memory to a few band-sized buffers,
whatever the image's size; an integer `factor` box-reduces each band on the way
(`Image.reduce`), so a large image never exists in RGB at full size when its consumer needs
fewer pixels. High-bit-depth and floating-point samples are scaled to 8 bits by their finite
range in float32 (never float64), transparency is flattened onto white (slides are imaged on
white).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

# A band holds about this many bytes at its widest (4 bytes per pixel); see `band_rows`.
BAND_BYTES = 4 * 1024 * 1024
# Bytes per band pixel held at once while converting it: the cropped band in its own mode (≤ 4),
# its normalized form (4), a float32 copy for scaled modes (4) and the reduced band (≤ 4).
BAND_BYTES_PER_PIXEL = 16

_SCALED = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_GRAY = frozenset({"1", "L"})
_ALPHA = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
WHITE = (255, 255, 255)


def band_rows(width: int, factor: int) -> int:
    """Rows per band: about BAND_BYTES at 4 bytes per pixel, a multiple of `factor`."""
    rows = max(1, BAND_BYTES // (4 * max(1, width)))
    return max(factor, rows // factor * factor)


def reduced_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """The size `Image.reduce(factor)` gives (partial boxes at the edges are kept)."""
    width, height = size
    return -(-width // factor), -(-height // factor)


def has_alpha(im: Image.Image) -> bool:
    """Whether the image carries transparency that must be flattened."""
    return im.mode in _ALPHA or (im.mode == "P" and "transparency" in im.info)


def to_rgb(im: Image.Image, factor: int = 1) -> Image.Image:
    """A new 8-bit RGB image of `im` (loaded), box-reduced by `factor`, built band by band.

    Raises ValueError (Pillow's) for a mode that cannot be converted.
    """
    width, height = im.size
    gray = im.mode in _GRAY or im.mode in _SCALED
    out = Image.new("L" if gray else "RGB", reduced_size(im.size, factor), 0 if gray else WHITE)
    normalize = _normalizer(im)
    rows = band_rows(width, factor)
    for top in range(0, height, rows):
        band = normalize(im.crop((0, top, width, min(height, top + rows))))
        if factor > 1:
            band = band.reduce(factor)
        out.paste(band, (0, top // factor))
    return out.convert("RGB") if gray else out


def _normalizer(im: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """The per-band conversion into L (gray modes) or RGB (everything else)."""
    if im.mode in _SCALED:
        lo, hi = _finite_range(im)
        return lambda band: _scale_to_l(band, lo, hi)
    if im.mode in _GRAY:
        return lambda band: band if band.mode == "L" else band.convert("L")
    if has_alpha(im):
        return _flatten_on_white
    return lambda band: band if band.mode == "RGB" else band.convert("RGB")


def _flatten_on_white(band: Image.Image) -> Image.Image:
    if band.mode == "La":
        band = band.convert("LA")  # Pillow converts premultiplied gray only to its plain form
    rgba = band if band.mode == "RGBA" else band.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, WHITE)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _finite_range(im: Image.Image) -> tuple[float, float]:
    """The smallest and largest finite sample, read band by band (NaN and ±inf ignored)."""
    width, height = im.size
    rows = band_rows(width, 1)
    lo, hi = np.inf, -np.inf
    for top in range(0, height, rows):
        samples = np.asarray(im.crop((0, top, width, min(height, top + rows))))
        if samples.dtype.kind == "f":
            samples = samples[np.isfinite(samples)]
        if samples.size:
            lo, hi = min(lo, float(samples.min())), max(hi, float(samples.max()))
    return (0.0, 0.0) if lo > hi else (lo, hi)


def _scale_to_l(band: Image.Image, lo: float, hi: float) -> Image.Image:
    """8-bit gray of a high-bit-depth or float band: its range [lo, hi] onto [0, 255], in float32."""
    samples = np.asarray(band).astype(np.float32)  # one band-sized float32 copy, never float64
    if hi > lo:
        samples -= np.float32(lo)
        samples *= np.float32(255.0 / (hi - lo))
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.rint(samples, out=samples)
        np.clip(samples, 0.0, 255.0, out=samples)
    else:
        samples[...] = 0.0
    return Image.fromarray(samples.astype(np.uint8))
