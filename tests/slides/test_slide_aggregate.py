"""Slide verdicts from tile scores (pure): the top-k mean, the answer rule shared with images,
positives, ranking and every edge case."""

from __future__ import annotations

import math

import pytest

from slide_service.aggregate import METHOD, TileScore, aggregate


def tiles(*p: float) -> list[TileScore]:
    return [TileScore(i, 896 * i, 0, 896, 896, value) for i, value in enumerate(p)]


def test_top_k_mean_and_answer() -> None:
    result = aggregate(tiles(0.1, 0.9, 0.2, 0.8, 0.7), top_k=3, threshold=0.5, band=0.1)
    assert result.p_yes == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert (result.answer, result.method, result.top_k) == ("yes", METHOD, 3)
    assert (result.tiles_scored, result.tiles_positive) == (5, 3)
    assert [t.index for t in result.top_tiles] == [1, 3, 4]


def test_a_small_focus_is_not_diluted_by_a_large_slide() -> None:
    # 8 tumor tiles among 2,000: the mean would say no; the top-8 mean says yes.
    scores = tiles(*([0.05] * 1992 + [0.95] * 8))
    result = aggregate(scores, top_k=8, threshold=0.5, band=0.1)
    assert result.answer == "yes" and result.p_yes == pytest.approx(0.95)
    assert sum(t.p_yes for t in scores) / len(scores) < 0.1


def test_one_hot_tile_is_not_enough() -> None:
    result = aggregate(tiles(*([0.1] * 50 + [0.99])), top_k=8, threshold=0.5, band=0.1)
    assert result.answer == "no" and result.tiles_positive == 1


def test_k_larger_than_the_slide_uses_every_tile() -> None:
    result = aggregate(tiles(0.35, 0.6), top_k=8, threshold=0.5, band=0.1)
    assert result.top_k == 2 and result.p_yes == pytest.approx(0.475) and result.answer == "indeterminate"
    single = aggregate(tiles(0.2), top_k=8, threshold=0.5, band=0.1)
    assert (single.top_k, single.answer, single.tiles_scored) == (1, "no", 1)


def test_band_edges_match_the_image_rule() -> None:
    assert aggregate(tiles(0.6), 1, 0.5, 0.1).answer == "yes"  # 0.6 - 0.5 is 0.0999… in binary
    assert aggregate(tiles(0.6), 1, 0.5, 0.1).tiles_positive == 1
    assert aggregate(tiles(0.4), 1, 0.5, 0.1).answer == "no"
    assert aggregate(tiles(0.59), 1, 0.5, 0.1).answer == "indeterminate"
    assert aggregate(tiles(0.5), 1, 0.5, 0.0).answer == "yes"


def test_ties_rank_by_index() -> None:
    result = aggregate(tiles(0.7, 0.9, 0.9, 0.9), top_k=2, threshold=0.5, band=0.1)
    assert [t.index for t in result.top_tiles] == [1, 2]


def test_order_of_input_does_not_matter() -> None:
    scores = tiles(0.1, 0.9, 0.2, 0.8, 0.7)
    assert aggregate(scores, 3, 0.5, 0.1) == aggregate(list(reversed(scores)), 3, 0.5, 0.1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1, 1.01])
def test_impossible_scores_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        aggregate(tiles(0.5, bad), 8, 0.5, 0.1)


def test_empty_duplicate_and_k() -> None:
    with pytest.raises(ValueError, match="no scored tiles"):
        aggregate([], 8, 0.5, 0.1)
    with pytest.raises(ValueError, match="twice"):
        aggregate([*tiles(0.5), *tiles(0.6)], 8, 0.5, 0.1)
    with pytest.raises(ValueError, match="top_k"):
        aggregate(tiles(0.5), 0, 0.5, 0.1)
