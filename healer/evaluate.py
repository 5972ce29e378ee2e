"""How good is the screen on a labelled set: pure metric functions, no I/O and no sklearn.

Truth is a boolean (True = cancer); the score is the verdict's `p_yes`. A case is called
positive when `p_yes >= threshold`. AUROC is computed by ranks (Mann-Whitney U, ties counted
half), which equals the area under the ROC curve by the trapezoid rule; both are here so the
tests can check one against the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any


@dataclass(frozen=True)
class Confusion:
    """The confusion matrix at one threshold, with the rates derived from it."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def sensitivity(self) -> float | None:
        """True positive rate (recall): of the cancers, how many were called."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float | None:
        """True negative rate: of the non-cancers, how many were cleared."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def ppv(self) -> float | None:
        """Positive predictive value (precision)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float | None:
        """Negative predictive value."""
        return _ratio(self.tn, self.tn + self.fn)

    def to_dict(self) -> dict[str, Any]:
        """Counts and rates, as written to metrics.json."""
        return asdict(self) | {
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "accuracy": self.accuracy,
            "ppv": self.ppv,
            "npv": self.npv,
        }


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _check(truth: Sequence[bool], scores: Sequence[float]) -> None:
    if len(truth) != len(scores):
        raise ValueError(f"{len(truth)} labels but {len(scores)} scores")


def confusion(truth: Sequence[bool], scores: Sequence[float], threshold: float) -> Confusion:
    """The confusion matrix when `score >= threshold` is called positive."""
    _check(truth, scores)
    tp = fp = tn = fn = 0
    for positive, score in zip(truth, scores, strict=True):
        called = score >= threshold
        if positive and called:
            tp += 1
        elif positive:
            fn += 1
        elif called:
            fp += 1
        else:
            tn += 1
    return Confusion(threshold, tp, fp, tn, fn)


def auroc(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve by ranks; None when one class is absent."""
    _check(truth, scores)
    n_pos = sum(1 for t in truth if t)
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks (1-based), ties sharing the mean of the ranks they span.
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        i = j + 1
    rank_sum = sum(r for r, t in zip(ranks, truth, strict=True) if t)
    u = rank_sum - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def roc_curve(truth: Sequence[bool], scores: Sequence[float]) -> list[tuple[float, float, float]]:
    """ROC points `(fpr, tpr, threshold)` from (0, 0) to (1, 1), one per distinct score.

    The first point's threshold is +inf (nothing called positive).
    """
    _check(truth, scores)
    n_pos = sum(1 for t in truth if t)
    n_neg = len(truth) - n_pos
    points = [(0.0, 0.0, float("inf"))]
    for threshold in sorted(set(scores), reverse=True):
        c = confusion(truth, scores, threshold)
        points.append((c.fp / n_neg if n_neg else 0.0, c.tp / n_pos if n_pos else 0.0, threshold))
    return points


def auroc_trapezoid(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under `roc_curve` by the trapezoid rule (equals `auroc`)."""
    if not truth or all(truth) or not any(truth):
        return None
    points = roc_curve(truth, scores)
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0, _), (x1, y1, _) in pairwise(points))


def threshold_sweep(
    truth: Sequence[bool], scores: Sequence[float], thresholds: Sequence[float] | None = None
) -> list[Confusion]:
    """The confusion matrix at each threshold (default: every distinct score, plus 0.5)."""
    if thresholds is None:
        thresholds = sorted(set(scores) | {0.5})
    return [confusion(truth, scores, t) for t in thresholds]


def choose_threshold(truth: Sequence[bool], scores: Sequence[float], min_sensitivity: float | None = None) -> Confusion:
    """The operating point among the distinct scores.

    Without `min_sensitivity`: the threshold maximising Youden's J (sensitivity + specificity - 1).
    With it: the most specific threshold whose sensitivity reaches it (a screen must not miss
    cancers), or the most sensitive one when none does. Ties go to the higher threshold.
    """
    candidates = threshold_sweep(truth, scores)
    if not candidates:
        raise ValueError("no scored cases")

    def sens(c: Confusion) -> float:
        return c.sensitivity or 0.0

    def spec(c: Confusion) -> float:
        return c.specificity or 0.0

    if min_sensitivity is not None:
        meeting = [c for c in candidates if sens(c) >= min_sensitivity]
        if meeting:
            return max(meeting, key=lambda c: (spec(c), c.threshold))
        return max(candidates, key=lambda c: (sens(c), spec(c), c.threshold))
    return max(candidates, key=lambda c: (sens(c) + spec(c) - 1.0, c.threshold))


def summary_thresholds(scores: Sequence[float], chosen: float, rows: int = 13) -> list[float]:
    """A readable sweep: every distinct score when there are few, else `rows` spread over their
    quantiles; always with 0.5 (the model's own yes/no cut) and the chosen threshold.
    """
    distinct = sorted(set(scores))
    if len(distinct) > rows:
        distinct = [distinct[round(i * (len(distinct) - 1) / (rows - 1))] for i in range(rows)]
    return sorted(set(distinct) | {0.5, chosen})


def evaluate(
    truth: Sequence[bool],
    scores: Sequence[float],
    *,
    threshold: float | None = None,
    min_sensitivity: float | None = None,
) -> dict[str, Any]:
    """Everything `healer eval` reports, as a JSON-ready dict.

    `threshold` fixes the operating point; otherwise `choose_threshold` picks it.
    """
    _check(truth, scores)
    chosen = (
        confusion(truth, scores, threshold)
        if threshold is not None
        else choose_threshold(truth, scores, min_sensitivity)
    )
    rule = (
        "fixed"
        if threshold is not None
        else (f"max specificity with sensitivity >= {min_sensitivity}" if min_sensitivity is not None else "youden")
    )
    return {
        "n": len(truth),
        "positives": sum(1 for t in truth if t),
        "negatives": sum(1 for t in truth if not t),
        "auroc": auroc(truth, scores),
        "operating_point": {"rule": rule, **chosen.to_dict()},
        "at_0_5": confusion(truth, scores, 0.5).to_dict(),
        "sweep": [c.to_dict() for c in threshold_sweep(truth, scores, summary_thresholds(scores, chosen.threshold))],
        "sweep_all": [c.to_dict() for c in threshold_sweep(truth, scores)],
        "roc": [
            {"fpr": f, "tpr": t, "threshold": None if th == float("inf") else th}
            for f, t, th in roc_curve(truth, scores)
        ],
    }
