"""The engine port: what the service needs from a model, and nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL.Image import Image

from healer_core.answer import Answer


@dataclass(frozen=True)
class ModelInfo:
    """Provenance stored with every verdict."""

    model_id: str
    model_revision: str
    quantization: str
    prompt_version: str
    device: str = "cpu"
    dtype: str = "float32"


@dataclass(frozen=True)
class EngineResult:
    """One image's verdict as the model gives it (no timings beyond inference)."""

    answer: Answer
    p_yes: float | None
    explanation: str
    inference_ms: float = 0.0


@runtime_checkable
class Engine(Protocol):
    """A loaded model that turns RGB images into verdicts, one padded batch at a time."""

    @property
    def info(self) -> ModelInfo: ...

    def predict(self, images: Sequence[Image], explain: bool) -> list[EngineResult]:
        """Return one result per image, in order. Blocking; called from a worker thread."""
        ...
