"""Opening slides: what SlideInfo reports, and a coded, specific SlideRejected for every way a
file can fail to be a slide (never an OpenSlide exception, never a crash)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from healer_core.schema import ERROR_DESCRIPTIONS, ErrorCode
from healer_media.errors import SlideRejected
from slide_service import synth
from slide_service.open import Level, SlideLimits, open_slide
from slide_service.synth import SynthSlide


def rejected(path: Path, limits: SlideLimits | None = None) -> SlideRejected:
    with pytest.raises(SlideRejected) as info:
        open_slide(path, limits).close()
    return info.value


def test_aperio_slide_info(aperio_slide: SynthSlide) -> None:
    with open_slide(aperio_slide.path) as slide:
        info = slide.info
    assert (info.vendor, info.format) == ("aperio", "Aperio SVS")
    assert (info.width, info.height) == (8192, 6144)
    assert (info.mpp, info.mpp_assumed, info.objective) == (0.25, False, 40.0)
    assert info.levels == (Level(8192, 6144, 1.0), Level(2048, 1536, 4.0), Level(512, 384, 16.0))
    doc = info.to_doc()
    assert doc["levels"][1] == {"width": 2048, "height": 1536, "downsample": 4.0}
    assert doc["mpp_assumed"] is False


def test_generic_tiff_without_resolution_assumes_40x(tmp_path: Path, sample_paths: list[Path]) -> None:
    bare = synth.write_slide(tmp_path / "bare.tif", sample_paths, width=2048, height=1536, mpp=None, aperio=False)
    with open_slide(bare.path, SlideLimits(assumed_mpp=0.25)) as slide:
        assert (slide.info.vendor, slide.info.format) == ("generic-tiff", "Generic tiled TIFF")
        assert (slide.info.mpp, slide.info.mpp_assumed, slide.info.objective) == (0.25, True, None)


def test_implausible_resolution_is_replaced_by_the_assumption(tmp_path: Path, sample_paths: list[Path]) -> None:
    # 200 µm/px is no scanner's: the metadata is wrong, so the assumption is used and flagged.
    odd = synth.write_slide(tmp_path / "odd.tif", sample_paths, width=1024, height=1024, mpp=200.0, aperio=False)
    with open_slide(odd.path, SlideLimits(assumed_mpp=0.5)) as slide:
        assert (slide.info.mpp, slide.info.mpp_assumed) == (0.5, True)


def test_read_rgb_paints_outside_the_slide_as_background(aperio_slide: SynthSlide) -> None:
    with open_slide(aperio_slide.path) as slide:
        region = slide.read_rgb((8192 - 32, 0), 0, (64, 16))
        assert region.mode == "RGB" and region.size == (64, 16)
        assert region.getpixel((63, 8)) == (255, 255, 255)  # beyond the right edge
        assert region.getpixel((0, 8)) != (255, 255, 255)  # the glass inside is near-white, not white
        with pytest.raises(ValueError):
            slide.read_rgb((0, 0), 0, (20_000, 20_000))


def _truncated(keep: float) -> Callable[[Path, Path], Path]:
    return lambda src, dst: synth.truncate(src, dst, keep)


@pytest.mark.parametrize(
    ("make", "code", "says"),
    [
        (_truncated(0.02), ErrorCode.UNREADABLE_SLIDE, "truncated"),
        (_truncated(0.5), ErrorCode.UNREADABLE_SLIDE, "truncated"),
        (_truncated(0.995), ErrorCode.UNREADABLE_SLIDE, "truncated"),
        (lambda src, dst: synth.corrupt(src, dst, "structure"), ErrorCode.UNREADABLE_SLIDE, "corrupt"),
    ],
    ids=["truncated-2%", "truncated-50%", "truncated-99.5%", "corrupt-structure"],
)
def test_damaged_slides_are_unreadable(
    tmp_path: Path, aperio_slide: SynthSlide, make: Callable[[Path, Path], Path], code: ErrorCode, says: str
) -> None:
    error = rejected(make(aperio_slide.path, tmp_path / "bad.svs"))
    assert error.code == code and says in error.message
    assert "bad.svs" not in error.message  # paths may carry patient identifiers: never in messages
    assert error.as_job_error().retryable is False


def test_damaged_tile_data_fails_on_read_not_with_a_crash(tmp_path: Path, aperio_slide: SynthSlide) -> None:
    bad = synth.corrupt(aperio_slide.path, tmp_path / "tiles.svs", "tiles")
    with open_slide(bad) as slide, pytest.raises(SlideRejected) as info:  # the directories are intact: it opens
        slide.read_rgb((0, 0), 2, (512, 384))
    assert info.value.code == ErrorCode.UNREADABLE_SLIDE and "corrupt" in info.value.message


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    assert rejected(empty).code == ErrorCode.UNREADABLE_SLIDE


def test_huge_stripped_tiff_is_unsupported(tmp_path: Path) -> None:
    error = rejected(synth.write_strip_tiff(tmp_path / "scan.tif", width=60_000, height=40_000))
    assert error.code == ErrorCode.UNSUPPORTED_SLIDE
    assert "non-tiled" in error.message and "60000x40000" in error.message


def test_multi_file_formats_say_why(tmp_path: Path) -> None:
    mirax = rejected(synth.write_mrxs_standin(tmp_path / "case.mrxs"))
    assert mirax.code == ErrorCode.UNSUPPORTED_SLIDE and "MIRAX" in mirax.message and "single-file" in mirax.message
    dicom = rejected(synth.write_dicom_standin(tmp_path / "level0.dcm"))
    assert dicom.code == ErrorCode.UNSUPPORTED_SLIDE and "DICOM" in dicom.message and "folder" in dicom.message


@pytest.mark.parametrize(
    ("data", "says"),
    [(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG image"), (b"%PDF-1.7\n...", "not a whole-slide format")],
)
def test_other_files_are_unsupported(tmp_path: Path, data: bytes, says: str) -> None:
    path = tmp_path / "upload.svs"
    path.write_bytes(data)
    error = rejected(path)
    assert error.code == ErrorCode.UNSUPPORTED_SLIDE and says in error.message


def test_budgets(aperio_slide: SynthSlide) -> None:
    by_bytes = rejected(aperio_slide.path, SlideLimits(max_bytes=1000))
    assert by_bytes.code == ErrorCode.TOO_LARGE and "MAX_SLIDE_BYTES" in by_bytes.message
    by_pixels = rejected(aperio_slide.path, SlideLimits(max_pixels=8192 * 6144 - 1))
    assert by_pixels.code == ErrorCode.TOO_LARGE and "MAX_SLIDE_PIXELS" in by_pixels.message


def test_slide_codes_are_described() -> None:
    for code in (ErrorCode.UNREADABLE_SLIDE, ErrorCode.UNSUPPORTED_SLIDE, ErrorCode.NO_TISSUE, ErrorCode.BAD_SHARD):
        assert ERROR_DESCRIPTIONS[code]
    assert "slide" in ERROR_DESCRIPTIONS[ErrorCode.TOO_LARGE]
