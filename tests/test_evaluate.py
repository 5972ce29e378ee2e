"""Metric functions of `healer eval`, on hand-computed cases."""

from __future__ import annotations

import random

import pytest

from healer.evaluate import (
    auroc,
    auroc_trapezoid,
    choose_threshold,
    confusion,
    evaluate,
    roc_curve,
    summary_thresholds,
    threshold_sweep,
)

# 3 cancers, 4 not. At p_yes >= 0.5: called yes 0.9, 0.8 (tp) and 0.7 (fp); 0.4 missed.
TRUTH = [True, True, True, False, False, False, False]
SCORES = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1]


def test_confusion_at_half() -> None:
    c = confusion(TRUTH, SCORES, 0.5)
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 3, 1)
    assert c.sensitivity == pytest.approx(2 / 3)
    assert c.specificity == pytest.approx(3 / 4)
    assert c.accuracy == pytest.approx(5 / 7)
    assert c.ppv == pytest.approx(2 / 3)
    assert c.npv == pytest.approx(3 / 4)


def test_threshold_is_inclusive() -> None:
    assert confusion([True], [0.5], 0.5).tp == 1
    assert confusion([False], [0.5], 0.5).fp == 1


def test_auroc_hand_computed() -> None:
    # 12 positive/negative pairs; only (0.4 vs 0.7) is ranked wrongly: 11/12.
    assert auroc(TRUTH, SCORES) == pytest.approx(11 / 12)
    assert auroc_trapezoid(TRUTH, SCORES) == pytest.approx(11 / 12)


def test_auroc_ties_count_half_and_edges() -> None:
    assert auroc([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    assert auroc([True, False], [0.9, 0.1]) == 1.0
    assert auroc([True, False], [0.1, 0.9]) == 0.0
    assert auroc([True, True], [0.1, 0.9]) is None
    assert auroc_trapezoid([False, False], [0.1, 0.9]) is None


def test_rank_and_trapezoid_agree_with_pair_counting() -> None:
    rng = random.Random(7)
    checked = 0
    for _ in range(50):
        n = rng.randint(2, 30)
        truth = [rng.random() < 0.4 for _ in range(n)]
        if all(truth) or not any(truth):
            continue
        checked += 1
        scores = [round(rng.random(), 1) for _ in range(n)]  # coarse: many ties
        pos = [s for s, t in zip(scores, truth, strict=True) if t]
        neg = [s for s, t in zip(scores, truth, strict=True) if not t]
        pairs = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
        expected = pairs / (len(pos) * len(neg))
        assert auroc(truth, scores) == pytest.approx(expected)
        assert auroc_trapezoid(truth, scores) == pytest.approx(expected)
    assert checked >= 40  # the comparison ran on (nearly) every draw, not on none


def test_roc_curve_runs_from_origin_to_one() -> None:
    points = roc_curve(TRUTH, SCORES)
    assert points[0][:2] == (0.0, 0.0)
    assert points[-1][:2] == (1.0, 1.0)
    assert [p[2] for p in points[1:]] == sorted(SCORES, reverse=True)


def test_choose_threshold_youden_and_min_sensitivity() -> None:
    # Youden's J: 0.8 -> 2/3+1-1 = .667; 0.4 -> 1+.75-1 = .75 (best); 0.3 -> .5
    assert choose_threshold(TRUTH, SCORES).threshold == 0.4
    assert choose_threshold(TRUTH, SCORES, min_sensitivity=1.0).threshold == 0.4
    assert choose_threshold(TRUTH, SCORES, min_sensitivity=0.6).threshold == 0.8  # specificity 1.0


def test_sweep_and_evaluate_report() -> None:
    sweep = threshold_sweep(TRUTH, SCORES, [0.0, 1.0])
    assert (sweep[0].tp, sweep[0].fp) == (3, 4)  # everything called yes
    assert (sweep[1].tp, sweep[1].fp) == (0, 0)
    report = evaluate(TRUTH, SCORES, threshold=0.5)
    assert report["n"] == 7 and report["positives"] == 3 and report["negatives"] == 4
    assert report["operating_point"]["rule"] == "fixed"
    assert report["operating_point"]["tp"] == 2
    assert report["auroc"] == pytest.approx(11 / 12)
    assert 0.5 in [row["threshold"] for row in report["sweep"]]
    chosen = evaluate(TRUTH, SCORES)
    assert chosen["operating_point"]["threshold"] == 0.4
    assert chosen["operating_point"]["rule"] == "youden"
    assert chosen["roc"][0]["threshold"] is None  # +inf written as null in JSON


def test_summary_thresholds_keep_half_and_the_chosen_one() -> None:
    assert summary_thresholds([0.2, 0.7], chosen=0.7) == [0.2, 0.5, 0.7]
    many = [i / 100 for i in range(100)]
    picked = summary_thresholds(many, chosen=0.333, rows=5)
    assert picked == [0.0, 0.25, 0.333, 0.5, 0.74, 0.99]


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        confusion([True], [0.1, 0.2], 0.5)
