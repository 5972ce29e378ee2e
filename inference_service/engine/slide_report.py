"""The slide report's model side without torch: what comes out of the report prompt, and the port.

After a slide's tiles are scored, one prompt with up to SLIDE_REPORT_PATCHES of its tiles asks
MedGemma 1.5 for a short slide-level description (prompt: `prompt.REPORT_PROMPT_TEXT`). Which tiles
is decided where the tile scores are, by the slide service at finalize
(`healer_core.report_selection.select_report_patches`); the inference service's
`report_worker` reads those tiles and calls `SlideReporter.report_slide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


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
