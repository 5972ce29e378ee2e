"""Build the engine from Settings, warm it up, and prove it works before the service says ready.

Everything heavy is imported inside the functions: `import inference_service.app` (which imports
this module) must never import torch or transformers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from inference_service.engine.base import Engine, EngineResult
from inference_service.settings import Settings

if TYPE_CHECKING:
    from inference_service.engine.fast_paths import FastPaths
    from inference_service.engine.medgemma import TransformersEngine

log = logging.getLogger(__name__)


class SelfTestError(RuntimeError):
    """The loaded model gave an unusable verdict on the built-in image; the service must not go ready."""


def load_engine(settings: Settings) -> Engine:
    """Load the model in MODEL_DIR as configured (device, dtype, quantization, attention).

    Raises EngineConfigError (a ValueError) for a configuration that cannot work, e.g. fp16.
    """
    from inference_service.engine.medgemma import LoadOptions, TransformersEngine

    options = LoadOptions(
        model_dir=settings.model_dir,
        device=settings.device,
        dtype=settings.dtype,
        quantization=settings.quantization,
        attn_implementation=settings.attn_implementation,
        model_id=settings.model_id,
        model_revision=settings.model_revision,
    )
    fast = fast_paths_from(settings)
    start = time.perf_counter()
    engine = TransformersEngine.load(
        options,
        threshold=settings.threshold,
        band=settings.indeterminate_band,
        max_new_tokens=settings.max_new_tokens,
        # The slide report's vision tower runs in chunks of the tile path's batch size: a size the
        # service already runs at, so the tower's activations never exceed a tile batch's.
        vision_chunk=settings.max_batch_size,
        report_max_new_tokens=settings.slide_report_max_new_tokens,
        fast=fast,
    )
    if fast.any:
        check_fast_paths(engine, min(2, settings.max_batch_size), warmed=settings.warmup)
    info = engine.info
    log.info(
        "model loaded",
        extra={
            "event": "model_loaded",
            "load_ms": round((time.perf_counter() - start) * 1000.0, 1),
            "model_id": info.model_id,
            "model_revision": info.model_revision,
            "device": info.device,
            "dtype": info.dtype,
            "quantization": info.quantization,
            "prompt_version": info.prompt_version,
        },
    )
    return engine


def fast_paths_from(settings: Settings) -> FastPaths:
    """The speed levers the settings ask for; the vision tower compiled at sizes warm-up runs."""
    from inference_service.engine.fast_paths import DecodeOptions, FastPaths, VisionOptions

    # Only sizes warm-up runs, so that each compiles before /readyz turns 200; others run eager.
    warmed = warmup_batch_sizes(settings.max_batch_size)
    asked = settings.vision_compile_batch_sizes or warmed
    sizes = tuple(size for size in warmed if size in asked)
    ignored = sorted(set(asked) - set(sizes))
    if ignored and settings.vision_compile != "off":
        log.warning(
            "VISION_COMPILE_BATCH_SIZES: sizes warm-up does not run are not compiled",
            extra={"event": "fast_path_sizes", "ignored": ignored, "warmup_sizes": warmed},
        )
    return FastPaths(
        vision=VisionOptions(
            sdpa_backend=settings.vision_sdpa_backend,
            patch_embed=settings.vision_patch_embed,
            compile=settings.vision_compile,
            compile_batch_sizes=sizes,
        ),
        decode=DecodeOptions(
            stop=settings.explain_stop, cache=settings.explain_cache, compile=settings.explain_compile
        ),
        pinned_staging=settings.pinned_staging,
    )


def check_fast_paths(engine: TransformersEngine, batch: int, warmed: bool) -> None:
    """Compare the levers' p_yes with the eager path's on `batch` built-in tiles (levers that
    disagree are switched off) and log what each lever is doing."""
    worst = engine.check_fast_paths([synthetic_tile(seed=i + 1) for i in range(batch)])
    status = engine.fast_paths
    log.info(
        "fast paths",
        extra={
            "event": "fast_paths",
            "levers": status,
            "max_p_yes_difference": None if worst is None else round(worst, 6),
        },
    )
    if not warmed and any(name == "vision_compile" and state.startswith("on") for name, state in status.items()):
        log.warning("VISION_COMPILE without WARMUP: each batch size compiles on its first request")


def synthetic_tile(size: int = 256, seed: int = 0) -> Image.Image:
    """A built-in H&E-like tile (pink stroma, purple nuclei, pale lumens): no file, no patient data."""
    image = Image.new("RGB", (size, size), (232, 182, 206))
    draw = ImageDraw.Draw(image)
    step = max(size // 8, 4)
    for row in range(0, size, step):
        for col in range(0, size, step):
            jitter = (row * 7 + col * 13 + seed * 17) % step // 2
            x, y = col + jitter, row + (jitter * 3) % step // 2
            r = max(step // 5, 1)
            draw.ellipse((x, y, x + 2 * r, y + 2 * r), fill=(92, 52, 140))
        lumen = (row * 3 + seed) % size
        draw.ellipse((lumen, row, lumen + step, row + step // 2), fill=(246, 238, 244))
    return image


def selftest(engine: Engine, explain: bool = True) -> EngineResult:
    """Run the built-in tile once; raise SelfTestError unless p_yes is finite in [0, 1] and, when
    explaining, the explanation is non-empty. Returns the result (logged, without image data)."""
    start = time.perf_counter()
    results = engine.predict([synthetic_tile()], explain=explain)
    if len(results) != 1:
        raise SelfTestError(f"self-test: expected 1 result, got {len(results)}")
    result = results[0]
    if result.p_yes is None or not math.isfinite(result.p_yes) or not 0.0 <= result.p_yes <= 1.0:
        raise SelfTestError(f"self-test: p_yes is {result.p_yes!r}, not a finite probability")
    if explain and not result.explanation.strip():
        raise SelfTestError("self-test: the explanation is empty")
    log.info(
        "self-test passed",
        extra={
            "event": "selftest_passed",
            "selftest_ms": round((time.perf_counter() - start) * 1000.0, 1),
            "answer": result.answer,
            "p_yes": round(result.p_yes, 4),
            "explain": explain,
        },
    )
    return result


def warmup_batch_sizes(max_batch_size: int) -> list[int]:
    """1, the powers of two below max_batch_size, and max_batch_size itself."""
    sizes = {1, max_batch_size}
    size = 2
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def warmup(engine: Engine, batch_sizes: Iterable[int], explain: Sequence[bool] = (False,)) -> dict[str, float]:
    """Run one batch at each size (and explain flag) so first requests meet no cold kernels or
    allocator growth. Returns and logs milliseconds per shape, keyed like "b8" or "b8+explain"."""
    timings: dict[str, float] = {}
    total_start = time.perf_counter()
    for size in batch_sizes:
        images = [synthetic_tile(seed=i) for i in range(size)]
        for flag in explain:
            start = time.perf_counter()
            engine.predict(images, explain=flag)
            timings[f"b{size}{'+explain' if flag else ''}"] = round((time.perf_counter() - start) * 1000.0, 1)
    log.info(
        "warm-up done",
        extra={
            "event": "warmup_done",
            "warmup_ms": round((time.perf_counter() - total_start) * 1000.0, 1),
            "per_shape_ms": timings,
        },
    )
    return timings
