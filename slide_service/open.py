"""Opening a whole-slide image from a local path (a FUSE mount on Google Cloud, a temporary file
locally): the format decided by content (plus the name for multi-file formats), its geometry and
resolution as a `SlideInfo`, and every way it can be unusable as a coded `SlideRejected`.

    unreadable_slide   the file claims a format but is truncated or corrupt (also: empty)
    unsupported_slide  not a format OpenSlide reads: another kind of file, a non-tiled
                       (stripped) TIFF, or one file of a multi-file format (MIRAX, VMS, DICOM)
    too_large          over MAX_SLIDE_BYTES or MAX_SLIDE_PIXELS (the tile budget is grid.py's)

Pixels are read through `Slide.read_rgb`, which composites transparent areas onto the slide's
background colour and maps OpenSlide's errors to `unreadable_slide` (a slide whose header
parses can still have a damaged tile anywhere).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import openslide
import tifffile
from PIL import Image

from healer_core.schema import ErrorCode
from healer_core.sniff import DICOM_MULTI as _DICOM_MULTI
from healer_core.sniff import FORMAT_NAMES, MULTI_FILE
from healer_core.sniff import SUPPORTED_HINT as _SUPPORTED_HINT
from healer_media.errors import SlideRejected
from healer_media.imaging import sniff_format
from slide_service.settings import SlideSettings

__all__ = ["Level", "Slide", "SlideInfo", "SlideLimits", "SlideRejected", "open_slide"]

# Plausible scanner resolutions; outside them the metadata is wrong, not the slide.
_MPP_RANGE = (0.05, 50.0)
# A guard on any one read: tiles and mask chunks are far smaller.
_MAX_READ_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class SlideLimits:
    """What `open_slide` refuses, and what it assumes when the file does not say."""

    max_bytes: int = 10 * 1000**3
    max_pixels: int = 40_000_000_000
    assumed_mpp: float = 0.25

    @classmethod
    def from_settings(cls, settings: SlideSettings) -> SlideLimits:
        return cls(settings.max_slide_bytes, settings.max_slide_pixels, settings.assumed_mpp)


@dataclass(frozen=True)
class Level:
    """One level of the pyramid: its size and its downsample from level 0."""

    width: int
    height: int
    downsample: float


@dataclass(frozen=True)
class SlideInfo:
    """What the job document records about a slide (`slide:` in the schema)."""

    vendor: str  # OpenSlide's name for the format, e.g. "aperio", "generic-tiff"
    format: str  # the same for people, e.g. "Aperio SVS"
    width: int
    height: int
    mpp: float  # µm per level-0 pixel (x; slides are square-pixelled in practice)
    mpp_assumed: bool  # the file did not say (or said nonsense): `mpp` is SLIDE_ASSUMED_MPP
    objective: float | None
    levels: tuple[Level, ...]

    def to_doc(self) -> dict[str, Any]:
        """The JSON-ready form stored in the job document."""
        return asdict(self)


class Slide:
    """An open slide: its `info` and region reads in RGB. Close it (or use `with`)."""

    def __init__(
        self, handle: openslide.OpenSlide, info: SlideInfo, background: tuple[int, int, int], path: Path
    ) -> None:
        self.handle = handle
        self.info = info
        self.background = background
        self.path = path

    def read_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """`size` pixels of `level` starting at the level-0 point `location`, as RGB. Areas
        outside the scanned region (transparent in OpenSlide) become the background colour."""
        width, height = size
        if width <= 0 or height <= 0 or width * height > _MAX_READ_PIXELS:
            raise ValueError(f"refusing to read a {width}x{height} region in one piece")
        try:
            rgba = self.handle.read_region(location, level, size)
        except openslide.OpenSlideError as exc:
            raise SlideRejected(
                ErrorCode.UNREADABLE_SLIDE, f"The slide's pixel data is corrupt or truncated: {_scrub(exc, self.path)}"
            ) from exc
        alpha = rgba.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return rgba.convert("RGB")
        canvas = Image.new("RGB", rgba.size, self.background)
        canvas.paste(rgba, mask=alpha)
        return canvas

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_slide(path: Path, limits: SlideLimits | None = None) -> Slide:
    """Open `path` with OpenSlide, or raise SlideRejected saying precisely why not.

    The file's suffix matters only for multi-file formats (keep it when downloading to a
    temporary file); everything else is decided by content."""
    limits = limits or SlideLimits()
    size = path.stat().st_size
    if size == 0:
        raise SlideRejected(ErrorCode.UNREADABLE_SLIDE, "The file is empty (0 bytes).")
    if size > limits.max_bytes:
        raise SlideRejected(
            ErrorCode.TOO_LARGE, f"The slide is {size} bytes; the limit (MAX_SLIDE_BYTES) is {limits.max_bytes}."
        )
    suffix = path.suffix.lower()
    if suffix in MULTI_FILE:
        raise SlideRejected(
            ErrorCode.UNSUPPORTED_SLIDE,
            f"{MULTI_FILE[suffix]}; only single-file slides are supported for now: {_SUPPORTED_HINT}.",
        )
    head = _read_head(path)
    if len(head) >= 132 and head[128:132] == b"DICM":
        raise SlideRejected(
            ErrorCode.UNSUPPORTED_SLIDE,
            f"The file is one DICOM instance, but {_DICOM_MULTI}; only single-file slides are supported for now.",
        )
    vendor = openslide.OpenSlide.detect_format(str(path))
    if vendor is None:
        raise _why_not(path, head, size)
    try:
        handle = openslide.OpenSlide(str(path))
    except openslide.OpenSlideError as exc:
        raise SlideRejected(
            ErrorCode.UNREADABLE_SLIDE,
            f"The {FORMAT_NAMES.get(vendor, vendor)} file is truncated or corrupt: {_scrub(exc, path)}",
        ) from exc
    try:
        info = _describe(handle, vendor, limits)
    except BaseException:
        handle.close()
        raise
    return Slide(handle, info, _background(handle), path)


def _scrub(exc: BaseException, path: Path) -> str:
    """OpenSlide's message without the file's path (it may carry the object name: patient data)."""
    return str(exc).replace(str(path), "<slide>").replace(path.name, "<slide>")


def _read_head(path: Path, n: int = 512) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def _describe(handle: openslide.OpenSlide, vendor: str, limits: SlideLimits) -> SlideInfo:
    width, height = handle.dimensions
    if width <= 0 or height <= 0 or handle.level_count < 1:
        raise SlideRejected(ErrorCode.UNREADABLE_SLIDE, f"The slide declares an empty image ({width}x{height}).")
    if width * height > limits.max_pixels:
        raise SlideRejected(
            ErrorCode.TOO_LARGE,
            f"The slide is {width}x{height} = {width * height} pixels; the limit (MAX_SLIDE_PIXELS) is"
            f" {limits.max_pixels}.",
        )
    props = handle.properties
    mpp = _float(props.get(openslide.PROPERTY_NAME_MPP_X))
    assumed = mpp is None or not (_MPP_RANGE[0] <= mpp <= _MPP_RANGE[1])
    levels = tuple(
        Level(int(w), int(h), float(ds))
        for (w, h), ds in zip(handle.level_dimensions, handle.level_downsamples, strict=True)
    )
    return SlideInfo(
        vendor=vendor,
        format=FORMAT_NAMES.get(vendor, vendor),
        width=int(width),
        height=int(height),
        mpp=limits.assumed_mpp if assumed or mpp is None else mpp,
        mpp_assumed=assumed,
        objective=_float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
        levels=levels,
    )


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _background(handle: openslide.OpenSlide) -> tuple[int, int, int]:
    colour = handle.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR)
    if colour and len(colour) == 6:
        try:
            return (int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16))
        except ValueError:
            pass
    return (255, 255, 255)


def _why_not(path: Path, head: bytes, size: int) -> SlideRejected:
    """OpenSlide recognised nothing: say whether the file is damaged or simply not a slide."""
    kind = sniff_format(head)
    if kind != "TIFF":
        what = f"a {kind} image, not a whole-slide image" if kind else "not a whole-slide format OpenSlide reads"
        return SlideRejected(ErrorCode.UNSUPPORTED_SLIDE, f"The file is {what}: {_SUPPORTED_HINT}.")
    damaged = SlideRejected(ErrorCode.UNREADABLE_SLIDE, "The TIFF structure is corrupt or truncated.")
    with _TiffComplaints() as complaints:
        try:
            with tifffile.TiffFile(path) as tif:
                pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage)]
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, EOFError):
            return damaged
    if not pages:
        return damaged
    for page in pages:
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        if ends and max(ends) > size:
            return SlideRejected(
                ErrorCode.UNREADABLE_SLIDE,
                f"The TIFF is truncated: its image data runs to byte {max(ends)} but the file has {size}.",
            )
    first = pages[0]
    # tifffile reads past damage where it can, and says so: a file it had to patch up is damaged.
    if complaints.records or first.imagewidth <= 0 or first.imagelength <= 0 or not first.dataoffsets:
        return damaged
    shape = f"{first.imagewidth}x{first.imagelength}"
    if not first.is_tiled:
        return SlideRejected(
            ErrorCode.UNSUPPORTED_SLIDE,
            f"The file is a non-tiled (stripped) TIFF of {shape} pixels; whole-slide images must be tiled"
            f" pyramids: {_SUPPORTED_HINT}.",
        )
    return SlideRejected(
        ErrorCode.UNSUPPORTED_SLIDE,
        f"The file is a tiled TIFF of {shape} pixels that OpenSlide does not recognise"
        f" (compression {getattr(first.compression, 'name', first.compression)}, {len(pages)} pages).",
    )


class _TiffComplaints(logging.Handler):
    """Collects what tifffile logs while parsing (and keeps it out of the service's logs)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger("tifffile")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _TiffComplaints:
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
