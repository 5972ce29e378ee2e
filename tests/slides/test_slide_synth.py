"""The generated slides are what the rest of the suite assumes: real pyramidal tiled TIFFs that
OpenSlide reads as Aperio (or generic TIFF), and bad files that are bad in the stated way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from slide_service import synth
from slide_service.synth import TUMOR, SynthSlide


def test_aperio_slide_is_a_pyramid_of_jpeg_tiles(aperio_slide: SynthSlide) -> None:
    with tifffile.TiffFile(aperio_slide.path) as tif:
        pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage)]
        assert [(p.imagewidth, p.imagelength) for p in pages] == list(aperio_slide.level_dimensions)
        assert all(p.is_tiled and p.tilewidth == 256 and p.compression == tifffile.COMPRESSION.JPEG for p in pages)
        assert [int(p.subfiletype) for p in pages] == [0] + [1] * (len(pages) - 1)
        assert pages[0].description.startswith("Aperio")
        x_res = pages[0].tags["XResolution"].value
        assert x_res[0] / x_res[1] == pytest.approx(1e4 / 0.25)  # pixels per cm at 0.25 µm/px


def test_openslide_reads_it_as_aperio_at_40x(aperio_slide: SynthSlide) -> None:
    slide = openslide.OpenSlide(aperio_slide.path)
    try:
        assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25)
        assert slide.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "40"
        assert slide.level_dimensions == aperio_slide.level_dimensions
        assert slide.level_downsamples == (1.0, 4.0, 16.0)
        # The tumor region holds tissue, the glass around it does not.
        tumor = aperio_slide.tumor
        inside = np.asarray(slide.read_region((tumor.x + 256, tumor.y + 256), 0, (256, 256)).convert("RGB"))
        glass = np.asarray(slide.read_region((tumor.x + tumor.w + 64, tumor.y + 256), 0, (64, 64)).convert("RGB"))
        assert inside.std() > 20 and inside.mean() < 200
        assert glass.mean() > 230 and glass.std() < 5
    finally:
        slide.close()


def test_every_level_renders_the_same_scene(aperio_slide: SynthSlide) -> None:
    slide = openslide.OpenSlide(aperio_slide.path)
    try:
        tumor = aperio_slide.tumor
        full = slide.read_region((tumor.x, tumor.y), 0, (1024, 1024)).convert("RGB").reduce(4)
        level1 = slide.read_region((tumor.x, tumor.y), 1, (256, 256)).convert("RGB")
        diff = np.abs(np.asarray(full, np.int16) - np.asarray(level1, np.int16))
        assert diff.mean() < 8  # JPEG noise only
    finally:
        slide.close()


def test_generic_tiff_and_missing_resolution(tmp_path: Path, sample_paths: list[Path]) -> None:
    generic = synth.write_slide(tmp_path / "g.tif", sample_paths, width=2048, height=1536, mpp=0.5, aperio=False)
    bare = synth.write_slide(tmp_path / "b.tif", sample_paths, width=2048, height=1536, mpp=None, aperio=False)
    assert openslide.OpenSlide.detect_format(generic.path) == "generic-tiff"
    with openslide.OpenSlide(generic.path) as g, openslide.OpenSlide(bare.path) as b:
        assert float(g.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        assert openslide.PROPERTY_NAME_MPP_X not in b.properties


def test_layout_and_regions() -> None:
    regions = synth.default_layout(10_000, 8_000)
    assert [r.label for r in regions] == ["normal", TUMOR]
    normal, tumor = regions
    assert normal.x + normal.w < tumor.x  # glass between them
    assert tumor.contains(tumor.x, tumor.y) and not tumor.contains(tumor.x + tumor.w, tumor.y)
    with pytest.raises(LookupError):
        _ = SynthSlide(Path("x"), 1, 1, 0.25, (normal,), ((1, 1),)).tumor


def test_samples_must_include_the_labels(tmp_path: Path, sample_paths: list[Path]) -> None:
    only_normal = [p for p in sample_paths if p.name.startswith("normal_")]
    with pytest.raises(ValueError, match="tumor"):
        synth.write_slide(tmp_path / "x.svs", only_normal, width=1024, height=1024)


def test_bad_slides_are_bad_as_described(tmp_path: Path, aperio_slide: SynthSlide) -> None:
    size = aperio_slide.path.stat().st_size
    truncated = synth.truncate(aperio_slide.path, tmp_path / "t.svs", keep=0.5)
    assert truncated.stat().st_size == size // 2
    broken = synth.corrupt(aperio_slide.path, tmp_path / "c.svs")
    assert broken.read_bytes()[:8] == aperio_slide.path.read_bytes()[:8] != broken.read_bytes()[8:16]
    strip = synth.write_strip_tiff(tmp_path / "s.tif", width=60_000, height=40_000)
    assert strip.stat().st_size < 16 * 1024 * 1024  # 7.2 GB of pixels declared, a few MB on disk
    with tifffile.TiffFile(strip) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert not page.is_tiled and (page.imagewidth, page.imagelength) == (60_000, 40_000)
    dicom = synth.write_dicom_standin(tmp_path / "x.dcm").read_bytes()
    assert dicom[128:132] == b"DICM" and b"1.2.840.10008.5.1.4.1.1.77.1.6" in dicom
    assert synth.write_mrxs_standin(tmp_path / "x.mrxs").read_bytes()[:3] == b"\xff\xd8\xff"
