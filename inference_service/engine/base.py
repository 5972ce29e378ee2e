"""The engine port: what the service needs from a model, and nothing more."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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
    """A loaded model that turns images into verdicts, one batch at a time.

    Work is split so the CPU part of one request overlaps the model's work on the previous batch:
    `prepare` (decode-side preprocessing of one image; thread-safe, any number at once) and
    `predict` (one batch through the model; serialised by the engine).
    """

    @property
    def info(self) -> ModelInfo: ...

    def prepare(self, image: Image) -> Any:
        """CPU preprocessing of one image into what `predict` takes. Blocking; any thread."""
        ...

    def predict(self, images: Sequence[Any], explain: bool) -> list[EngineResult]:
        """One result per item (PIL images or `prepare` results), in order. Blocking; worker thread."""
        ...

    def probe(self) -> None:
        """A tiny operation on the model's device, waited for: returns when the device computes,
        raises (e.g. `DeviceProbeError`) when it fails. Blocking; any thread, also while `predict`
        runs. A wedged device never returns, so callers run it under a timeout (readiness)."""
        ...


class DeviceProbeError(RuntimeError):
    """The device answered the health probe with a wrong result."""


PREPARE_WORKERS_DEFAULT = 2


def default_prepare_workers() -> int:
    """Threads for `Engine.prepare`: two (or one on a single core).

    Measured on an H200 host with 16 cores (docs/BENCHMARKS.md): 1–3 threads keep a batch-32 GPU
    at 39–40 images/s, 8–16 threads only 35 (the image processor's torch ops and the engine's
    kernel launches then fight over cores and the GIL). Two threads preprocess ≥ 20 images/s even
    with the slower PIL backend, about three times what one L4 infers.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(PREPARE_WORKERS_DEFAULT, cores))
