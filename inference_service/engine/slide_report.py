"""The slide report's model side without torch: which tiles go into the prompt, and what comes out.

After a slide's tiles are scored, one prompt with up to SLIDE_REPORT_PATCHES of its tiles asks
MedGemma 1.5 for a short slide-level description (prompt: `prompt.REPORT_PROMPT_TEXT`).

Which tiles (`select_report_patches`), for a budget of N tiles:

1. every tile when the slide has N or fewer;
2. otherwise the ceil(N / 2) tiles with the highest p_yes (ties: the lower tile index first), so
   the regions behind the verdict are in the report even when they are a few tiles of thousands;
3. plus floor(N / 2) tiles drawn uniformly without replacement from all the other tissue tiles
   (tiles without a finite p_yes included), with a generator seeded by `seed` (the job id): the
   context of the slide as Google's whole-slide notebook samples it (random tissue patches), and
   the same tiles again when a report is retried;
4. in the prompt they appear in slide order (ascending tile index, i.e. the tile plan's reading
   order), so the prompt does not tell the model which tiles scored high.

SLIDE_REPORT_PATCHES=0 turns the report off: the selection is empty and no report is made.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


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


@dataclass(frozen=True)
class SlideReport:
    """What the model wrote about one slide, with the provenance stored next to it."""

    text: str
    patches: int
    model_id: str
    model_revision: str
    prompt_version: str
    inference_ms: float = 0.0
    new_tokens: int = 0


@runtime_checkable
class SlideReporter(Protocol):
    """An engine that can write a slide report (TransformersEngine; FakeEngine in the tests)."""

    def report_slide(self, patches: Sequence[Any], max_new_tokens: int | None = None) -> SlideReport:
        """One report from one multi-image prompt over `patches` (PIL images, in prompt order).

        Blocking; serialised with the engine's batches. Raises ValueError for no patches.
        """
        ...
