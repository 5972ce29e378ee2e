"""Which tiles of a slide go into its report's one prompt (MedGemma 1.5): a pure function.

The slide service applies it at finalize, where every tile's score is at hand, and records the
chosen tiles with the pending report; the inference service reads exactly those tiles and writes
the report. For a budget of N tiles (SLIDE_REPORT_PATCHES):

1. every tile when the slide has N or fewer;
2. otherwise the ceil(N / 2) tiles with the highest p_yes (ties: the lower tile index first), so
   the regions behind the verdict are in the report even when they are a few tiles of thousands;
3. plus floor(N / 2) tiles drawn uniformly without replacement from all the other tissue tiles
   (tiles without a finite p_yes included), with a generator seeded by `seed` (the job id): the
   context of the slide as Google's whole-slide notebook samples it (random tissue patches), and
   the same tiles again when a report is retried;
4. in the prompt they appear in slide order (ascending tile index, i.e. the tile plan's reading
   order), so the prompt does not tell the model which tiles scored high.

N = 0 turns the report off: the selection is empty and no report is made.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ReportSelection:
    """The tiles chosen for a report: the top tiles by p_yes and the sampled context tiles."""

    top: tuple[int, ...]
    sampled: tuple[int, ...]

    @property
    def indices(self) -> list[int]:
        """All chosen tile indices in prompt order (ascending index)."""
        return sorted((*self.top, *self.sampled))

    def __len__(self) -> int:
        return len(self.top) + len(self.sampled)


def select_report_patches(scores: Mapping[int, float | None], limit: int, seed: str) -> ReportSelection:
    """Choose up to `limit` tile indices of `scores` (tile index → p_yes, None if unscored).

    The rule is the module docstring's. Raises ValueError for a negative limit.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit == 0 or not scores:
        return ReportSelection((), ())
    if len(scores) <= limit:
        return ReportSelection((), tuple(sorted(scores)))
    finite = [(index, p) for index, p in scores.items() if p is not None and math.isfinite(p)]
    finite.sort(key=lambda item: (-item[1], item[0]))
    top = tuple(sorted(index for index, _ in finite[: math.ceil(limit / 2)]))
    chosen = set(top)
    rest = sorted(index for index in scores if index not in chosen)
    # A str seed is hashed with SHA-512 by `random`: the same draw on every run and machine.
    sampled = random.Random(f"slide-report:{seed}").sample(rest, min(limit - len(top), len(rest)))
    return ReportSelection(top, tuple(sorted(sampled)))
