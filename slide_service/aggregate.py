"""From tile scores to a slide verdict. Pure: no I/O, no OpenSlide.

The slide score is the mean p_yes of the top-k tiles (k = SLIDE_TOP_K, default 8, fewer when
fewer tiles were scored), and the answer is the single-image rule applied to it (THRESHOLD,
INDETERMINATE_BAND). Why top-k rather than the mean or the max (docs/SLIDES.md):

- the mean of all tiles dilutes a small tumor in a large resection to "no": a 2 mm focus is a
  handful of tiles among thousands, and a slide is positive when any part of it is;
- the max alone answers "yes" on a single false-positive tile (a fold, a pen mark, an artifact);
- the mean of the k highest asks for a small *region* of agreeing tiles: with k = 8 at 1 µm/px
  that is about 6 mm² of tissue, the scale of a focus a pathologist would report. It is the
  standard top-k pooling of multiple-instance learning, with no parameters to learn.

`tiles_positive` counts tiles that answer yes on their own (p_yes ≥ THRESHOLD + band).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from healer_core.answer import Answer, answer_from_p_yes

METHOD = "top_k_mean"


@dataclass(frozen=True)
class TileScore:
    """One scored tile: its index in the plan, its level-0 square and p_yes."""

    index: int
    x: int
    y: int
    w: int
    h: int
    p_yes: float


@dataclass(frozen=True)
class SlideAggregate:
    """The slide verdict's numbers."""

    answer: Answer
    p_yes: float
    method: str
    top_k: int  # the k actually used (≤ SLIDE_TOP_K, ≤ tiles_scored)
    tiles_scored: int
    tiles_positive: int
    top_tiles: tuple[TileScore, ...]  # highest p_yes first (ties: lower index first)


def aggregate(scores: Sequence[TileScore], top_k: int, threshold: float, band: float) -> SlideAggregate:
    """The slide verdict from every scored tile. Raises ValueError on no tiles, a p_yes outside
    [0, 1] (or not finite) and a repeated tile index: each means a bug upstream, not a verdict."""
    if not scores:
        raise ValueError("no scored tiles to aggregate")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    seen: set[int] = set()
    for score in scores:
        if not (math.isfinite(score.p_yes) and 0.0 <= score.p_yes <= 1.0):
            raise ValueError(f"tile {score.index} has p_yes {score.p_yes!r}, outside [0, 1]")
        if score.index in seen:
            raise ValueError(f"tile {score.index} is scored twice")
        seen.add(score.index)
    ranked = sorted(scores, key=lambda s: (-s.p_yes, s.index))
    k = min(top_k, len(ranked))
    top = tuple(ranked[:k])
    p_slide = math.fsum(s.p_yes for s in top) / k
    positive_at = threshold + band
    return SlideAggregate(
        answer=answer_from_p_yes(p_slide, threshold, band),
        p_yes=p_slide,
        method=METHOD,
        top_k=k,
        tiles_scored=len(ranked),
        tiles_positive=sum(1 for s in ranked if s.p_yes >= positive_at - 1e-9),
        top_tiles=top,
    )
