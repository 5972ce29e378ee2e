"""Image or slide, from a few small ranged reads (healer_core.sniff): pure, on generated files."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from healer_core.schema import JobKind
from healer_core.sniff import HEAD_BYTES, Sniffed, SniffLimits, classify
from slide_service import synth


class Ranged:
    """A file served by ranged reads, recording them (what ingest's pinned reads would fetch)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


def sniff(path: Path, limits: SniffLimits | None = None, name: str | None = None) -> tuple[Sniffed, Ranged]:
    ranged = Ranged(path.read_bytes())
    return classify(name or path.name, len(ranged.data), ranged, limits), ranged


def tiff(path: Path, **kwargs: Any) -> Path:
    """A small tiled RGB TIFF with the given tags (and no tifffile metadata of its own)."""
    data = np.full((64, 64, 3), 200, np.uint8)
    tifffile.imwrite(path, data, tile=(16, 16), photometric="rgb", metadata=None, **kwargs)
    return path


def test_the_sample_tiles_stay_images(sample_paths: list[Path]) -> None:
    for path in sample_paths:
        result, ranged = sniff(path)
        assert result.kind == JobKind.IMAGE, path.name
        assert len(ranged.reads) <= 3 and all(length <= HEAD_BYTES for _, length in ranged.reads)


@pytest.mark.parametrize(("fmt", "magic"), [("PNG", b"\x89PNG"), ("JPEG", b"\xff\xd8"), ("WEBP", b"RIFF")])
def test_other_image_formats_are_images(tmp_path: Path, fmt: str, magic: bytes) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (32, 32), (200, 80, 160)).save(path, format=fmt)
    assert path.read_bytes().startswith(magic)
    assert sniff(path)[0].kind == JobKind.IMAGE


def test_an_aperio_slide_is_a_slide_from_its_first_read(tmp_path: Path, sample_paths: list[Path]) -> None:
    slide = synth.write_slide(tmp_path / "case.svs", sample_paths, width=2048, height=1536, mpp=0.5)
    result, ranged = sniff(slide.path)
    assert (result.kind, result.vendor, result.format) == (JobKind.SLIDE, "aperio", "Aperio SVS")
    assert (result.width, result.height, result.tiled, result.unsupported) == (2048, 1536, True, "")
    assert ranged.reads == [(0, HEAD_BYTES)]  # the header, directory and description in one read


def test_a_generic_pyramid_is_a_slide_and_a_small_flat_tiled_tiff_an_image(
    tmp_path: Path, sample_paths: list[Path]
) -> None:
    pyramid = synth.write_slide(tmp_path / "p.tif", sample_paths, width=2048, height=1536, mpp=0.5, aperio=False)
    result, ranged = sniff(pyramid.path)
    assert (result.kind, result.vendor) == (JobKind.SLIDE, "generic-tiff")
    assert len(ranged.reads) <= 4 and sum(n for _, n in ranged.reads) < 2 * HEAD_BYTES  # never the whole file
    flat = synth.write_slide(tmp_path / "f.tif", sample_paths, width=1024, height=768, aperio=False, pyramid=False)
    assert sniff(flat.path)[0].kind == JobKind.IMAGE
    # The same flat tiled TIFF over the single-image pixel limit is a slide.
    assert sniff(flat.path, SniffLimits(max_image_pixels=1024 * 768 - 1))[0].vendor == "generic-tiff"


def test_bigtiff_pyramid(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(np.zeros((256, 256, 3), np.uint8), tile=(64, 64), photometric="rgb")
        tif.write(np.zeros((64, 64, 3), np.uint8), tile=(64, 64), photometric="rgb", subfiletype=1)
    result, _ = sniff(path)
    assert (result.kind, result.vendor, result.bigtiff) == (JobKind.SLIDE, "generic-tiff", True)


def test_a_huge_stripped_tiff_is_an_unsupported_slide(tmp_path: Path) -> None:
    result, ranged = sniff(synth.write_strip_tiff(tmp_path / "scan.tif", width=20_000, height=15_000))
    assert result.kind == JobKind.SLIDE and "non-tiled (stripped) TIFF of 20000x15000" in result.unsupported
    assert ranged.reads == [(0, HEAD_BYTES)]


@pytest.mark.parametrize(
    ("kwargs", "vendor"),
    [
        ({"extratags": [(65420, "I", 1, 1, False)]}, "hamamatsu"),
        ({"description": '<?xml version="1.0"?><DataObject ObjectType="DPUfsImport"></DataObject>'}, "philips"),
        ({"software": "Philips"}, "philips"),
        ({"description": '<scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01"></scn>'}, "leica"),
        ({"extratags": [(700, "B", 29, b"<Metadata><iScan/></Metadata>", False)]}, "ventana"),
        ({"software": "MedScan 5"}, "trestle"),
        ({"description": "Aperio Image Library v12|AppMag = 20|MPP = 0.5"}, "aperio"),
    ],
)
def test_vendor_markers_make_even_a_small_tiff_a_slide(tmp_path: Path, kwargs: dict[str, Any], vendor: str) -> None:
    result, _ = sniff(tiff(tmp_path / "v.tif", **kwargs))
    assert (result.kind, result.vendor) == (JobKind.SLIDE, vendor)


def test_big_endian_tiff(tmp_path: Path) -> None:
    path = tiff(tmp_path / "mm.tif", description="Aperio x", byteorder=">")
    assert path.read_bytes()[:2] == b"MM"
    assert sniff(path)[0].vendor == "aperio"


def test_multi_file_formats_by_suffix_without_reading(tmp_path: Path) -> None:
    for suffix, says in ((".mrxs", "MIRAX"), (".vms", "VMS"), (".vmu", "VMU"), (".vsi", "VSI")):
        path = synth.write_mrxs_standin(tmp_path / f"case{suffix}")
        result, ranged = sniff(path)
        assert result.kind == JobKind.SLIDE and says in result.unsupported and "single-file" in result.unsupported
        assert ranged.reads == []


def test_dicom_by_content_whatever_its_name(tmp_path: Path) -> None:
    result, _ = sniff(synth.write_dicom_standin(tmp_path / "level0.bin"))
    assert result.kind == JobKind.SLIDE and "DICOM" in result.unsupported and "folder" in result.unsupported


@pytest.mark.parametrize(("head", "vendor"), [(b"ZISRAWFILE", "zeiss"), (b"SQLite format 3\x00", "sakura")])
def test_other_single_file_slide_formats(tmp_path: Path, head: bytes, vendor: str) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(head + b"\0" * 100)
    result, _ = sniff(path)
    assert (result.kind, result.vendor, result.unsupported) == (JobKind.SLIDE, vendor, "")


def test_broken_tiff_directories_go_where_they_can_be_named(tmp_path: Path) -> None:
    """An unreadable TIFF is an image (`truncated` from the decoder) unless it is too big to be one."""
    header_only = struct.pack("<2sHI", b"II", 42, 10_000_000)  # the first directory lies past the end
    path = tmp_path / "cut.tif"
    path.write_bytes(header_only)
    assert sniff(path)[0].kind == JobKind.IMAGE
    result, _ = sniff(path, SniffLimits(max_image_bytes=4))
    assert (result.kind, result.unsupported) == (JobKind.SLIDE, "")
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(struct.pack("<2sHIH", b"II", 42, 8, 60_000) + b"\0" * 64)  # 60,000 entries claimed
    assert sniff(garbage)[0].kind == JobKind.IMAGE


def test_a_truncated_slide_is_still_a_slide(tmp_path: Path, sample_paths: list[Path]) -> None:
    slide = synth.write_slide(tmp_path / "whole.svs", sample_paths, width=2048, height=1536, mpp=0.5)
    cut = synth.truncate(slide.path, tmp_path / "cut.svs", 0.3)
    assert sniff(cut)[0].vendor == "aperio"  # the slide service then says unreadable_slide


def test_a_png_named_svs_is_an_image(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="PNG")
    path = tmp_path / "not-a-slide.svs"
    path.write_bytes(buf.getvalue())
    assert sniff(path)[0].kind == JobKind.IMAGE
