"""Whole-slide fixtures: slides generated once per test session from the sample tiles.

Small on purpose (8192 x 6144 px at 0.25 µm/px writes in ~3 s); tests that need many tiles use
a small TILE_PX, since the geometry does not depend on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slide_service import synth
from slide_service.synth import SynthSlide


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slides")


@pytest.fixture(scope="session")
def aperio_slide(slide_dir: Path, sample_paths: list[Path]) -> SynthSlide:
    """An Aperio-style 8192 x 6144 slide at 0.25 µm/px (40X): normal tissue left, tumor right,
    a blue pen stroke across the top."""
    return synth.write_slide(slide_dir / "aperio.svs", sample_paths, width=8192, height=6144, mpp=0.25, pen=True)


@pytest.fixture(scope="session")
def blank_slide(slide_dir: Path, sample_paths: list[Path]) -> SynthSlide:
    """A well-formed slide of bare glass."""
    return synth.write_blank_slide(slide_dir / "blank.svs", sample_paths, width=2048, height=1536)
