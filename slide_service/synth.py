"""Whole-slide images generated at run time from the sample tiles, good ones and bad ones.

A good slide is a pyramidal tiled TIFF that OpenSlide opens: rectangular tissue regions textured
with tumor or normal sample tiles on a near-white background, JPEG-compressed 256 px tiles,
reduced levels (downsample 4, 16, ...) flagged subfiletype=1, the resolution tags set, and an
Aperio-style ImageDescription (`Aperio ...|AppMag = 40|MPP = 0.25`) so OpenSlide reports it as
Aperio. Every level is rendered tile by tile from the same scene description, never from the
level above, so a 40k x 30k slide is written without holding it in memory. The regions are
returned, so tests can check that heatmaps and tile coordinates land on the tumor.

The bad ones: truncated, corrupt, a huge non-tiled (stripped) TIFF, a slide without tissue, and
stand-ins for multi-file formats (a MIRAX `.mrxs` index without its data directory, a DICOM
instance). Tests, `make demo` and `make bench-slide` use them; nothing here runs in a service.
"""

from __future__ import annotations

import io
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image

# Bump when the generated pixels change, so caches of generated slides (make bench-slide) renew.
VERSION = 1
TUMOR = "tumor"
NORMAL = "normal"
# TIFF tile edge; 256 is what Aperio and most scanners write.
TIFF_TILE = 256
# Near-white glass, slightly warm, as scanners render an empty field.
BACKGROUND = (242, 240, 244)
# Blue marker ink, as labs circle regions with.
PEN = (40, 70, 170)
# The sample tiles are ~0.5 µm/px crops; one texture cell covers this many micrometres.
_CELL_UM = 64.0
_TEXTURE_CELLS = 4


@dataclass(frozen=True)
class Region:
    """A rectangle of one kind of tissue, in level-0 pixels."""

    label: str
    x: int
    y: int
    w: int
    h: int

    def contains(self, x: float, y: float) -> bool:
        """Whether a level-0 point lies inside the region."""
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h


@dataclass(frozen=True)
class SynthSlide:
    """What was written: where, how big, at what resolution, and where the tissue is."""

    path: Path
    width: int
    height: int
    mpp: float | None
    regions: tuple[Region, ...]
    level_dimensions: tuple[tuple[int, int], ...]

    @property
    def tumor(self) -> Region:
        """The (first) tumor region; raises when the slide has none."""
        for region in self.regions:
            if region.label == TUMOR:
                return region
        raise LookupError("this synthetic slide has no tumor region")


def default_layout(width: int, height: int, tumor: bool = True) -> tuple[Region, ...]:
    """Normal tissue on the left, a tumor block on the right, glass around and between them."""
    normal = Region(NORMAL, int(width * 0.08), int(height * 0.15), int(width * 0.40), int(height * 0.70))
    if not tumor:
        return (normal,)
    return (normal, Region(TUMOR, int(width * 0.58), int(height * 0.25), int(width * 0.30), int(height * 0.50)))


def _samples_for(label: str, sample_paths: Sequence[Path]) -> list[Path]:
    found = [p for p in sample_paths if p.name.lower().startswith(label + "_")]
    if not found:
        raise ValueError(f"no {label}_* sample tile among {len(sample_paths)} sample paths")
    return found


def _texture(paths: Sequence[Path], cell: int, seed: int) -> NDArray[np.uint8]:
    """A mosaic of sample tiles (random picks, flips and quarter turns), tileable by wrap-around."""
    rng = random.Random(seed)
    images = [Image.open(p).convert("RGB") for p in paths]
    side = cell * _TEXTURE_CELLS
    canvas = np.empty((side, side, 3), np.uint8)
    for row in range(_TEXTURE_CELLS):
        for col in range(_TEXTURE_CELLS):
            im = rng.choice(images).resize((cell, cell), Image.Resampling.LANCZOS)
            im = im.rotate(90 * rng.randrange(4))
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            canvas[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = np.asarray(im)
    return canvas


def _level_sizes(width: int, height: int, min_side: int = 512) -> list[tuple[int, int, int]]:
    """(width, height, downsample) per level: x4 each, down to about `min_side` px."""
    levels = [(width, height, 1)]
    ds = 4
    while max(width, height) // ds >= min_side:
        levels.append((max(1, width // ds), max(1, height // ds), ds))
        ds *= 4
    return levels


class _Scene:
    """The slide's content at any level, rendered one TIFF tile at a time."""

    def __init__(
        self,
        regions: Sequence[Region],
        textures: dict[str, NDArray[np.uint8]],
        pen: bool,
        width: int,
        height: int,
    ) -> None:
        self.regions = list(regions)
        self.textures = textures
        self.pen = pen
        self.width, self.height = width, height
        self._scaled: dict[tuple[str, int], NDArray[np.uint8]] = {}
        noise = np.random.default_rng(7).integers(-3, 4, size=(TIFF_TILE, TIFF_TILE, 1), dtype=np.int16)
        self._background = np.clip(np.array(BACKGROUND, np.int16) + noise, 0, 255).astype(np.uint8)

    def _texture(self, label: str, ds: int) -> NDArray[np.uint8]:
        key = (label, ds)
        if key not in self._scaled:
            tex = self.textures[label]
            side = max(1, tex.shape[0] // ds)
            self._scaled[key] = np.asarray(Image.fromarray(tex).resize((side, side), Image.Resampling.BOX))
        return self._scaled[key]

    def tile(self, ds: int, tx: int, ty: int) -> NDArray[np.uint8]:
        """The TIFF tile at column tx, row ty of the level with downsample ds."""
        x0, y0 = tx * TIFF_TILE, ty * TIFF_TILE
        out = self._background.copy()
        for region in self.regions:
            # Region bounds at this level, clipped to this tile.
            rx0, ry0 = region.x // ds, region.y // ds
            rx1, ry1 = (region.x + region.w) // ds, (region.y + region.h) // ds
            ix0, iy0 = max(rx0, x0), max(ry0, y0)
            ix1, iy1 = min(rx1, x0 + TIFF_TILE), min(ry1, y0 + TIFF_TILE)
            if ix0 >= ix1 or iy0 >= iy1:
                continue
            tex = self._texture(region.label, ds)
            side = tex.shape[0]
            ys = np.arange(iy0, iy1) % side
            xs = np.arange(ix0, ix1) % side
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = tex[ys[:, None], xs[None, :]]
        if self.pen:
            self._draw_pen(out, ds, x0, y0)
        return out

    def _draw_pen(self, out: NDArray[np.uint8], ds: int, x0: int, y0: int) -> None:
        # A marker stroke along the top edge of the slide, over glass only (as labs annotate).
        ys = (np.arange(y0, y0 + TIFF_TILE) * ds)[:, None]
        xs = (np.arange(x0, x0 + TIFF_TILE) * ds)[None, :]
        centre = self.height * 0.06 + (xs - self.width / 2) * 0.02
        stroke = np.abs(ys - centre) < max(self.height * 0.012, 2 * ds)
        out[stroke] = PEN


def _aperio_description(width: int, height: int, mpp: float | None, quality: int) -> str:
    fields = [
        f"Aperio Image Library v12.0.15 (Healer synthetic)\r\n{width}x{height} [0,0 {width}x{height}]"
        f" ({TIFF_TILE}x{TIFF_TILE}) JPEG/RGB Q={quality}"
    ]
    if mpp is not None:
        fields.append(f"AppMag = {round(10.0 / mpp):d}")
        fields.append(f"MPP = {mpp:.4f}")
    fields.append("Filename = synthetic")
    return "|".join(fields)


def write_slide(
    path: Path,
    sample_paths: Sequence[Path],
    width: int = 8192,
    height: int = 6144,
    mpp: float | None = 0.25,
    regions: Sequence[Region] | None = None,
    quality: int = 80,
    aperio: bool = True,
    pen: bool = False,
    pyramid: bool = True,
    seed: int = 0,
) -> SynthSlide:
    """Write a pyramidal, tiled, JPEG-compressed TIFF slide and describe it.

    `regions` defaults to `default_layout`; pass `()` for a slide of bare glass. `mpp=None`
    writes no resolution at all (the reader must assume one). `aperio=False` writes a generic
    tiled TIFF (OpenSlide's `generic-tiff`) with the resolution tags only. `pyramid=False`
    writes level 0 alone, as some exporters do. `pen` adds a blue marker stroke over the glass.
    """
    regions = tuple(default_layout(width, height) if regions is None else regions)
    labels = {r.label for r in regions}
    cell_mpp = mpp if mpp is not None else 0.25
    # Texture cells a multiple of 64 px, so every level's texture (down to 1/64) stays whole.
    cell = max(64, round(_CELL_UM / cell_mpp / 64) * 64)
    textures = {label: _texture(_samples_for(label, sample_paths), cell, seed + i) for i, label in enumerate(labels)}
    scene = _Scene(regions, textures, pen, width, height)
    levels = _level_sizes(width, height) if pyramid else [(width, height, 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tif:
        for lw, lh, ds in levels:
            options: dict[str, object] = {}
            if mpp is not None:
                # Pixels per centimetre at this level, as scanners write it.
                options.update(resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)), resolutionunit="CENTIMETER")
            tif.write(
                _tiles(scene, ds, lw, lh),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(TIFF_TILE, TIFF_TILE),
                photometric="rgb",  # tifffile stores JPEG tiles as YCbCr, which OpenSlide expects
                compression="jpeg",
                compressionargs={"level": quality},
                subfiletype=0 if ds == 1 else 1,
                description=_aperio_description(width, height, mpp, quality) if aperio and ds == 1 else None,
                metadata=None,
                **options,  # type: ignore[arg-type]
            )
    return SynthSlide(path, width, height, mpp, regions, tuple((lw, lh) for lw, lh, _ in levels))


def _tiles(scene: _Scene, ds: int, width: int, height: int) -> Iterator[NDArray[np.uint8]]:
    # Row-major, as TIFF orders tiles; edge tiles are full size (the writer crops them).
    for ty in range((height + TIFF_TILE - 1) // TIFF_TILE):
        for tx in range((width + TIFF_TILE - 1) // TIFF_TILE):
            yield scene.tile(ds, tx, ty)


# --- bad slides ---------------------------------------------------------------------------------


def truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """A copy of `src` cut after `keep` of its bytes (an interrupted upload)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def corrupt(src: Path, dst: Path, part: Literal["structure", "tiles"] = "structure", seed: int = 0) -> Path:
    """A damaged copy of `src`. `structure`: everything after the 8-byte TIFF header overwritten
    with noise (the header still says TIFF; nothing after it parses). `tiles`: the directories
    intact (the slide opens) but every tile's compressed data noise (reads fail)."""
    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    if part == "structure":
        spans = [(8, len(data))]
    else:
        with tifffile.TiffFile(src) as tif:
            spans = [
                (offset + 2, offset + count)  # keep each tile's JPEG start marker
                for page in tif.pages
                if isinstance(page, tifffile.TiffPage)
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
            ]
    for start, end in spans:
        for offset in range(start, end, 3):
            data[offset] = rng.randrange(256)
    dst.write_bytes(bytes(data))
    return dst


def write_strip_tiff(path: Path, width: int = 100_000, height: int = 80_000) -> Path:
    """A huge non-tiled TIFF (one image in deflate-compressed strips), as flatbed scans and
    exports write: its header declares width x height pixels but the file stays small, because
    every strip is the same blank pre-compressed bytes."""
    rows = 64
    strip = zlib.compress(np.full((rows, width, 3), 240, np.uint8).tobytes(), 6)
    strips = (height + rows - 1) // rows
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            (strip for _ in range(strips)),
            shape=(height, width, 3),
            dtype=np.uint8,
            rowsperstrip=rows,
            photometric="rgb",
            compression="zlib",
            metadata=None,
        )
    return path


def write_blank_slide(path: Path, sample_paths: Sequence[Path], width: int = 4096, height: int = 3072) -> SynthSlide:
    """A well-formed slide of bare glass: no tissue anywhere."""
    return write_slide(path, sample_paths, width, height, regions=())


def write_mrxs_standin(path: Path) -> Path:
    """A MIRAX `.mrxs` index alone, without the `<name>/Slidedat.ini` + `Data*.dat` directory that
    holds its pixels: what a bucket receives when a multi-file slide is uploaded as one object."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), BACKGROUND).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())
    return path


def write_dicom_standin(path: Path) -> Path:
    """One DICOM instance (preamble, `DICM`, a file meta group naming the VL Whole Slide
    Microscopy Image Storage class): one level of a slide whose other levels are other files."""

    def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0"
        return group.to_bytes(2, "little") + elem.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value

    meta = (
        element(0x0002, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.77.1.6")
        + element(0x0002, 0x0003, b"UI", b"1.2.826.0.1.3680043.10.1234.1")
        + element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.4.50")
    )
    length = element(0x0002, 0x0000, b"UL", len(meta).to_bytes(4, "little"))
    path.write_bytes(b"\0" * 128 + b"DICM" + length + meta)
    return path
