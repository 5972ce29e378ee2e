"""The slide report's tile selection (a pure function), its settings and the FakeEngine's report."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from PIL import Image

from healer_core.report_selection import ReportSelection, select_report_patches
from inference_service.engine.prompt import REPORT_PROMPT_VERSION
from inference_service.engine.slide_report import SlideReport, SlideReporter
from inference_service.settings import Settings
from tests.fakes import FakeEngine, FakeEngineError


def _scores(n: int) -> dict[int, float | None]:
    # Distinct p_yes, highest at the highest index, so the expected top tiles are obvious.
    return {i: i / n for i in range(n)}


def test_zero_patches_turns_the_report_off() -> None:
    assert select_report_patches(_scores(50), 0, "job") == ReportSelection((), ())
    assert len(select_report_patches(_scores(50), 0, "job")) == 0
    assert Settings.model_validate({"SLIDE_REPORT_PATCHES": "0"}).slide_report_patches == 0


def test_default_budget_and_bounds_of_the_settings() -> None:
    settings = Settings()
    assert settings.slide_report_patches == 125  # Google's whole-slide notebook's maximum
    assert settings.slide_report_max_new_tokens == 256
    for bad in ("-1", "257"):
        with pytest.raises(ValueError):
            Settings.model_validate({"SLIDE_REPORT_PATCHES": bad})


def test_negative_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="limit"):
        select_report_patches(_scores(3), -1, "job")


@pytest.mark.parametrize("n", [1, 7, 10])
def test_a_slide_with_no_more_tiles_than_the_budget_sends_them_all(n: int) -> None:
    scores = {i * 3: 0.5 for i in range(n)}  # tile indices need not be contiguous
    selection = select_report_patches(scores, 10, "job")
    assert selection.indices == sorted(scores)
    assert selection.top == ()


def test_empty_slide_selects_nothing() -> None:
    assert select_report_patches({}, 10, "job").indices == []


def test_half_top_tiles_half_a_sample_of_the_rest() -> None:
    scores = _scores(100)
    selection = select_report_patches(scores, 10, "job-1")
    assert selection.top == (95, 96, 97, 98, 99)
    assert len(selection.sampled) == 5
    assert not set(selection.sampled) & set(selection.top)
    assert all(0 <= i < 95 for i in selection.sampled)
    assert selection.indices == sorted(selection.indices) and len(selection.indices) == 10


@pytest.mark.parametrize(("limit", "top", "sampled"), [(1, 1, 0), (2, 1, 1), (5, 3, 2), (125, 63, 62)])
def test_an_odd_budget_gives_the_extra_tile_to_the_top(limit: int, top: int, sampled: int) -> None:
    selection = select_report_patches(_scores(1000), limit, "job")
    assert (len(selection.top), len(selection.sampled)) == (top, sampled)


def test_ties_at_the_cut_go_to_the_lower_tile_index() -> None:
    scores: dict[int, float | None] = {i: (0.9 if i < 10 else 0.1) for i in range(40)}
    assert select_report_patches(scores, 8, "job").top == (0, 1, 2, 3)


def test_unscored_and_nan_tiles_are_never_top_but_may_be_sampled() -> None:
    scores: dict[int, float | None] = {0: 0.2, 1: None, 2: math.nan, 3: 0.9} | {i: None for i in range(4, 30)}
    selection = select_report_patches(scores, 6, "job")
    assert selection.top == (0, 3)  # only two tiles have a finite p_yes: the rest of the budget is sampled
    assert len(selection.sampled) == 4
    everything_unscored = select_report_patches({i: None for i in range(30)}, 6, "job")
    assert everything_unscored.top == () and len(everything_unscored.sampled) == 6


def test_the_sample_is_a_function_of_the_seed_only() -> None:
    scores = _scores(500)
    first = select_report_patches(scores, 20, "job-a")
    assert select_report_patches(dict(reversed(scores.items())), 20, "job-a") == first  # not of dict order
    others = {select_report_patches(scores, 20, f"job-{k}").sampled for k in range(5)}
    assert len(others) > 1  # other jobs sample other context tiles


def test_the_sample_is_the_same_in_another_process() -> None:
    # `random.Random(str)` hashes with SHA-512, not with Python's per-process salted hash().
    code = (
        "from healer_core.report_selection import select_report_patches;"
        "print(select_report_patches({i: i / 300 for i in range(300)}, 12, 'job-x').sampled)"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2")
    }
    assert runs == {f"{select_report_patches({i: i / 300 for i in range(300)}, 12, 'job-x').sampled}\n"}


def test_fake_engine_writes_a_report_with_its_provenance() -> None:
    engine = FakeEngine()
    assert isinstance(engine, SlideReporter)
    patches = [Image.new("RGB", (32, 32), (i, 0, 0)) for i in range(3)]
    report = engine.report_slide(patches)
    assert report == SlideReport(
        text="Fake report of 3 patches.",
        patches=3,
        model_id="fake/engine",
        model_revision="fake-1",
        prompt_version=REPORT_PROMPT_VERSION,
        inference_ms=report.inference_ms,
        new_tokens=5,
    )
    assert engine.reports == [3]
    with pytest.raises(ValueError):
        engine.report_slide([])


def test_fake_engine_report_fails_like_its_batches() -> None:
    engine = FakeEngine(fail_on=lambda im: im.width == 13)
    with pytest.raises(FakeEngineError):
        engine.report_slide([Image.new("RGB", (32, 32)), Image.new("RGB", (13, 13))])
