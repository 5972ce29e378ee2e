"""Fakes written here, not mock objects: a deterministic, thread-safe Engine that records its calls."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL.Image import Image

from inference_service.engine.base import EngineResult, ModelInfo
from inference_service.engine.prompt import PROMPT_VERSION, REPORT_PROMPT_VERSION, answer_from_p_yes
from inference_service.engine.slide_report import SlideReport


class FakeEngineError(RuntimeError):
    """What FakeEngine raises for an image its `fail_on` predicate selects."""


def image_p_yes(image: Image) -> float:
    """A deterministic p_yes in [0, 1] derived from the image's size and pixels."""
    digest = hashlib.sha256(image.tobytes() + repr(image.size).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 0xFFFFFFFF


@dataclass(frozen=True)
class FakeCall:
    """One predict() call: how many images, with or without explanations, and on which thread."""

    batch_size: int
    explain: bool
    thread: str
    started: float


@dataclass
class FakeEngine:
    """An Engine for tests of the batcher and the service.

    - `p_yes`: function of the image (default: a hash of its pixels), so answers are reproducible;
    - `delay_s`: sleep per predict() call (simulates a GPU batch; blocks the worker thread);
    - `fail_on`: predicate on an image; a batch containing such an image raises FakeEngineError,
      as a real batch fails as a whole;
    - `explanation`: template for explanations ({width}, {height}); "" makes them empty;
    - `calls`: every predict() call, in order (guarded by a lock);
    - `prepared`: every prepare() call (its thread and start time);
    - `probe_error`: what probe() raises (a device that fails), None for a healthy one;
    - `wedge()` / `unwedge()`: probe() blocks from one to the other, as on a wedged GPU;
    - `probes`: how many times probe() was called.
    - `report`: template of `report_slide`'s text ({patches}); `reports`: the patch count of each call;
      `report_inputs`: the patches of each call; `report_failures`: how many of the first calls raise
      FakeEngineError (an engine fault in the report path only); `report_delay_s`: sleep per report.
    """

    p_yes: Callable[[Image], float] = image_p_yes
    delay_s: float = 0.0
    fail_on: Callable[[Image], bool] | None = None
    explanation: str = "Fake explanation for a {width}x{height} image."
    threshold: float = 0.5
    band: float = 0.1
    info: ModelInfo = field(
        default_factory=lambda: ModelInfo(
            model_id="fake/engine", model_revision="fake-1", quantization="none", prompt_version=PROMPT_VERSION
        )
    )
    report: str = "Fake report of {patches} patches."
    calls: list[FakeCall] = field(default_factory=list)
    prepared: list[FakeCall] = field(default_factory=list)
    probe_error: Exception | None = None
    probes: int = 0
    reports: list[int] = field(default_factory=list)
    report_inputs: list[list[Image]] = field(default_factory=list)
    report_failures: int = 0
    report_delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _unwedged: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self._unwedged.set()

    def prepare(self, image: Image) -> Image:
        """The image itself (a fake needs no preprocessing); recorded like a batch of one."""
        with self._lock:
            self.prepared.append(FakeCall(1, False, threading.current_thread().name, time.perf_counter()))
        return image

    def predict(self, images: Sequence[Image], explain: bool) -> list[EngineResult]:
        """One result per image; raises FakeEngineError if any image matches `fail_on`."""
        started = time.perf_counter()
        with self._lock:
            self.calls.append(FakeCall(len(images), explain, threading.current_thread().name, started))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and any(self.fail_on(im) for im in images):
            raise FakeEngineError("fake engine failure")
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        results = []
        for image in images:
            p = self.p_yes(image)
            results.append(
                EngineResult(
                    answer=answer_from_p_yes(p, self.threshold, self.band),
                    p_yes=p,
                    explanation=self.explanation.format(width=image.width, height=image.height) if explain else "",
                    inference_ms=elapsed_ms,
                )
            )
        return results

    def probe(self) -> None:
        """The device health check: blocks while wedged, then raises `probe_error` if set."""
        with self._lock:
            self.probes += 1
        self._unwedged.wait()
        if self.probe_error is not None:
            raise self.probe_error

    def wedge(self) -> None:
        """From now on probe() hangs, as on a GPU that stopped answering."""
        self._unwedged.clear()

    def unwedge(self) -> None:
        """Release the probes that hang, and let new ones answer."""
        self._unwedged.set()

    def report_slide(self, patches: Sequence[Image], max_new_tokens: int | None = None) -> SlideReport:
        """A deterministic slide report (the `SlideReporter` port); fails as a batch would on `fail_on`."""
        if not patches:
            raise ValueError("a slide report needs at least one patch")
        started = time.perf_counter()
        with self._lock:
            self.reports.append(len(patches))
            self.report_inputs.append(list(patches))
            failing = len(self.reports) <= self.report_failures
        if self.delay_s or self.report_delay_s:
            time.sleep(self.delay_s + self.report_delay_s)
        if failing or (self.fail_on is not None and any(self.fail_on(im) for im in patches)):
            raise FakeEngineError("fake engine failure")
        text = self.report.format(patches=len(patches))
        return SlideReport(
            text=text,
            patches=len(patches),
            model_id=self.info.model_id,
            model_revision=self.info.model_revision,
            prompt_version=REPORT_PROMPT_VERSION,
            inference_ms=(time.perf_counter() - started) * 1000.0,
            new_tokens=len(text.split()),
        )

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the batches seen so far, in order."""
        with self._lock:
            return [c.batch_size for c in self.calls]
