"""The engine's speed levers: what each one is, which of them apply on this device, and what each
is doing now.

Every lever is off by default (the measured eager path, docs/BENCHMARKS.md). A lever that cannot
apply here (a CUDA-only one on the CPU, a compile without a batch shape to compile) is off from the
start; one that fails at run time falls back to the eager path for good. Either way the reason is
logged once (`fast_path_fallback`) and shown by `LeverLog.status()`: a lever never fails a batch.

    vision_sdpa_backend   SigLIP's self-attention kernel: auto | cudnn | flash | efficient | math
    vision_patch_embed    the patch embedding: conv | channels-last | linear (a reshape + one matmul)
    vision_compile        torch.compile of the vision tower at the batcher's fixed batch sizes:
                          off | default | max-autotune-no-cudagraphs | reduce-overhead (CUDA graphs)
    pinned_staging        each prepared image copied to the GPU from a pinned buffer, on a side
                          stream, by the thread that prepared it (while the previous batch runs)
    explain_stop          tokens (EOS or the token budget) | sentence (each row at its first sentence)
    explain_cache         dynamic | static (the KV cache of explanations)
    explain_compile       off | default | reduce-overhead: the decode step compiled (static cache
                          only); tried first in a child process, since static cache + reduce-overhead
                          crashed the reference stack with a segfault (`canary.py`)

No pydantic here: the GPU benchmark imports this module on bare GPU images.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

SDPA_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")
PATCH_EMBEDS = ("conv", "channels-last", "linear")
VISION_COMPILE_MODES = ("off", "default", "max-autotune-no-cudagraphs", "reduce-overhead")
EXPLAIN_STOPS = ("tokens", "sentence")
EXPLAIN_CACHES = ("dynamic", "static")
EXPLAIN_COMPILE_MODES = ("off", "default", "reduce-overhead")

# SDPA backends with no CPU kernel in PyTorch (flash and math have one).
CUDA_ONLY_SDPA = ("cudnn", "efficient")

# How far a fast path's p_yes may be from the eager path's on the same inputs (the bound).
P_YES_TOLERANCE = 1e-2


@dataclass(frozen=True)
class VisionOptions:
    """The vision tower's levers (see the module docstring)."""

    sdpa_backend: str = "auto"
    patch_embed: str = "conv"
    compile: str = "off"
    # The batch sizes the batcher runs and warm-up compiles; any other size runs eager.
    compile_batch_sizes: tuple[int, ...] = ()
    # torch.compile's backend: inductor in the service; the tests also use lighter ones.
    compile_backend: str | Callable[..., Any] = "inductor"

    def __post_init__(self) -> None:
        _check("vision_sdpa_backend", self.sdpa_backend, SDPA_BACKENDS)
        _check("vision_patch_embed", self.patch_embed, PATCH_EMBEDS)
        _check("vision_compile", self.compile, VISION_COMPILE_MODES)

    @property
    def any(self) -> bool:
        """Whether any vision lever is asked for."""
        return (self.sdpa_backend, self.patch_embed, self.compile) != ("auto", "conv", "off")


@dataclass(frozen=True)
class DecodeOptions:
    """The explanation's levers (see the module docstring)."""

    stop: str = "tokens"
    cache: str = "dynamic"
    compile: str = "off"

    def __post_init__(self) -> None:
        _check("explain_stop", self.stop, EXPLAIN_STOPS)
        _check("explain_cache", self.cache, EXPLAIN_CACHES)
        _check("explain_compile", self.compile, EXPLAIN_COMPILE_MODES)

    @property
    def any(self) -> bool:
        """Whether any decode lever is asked for."""
        return (self.stop, self.cache, self.compile) != ("tokens", "dynamic", "off")


@dataclass(frozen=True)
class FastPaths:
    """All levers; `FastPaths()` is today's eager path."""

    vision: VisionOptions = field(default_factory=VisionOptions)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    pinned_staging: bool = False

    @property
    def any(self) -> bool:
        """Whether any lever is asked for."""
        return self.vision.any or self.decode.any or self.pinned_staging


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")


def describe(exc: BaseException) -> str:
    """One line for the log: the exception's type and the start of its message (and of its cause's:
    torch.compile wraps what its backend raised), bounded."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] not in line:
        line += f" (from {describe(cause)})"
    return line[:300]


class LeverLog:
    """What each lever asked for is doing: "on ...", or "off: <why>" after a fallback.

    Thread-safe (prepare threads report staging failures). Each lever's fallback is logged once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, str] = {}

    def on(self, lever: str, detail: str) -> None:
        """Record that `lever` is active (`detail`: its setting and what it covers)."""
        with self._lock:
            self._status[lever] = f"on: {detail}"

    def fell_back(self, lever: str, reason: str) -> bool:
        """Record that `lever` is off for good, and log why (once). Returns False if it already was."""
        with self._lock:
            if self._status.get(lever, "").startswith("off"):
                return False
            self._status[lever] = f"off: {reason}"
        log.warning(
            "fast path off, eager path used instead",
            extra={"event": "fast_path_fallback", "lever": lever, "reason": reason},
        )
        return True

    def active(self, lever: str) -> bool:
        """Whether `lever` was switched on and has not fallen back."""
        with self._lock:
            return self._status.get(lever, "").startswith("on")

    def status(self) -> dict[str, str]:
        """A copy: lever name → its state, for the log line at load and the benchmark."""
        with self._lock:
            return dict(self._status)


def record_decode(decode: DecodeOptions, levers: LeverLog) -> None:
    """Mark each decode lever that `decode` switches on as on."""
    for lever, value, default in (
        ("explain_stop", decode.stop, "tokens"),
        ("explain_cache", decode.cache, "dynamic"),
        ("explain_compile", decode.compile, "off"),
    ):
        if value != default:
            levers.on(lever, value)


def select(fast: FastPaths, device: str, attn_implementation: str, levers: LeverLog) -> FastPaths:
    """The levers that can apply on `device` (cuda | cpu); each one that cannot is logged as off.

    Checks only what is known before running anything: CUDA-only levers, an attention that is not
    SDPA, a compile with no batch size to compile, a decode compile without the static cache.
    Whether the rest work on this stack shows at their first call (they fall back then).
    """
    vision, decode, staging = fast.vision, fast.decode, fast.pinned_staging
    cuda = device == "cuda"
    if vision.sdpa_backend != "auto":
        if attn_implementation != "sdpa":
            levers.fell_back("vision_sdpa_backend", f"the attention implementation is {attn_implementation}, not sdpa")
            vision = replace(vision, sdpa_backend="auto")
        elif vision.sdpa_backend in CUDA_ONLY_SDPA and not cuda:
            levers.fell_back("vision_sdpa_backend", f"{vision.sdpa_backend} attention needs CUDA")
            vision = replace(vision, sdpa_backend="auto")
    if vision.compile != "off":
        if vision.compile == "reduce-overhead" and not cuda:
            levers.fell_back("vision_compile", "reduce-overhead (CUDA graphs) needs CUDA")
            vision = replace(vision, compile="off")
        elif not vision.compile_batch_sizes:
            levers.fell_back("vision_compile", "no batch sizes to compile")
            vision = replace(vision, compile="off")
    if staging and not cuda:
        levers.fell_back("pinned_staging", "pinned staging needs CUDA")
        staging = False
    if decode.compile != "off":
        if not cuda:
            levers.fell_back("explain_compile", "the decode step is compiled on CUDA only")
            decode = replace(decode, compile="off")
        elif decode.cache != "static":
            levers.fell_back("explain_compile", "a compiled decode step needs EXPLAIN_CACHE=static")
            decode = replace(decode, compile="off")
    return FastPaths(vision=vision, decode=decode, pinned_staging=staging)
