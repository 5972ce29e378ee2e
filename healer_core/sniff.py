"""What an upload is — one image or a whole slide — from a few small ranged reads of its bytes.

Ingest calls `classify` with a `read_range(offset, length)` callable (a generation-pinned ranged
read of the object: never a download) and the object's size. Pure: no Google client here, so the
rules are tested on bytes alone and the ingest bundle carries them (healer_core is copied in).

    name ends .mrxs/.vms/.vmu/.vsi   slide, unsupported: a multi-file format (pixels in companion files)
    'DICM' at byte 128               slide, unsupported: a DICOM slide is a folder of instances
    'ZISRAWFILE' / 'SQLite format 3' slide (Zeiss CZI / Sakura SVSlide; OpenSlide decides)
    TIFF or BigTIFF, first IFD:
      a vendor marker                slide: Aperio (ImageDescription), Hamamatsu (NDPI tag 65420),
                                     Philips (DPUfsImport XML / Software), Leica (SCN XML),
                                     Ventana (XMP with iScan), Trestle (Software MedScan)
      tiled, and a pyramid (the next directory is a reduced-resolution tiled image) or larger
      than a single image may be (MAX_IMAGE_PIXELS or MAX_IMAGE_BYTES)
                                     slide (generic tiled TIFF)
      not tiled, more pixels than MAX_IMAGE_PIXELS
                                     slide, unsupported: a huge non-tiled (stripped) image
      anything else                  image (the sample .tif tiles: small and stripped)
    anything else                    image (the image path decides by content, as before)

A TIFF whose directories cannot be read is an image when it could be one (the decoder then says
`truncated`) and a slide when it is too big to be an image (the slide service then says
`unreadable_slide`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from healer_core.schema import JobKind

ReadRange = Callable[[int, int], bytes]
"""`read_range(offset, length)`: up to `length` bytes of the object from `offset` (fewer at its end)."""

# OpenSlide's vendor names → what a person calls the format (the slide service reports the same).
FORMAT_NAMES = {
    "aperio": "Aperio SVS",
    "hamamatsu": "Hamamatsu NDPI",
    "philips": "Philips TIFF",
    "leica": "Leica SCN",
    "ventana": "Ventana BIF",
    "generic-tiff": "Generic tiled TIFF",
    "trestle": "Trestle TIFF",
    "sakura": "Sakura SVSlide",
    "synthetic": "OpenSlide synthetic slide",
    "zeiss": "Zeiss CZI",
}
# Formats whose pixels live in companion files that a single uploaded object cannot carry.
MULTI_FILE_FORMATS = {".mrxs": "MIRAX", ".vms": "Hamamatsu VMS", ".vmu": "Hamamatsu VMU", ".vsi": "Olympus VSI"}
MULTI_FILE = {
    ".mrxs": "MIRAX (.mrxs) slides keep their pixels in a directory of Data*.dat files beside the index",
    ".vms": "Hamamatsu VMS slides are an index plus separate JPEG files",
    ".vmu": "Hamamatsu VMU slides are an index plus separate image files",
    ".vsi": "Olympus VSI slides keep their pixels in a folder of .ets files beside the index",
}
DICOM_MULTI = "a DICOM whole-slide image is a folder of instances (one or more per level)"
SUPPORTED_HINT = "upload a single-file slide (SVS, NDPI, Philips TIFF, SCN, BIF or a tiled pyramidal TIFF)"

HEAD_BYTES = 64 * 1024  # the first read: the header and, for most writers, the first directory
_MAX_ENTRIES = 4096  # a directory with more entries than this is garbage, not a slide
_MAX_TEXT = 64 * 1024  # how much of an ImageDescription or XMP packet is looked at
_IFD_CHUNK = 4096  # bytes read at a directory's offset (about 340 classic entries)

# TIFF tags used here.
NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH = 254, 256, 257
IMAGE_DESCRIPTION, SOFTWARE, TILE_WIDTH, XMP, NDPI_FORMAT_FLAG = 270, 305, 322, 700, 65420
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


@dataclass(frozen=True)
class SniffLimits:
    """What a single image may be at most (bigger tiled TIFFs are slides)."""

    max_image_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 178_956_970


@dataclass(frozen=True)
class Sniffed:
    """The verdict of `classify`: the job's kind and, for slides, what is known before opening."""

    kind: JobKind
    vendor: str = ""  # OpenSlide's vendor name when a marker says it, "generic-tiff", "dicom", "mirax", ...
    format: str = ""  # for people: "Aperio SVS", "TIFF", "DICOM", ...
    width: int = 0
    height: int = 0
    tiled: bool = False
    bigtiff: bool = False
    unsupported: str = ""  # non-empty: why this slide cannot be read here (fails as unsupported_slide)

    @property
    def is_slide(self) -> bool:
        return self.kind == JobKind.SLIDE


IMAGE = Sniffed(JobKind.IMAGE)


class _Reader:
    """Serves reads inside the first HEAD_BYTES from one cached read; others go to `read_range`."""

    def __init__(self, read_range: ReadRange) -> None:
        self._read_range = read_range
        self.head = read_range(0, HEAD_BYTES)

    def read(self, offset: int, length: int) -> bytes:
        if offset + length <= len(self.head):
            return self.head[offset : offset + length]
        return self._read_range(offset, length)


class _NotTiff(ValueError):
    """The bytes do not parse as a TIFF directory."""


@dataclass(frozen=True)
class _Ifd:
    """The entries of one TIFF directory that matter here."""

    width: int
    height: int
    tiled: bool
    subfile_type: int
    description: str
    software: str
    xmp: str
    ndpi: bool
    next_offset: int


def classify(name: str, size: int, read_range: ReadRange, limits: SniffLimits | None = None) -> Sniffed:
    """Decide whether the object `name` (of `size` bytes) is an image or a slide (module docstring)."""
    limits = limits or SniffLimits()
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in MULTI_FILE:
        why = f"{MULTI_FILE[suffix]}; only single-file slides are supported for now: {SUPPORTED_HINT}."
        return Sniffed(JobKind.SLIDE, vendor=suffix.lstrip("."), format=MULTI_FILE_FORMATS[suffix], unsupported=why)
    reader = _Reader(read_range)
    head = reader.head
    if len(head) >= 132 and head[128:132] == b"DICM":
        why = f"The file is one DICOM instance, but {DICOM_MULTI}; only single-file slides are supported for now."
        return Sniffed(JobKind.SLIDE, vendor="dicom", format="DICOM", unsupported=why)
    if head.startswith(b"ZISRAWFILE"):
        return Sniffed(JobKind.SLIDE, vendor="zeiss", format=FORMAT_NAMES["zeiss"])
    if head.startswith(b"SQLite format 3\x00"):
        return Sniffed(JobKind.SLIDE, vendor="sakura", format=FORMAT_NAMES["sakura"])
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _classify_tiff(reader, size, limits)
    return IMAGE


def _classify_tiff(reader: _Reader, size: int, limits: SniffLimits) -> Sniffed:
    head = reader.head
    order = "<" if head[:2] == b"II" else ">"
    bigtiff = head[2:4] in (b"+\x00", b"\x00+")
    try:
        first_offset = _unpack(order + ("Q" if bigtiff else "I"), head, 8 if bigtiff else 4)
        ifd = _read_ifd(reader, order, bigtiff, first_offset)
    except _NotTiff:
        # Unreadable directories: whichever path can say so with the right code.
        if size > limits.max_image_bytes:
            return Sniffed(JobKind.SLIDE, vendor="", format="TIFF", bigtiff=bigtiff)
        return IMAGE

    def slide(vendor: str, fmt: str, unsupported: str = "") -> Sniffed:
        return Sniffed(JobKind.SLIDE, vendor, fmt, ifd.width, ifd.height, ifd.tiled, bigtiff, unsupported)

    vendor = _vendor(ifd)
    if vendor:
        return slide(vendor, FORMAT_NAMES[vendor])
    pixels = ifd.width * ifd.height
    too_big = pixels > limits.max_image_pixels or size > limits.max_image_bytes
    if ifd.tiled and (too_big or _pyramid_follows(reader, order, bigtiff, ifd)):
        return slide("generic-tiff", FORMAT_NAMES["generic-tiff"])
    if not ifd.tiled and pixels > limits.max_image_pixels:
        why = (
            f"The file is a non-tiled (stripped) TIFF of {ifd.width}x{ifd.height} pixels; whole-slide images must be"
            f" tiled pyramids: {SUPPORTED_HINT}."
        )
        return slide("", "TIFF", why)
    return IMAGE


def _vendor(ifd: _Ifd) -> str:
    """OpenSlide's vendor for the markers its drivers detect on the first directory, or ""."""
    description = ifd.description.lstrip()
    if description.startswith("Aperio"):
        return "aperio"
    if ifd.ndpi:
        return "hamamatsu"
    if "DPUfsImport" in description or ifd.software.startswith("Philips"):
        return "philips"
    if "leica-microsystems.com/scn" in description:
        return "leica"
    if "iScan" in ifd.xmp:
        return "ventana"
    if ifd.software.startswith("MedScan"):
        return "trestle"
    return ""


def _pyramid_follows(reader: _Reader, order: str, bigtiff: bool, first: _Ifd) -> bool:
    """Whether the next directory is a reduced-resolution tiled copy of the first (a pyramid level)."""
    if not first.next_offset:
        return False
    try:
        second = _read_ifd(reader, order, bigtiff, first.next_offset)
    except _NotTiff:
        return False
    smaller = 0 < second.width < first.width and 0 < second.height < first.height
    return second.tiled and (bool(second.subfile_type & 1) or smaller)


def _unpack(fmt: str, data: bytes, offset: int) -> int:
    try:
        value: int = struct.unpack_from(fmt, data, offset)[0]
    except struct.error as exc:
        raise _NotTiff(f"short read at {offset}") from exc
    return value


def _read_ifd(reader: _Reader, order: str, bigtiff: bool, offset: int) -> _Ifd:
    """The entries of the directory at `offset` that classification needs."""
    if offset < 8:
        raise _NotTiff("directory offset inside the header")
    count_fmt, entry_size, value_size = ("Q", 20, 8) if bigtiff else ("H", 12, 4)
    chunk = reader.read(offset, _IFD_CHUNK)  # one read holds a typical directory whole
    count = _unpack(order + count_fmt, chunk, 0)
    if not 0 < count <= _MAX_ENTRIES:
        raise _NotTiff(f"{count} directory entries")
    start = 8 if bigtiff else 2
    size = count * entry_size + value_size
    table = chunk[start : start + size] if start + size <= len(chunk) else reader.read(offset + start, size)
    if len(table) < count * entry_size:
        raise _NotTiff("directory cut short")
    word = order + ("Q" if bigtiff else "I")
    entries: dict[int, tuple[int, int, bytes]] = {}  # tag -> (type, count, the value or its offset)
    for i in range(count):
        base = i * entry_size
        tag, kind = struct.unpack_from(order + "HH", table, base)
        value_at = base + 4 + value_size
        # The first of a repeated tag wins, as libtiff (and so OpenSlide) reads it.
        entries.setdefault(tag, (kind, _unpack(word, table, base + 4), table[value_at : value_at + value_size]))
    end = count * entry_size
    next_offset = _unpack(word, table, end) if len(table) >= end + value_size else 0
    return _Ifd(
        width=_number(reader, order, bigtiff, entries.get(IMAGE_WIDTH)),
        height=_number(reader, order, bigtiff, entries.get(IMAGE_LENGTH)),
        tiled=TILE_WIDTH in entries,
        subfile_type=_number(reader, order, bigtiff, entries.get(NEW_SUBFILE_TYPE)),
        description=_text(reader, order, bigtiff, entries.get(IMAGE_DESCRIPTION)),
        software=_text(reader, order, bigtiff, entries.get(SOFTWARE)),
        xmp=_text(reader, order, bigtiff, entries.get(XMP)),
        ndpi=NDPI_FORMAT_FLAG in entries,
        next_offset=next_offset,
    )


def _number(reader: _Reader, order: str, bigtiff: bool, entry: tuple[int, int, bytes] | None) -> int:
    """The first value of a SHORT / LONG / LONG8 entry (0 when absent or of another type)."""
    if entry is None:
        return 0
    kind, _, field = entry
    fmt = {3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}.get(kind)
    return _unpack(order + fmt, field, 0) if fmt else 0


def _text(reader: _Reader, order: str, bigtiff: bool, entry: tuple[int, int, bytes] | None) -> str:
    """An ASCII / BYTE / UNDEFINED entry as text (its first _MAX_TEXT bytes), "" when absent."""
    if entry is None:
        return ""
    kind, count, field = entry
    if kind not in (1, 2, 7):
        return ""
    length = min(count * _TYPE_SIZES[kind], _MAX_TEXT)
    if length <= len(field):
        raw = field[:length]
    else:
        raw = reader.read(_unpack(order + ("Q" if bigtiff else "I"), field, 0), length)
    return raw.split(b"\x00", 1)[0].decode("latin-1")
