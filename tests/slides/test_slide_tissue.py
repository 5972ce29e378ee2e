"""Tissue detection: the mask finds the tissue regions, ignores glass and marker ink, and holds
on slides that are all glass, all tissue, or have no pyramid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slide_service import synth
from slide_service.open import open_slide
from slide_service.synth import NORMAL, TUMOR, Region, SynthSlide
from slide_service.tissue import TissueMask, best_level, detect_tissue, otsu, tissue_mask


def test_mask_matches_the_tissue_regions(aperio_slide: SynthSlide) -> None:
    with open_slide(aperio_slide.path) as slide:
        mask = detect_tissue(slide, target_mpp=8.0)
    assert mask.downsample == pytest.approx(32.0)  # 8 µm/px on a 0.25 µm/px slide
    assert mask.mask.shape == (6144 // 32, 8192 // 32) and mask.thumbnail.size == (8192 // 32, 6144 // 32)
    expected = sum(r.w * r.h for r in aperio_slide.regions) / (8192 * 6144)
    assert mask.tissue_fraction == pytest.approx(expected, abs=0.02)
    for region in aperio_slide.regions:
        inner = (region.x + 256, region.y + 256, region.w - 512, region.h - 512)
        assert mask.fraction(*inner) > 0.99
    # Glass between and around the regions, and the blue pen stroke across the top, are not tissue.
    normal, tumor = aperio_slide.regions
    assert mask.fraction(normal.x + normal.w + 128, 1000, tumor.x - normal.x - normal.w - 256, 4000) == 0.0
    assert mask.fraction(0, 0, 8192, normal.y - 64) < 0.01


def test_fraction_counts_outside_the_slide_as_no_tissue() -> None:
    thumbnail = Image.new("RGB", (10, 10))
    mask = TissueMask(mask=np.ones((10, 10), bool), thumbnail=thumbnail, downsample=10.0, threshold=0.1)
    assert mask.fraction(0, 0, 100, 100) == 1.0
    assert mask.fraction(50, 50, 100, 100) == pytest.approx(0.25)  # three quarters hang off the slide
    assert mask.fraction(-50, 0, 100, 100) == pytest.approx(0.5)
    assert mask.fraction(0, 0, 0, 10) == 0.0


def test_blank_slide_has_no_tissue(blank_slide: SynthSlide) -> None:
    with open_slide(blank_slide.path) as slide:
        mask = detect_tissue(slide)
    assert mask.tissue_fraction == 0.0


def test_slide_without_a_pyramid_is_read_in_chunks(tmp_path: Path, sample_paths: list[Path]) -> None:
    flat = synth.write_slide(tmp_path / "flat.svs", sample_paths, width=6144, height=4096, pyramid=False)
    with open_slide(flat.path) as slide:
        assert len(slide.info.levels) == 1
        mask = detect_tissue(slide)  # 6144 px read at level 0 as 4096-px chunks, never whole
    tumor = flat.tumor
    assert mask.fraction(tumor.x + 256, tumor.y + 256, tumor.w - 512, tumor.h - 512) > 0.99
    assert mask.tissue_fraction == pytest.approx(sum(r.w * r.h for r in flat.regions) / (6144 * 4096), abs=0.02)


def test_a_slide_covered_in_tissue_stays_tissue(tmp_path: Path, sample_paths: list[Path]) -> None:
    # No glass at all: Otsu would split the tissue into two classes; the clamp keeps it whole.
    full = synth.write_slide(
        tmp_path / "full.svs", sample_paths, width=4096, height=4096, regions=(Region(NORMAL, 0, 0, 4096, 4096),)
    )
    with open_slide(full.path) as slide:
        assert detect_tissue(slide).tissue_fraction > 0.95


def test_pure_mask_on_colours() -> None:
    glass = np.full((40, 40, 3), (242, 240, 244), np.uint8)
    image = glass.copy()
    image[5:20, 5:20] = (180, 90, 160)  # H&E pink-purple
    image[25:35, 5:35] = (40, 70, 170)  # blue marker
    image[5:20, 25:35] = (30, 140, 60)  # green marker
    image[22:24, 22:24] = (180, 90, 160)  # a 2-pixel speck: removed by the opening
    mask, threshold = tissue_mask(image)
    assert 0.07 <= threshold <= 0.15
    assert mask[6:19, 6:19].all()
    assert not mask[25:35].any() and not mask[5:20, 25:35].any() and not mask[22:24, 22:24].any()
    assert not tissue_mask(glass)[0].any()


def test_otsu_splits_two_modes() -> None:
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.1, 0.02, 5000).clip(0, 1), rng.normal(0.6, 0.05, 5000).clip(0, 1)
    cut = otsu(np.concatenate([low, high]))
    assert (low < cut).mean() > 0.99 and (high >= cut).mean() > 0.99


def test_best_level_tolerates_rounded_downsamples() -> None:
    downsamples = [1.0, 4.0003, 16.001, 64.01]
    assert best_level(downsamples, 4.0) == 1  # 4.0003 is "4"
    assert best_level(downsamples, 3.9) == 0
    assert best_level(downsamples, 32.0) == 2
    assert best_level(downsamples, 1000.0) == 3
    assert best_level(downsamples, 0.5) == 0


def test_regions_are_labelled(aperio_slide: SynthSlide) -> None:
    assert {r.label for r in aperio_slide.regions} == {NORMAL, TUMOR}
