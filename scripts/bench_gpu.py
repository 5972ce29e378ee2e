"""`make bench-gpu`: MedGemma-4B-shaped random weights on one GPU, the seed's path vs Healer's engine.

Self-contained, no downloads: the model is `Gemma3ForConditionalGeneration` built from a config
with MedGemma 4B's shapes (ARCHITECTURE.md) and random bf16 weights; inputs are one 896x896 image
and a 319-token prompt (256 image tokens), as in the issue's reference table. In one process:

  seed    8-bit bitsandbytes, batch 1, generate 100 tokens (the seed's `load_in_8bit=True` path:
          the random model is saved to a temp dir and reloaded quantized, as from_pretrained does)
  verdict Healer's engine: one forward pass, `logits_to_keep=1`, p_yes (batch 1, 8, 32, 64)
  explain Healer's engine with an explanation: greedy generate, exactly 32 new tokens (worst case)

  service the service's own engine object (`TransformersEngine`, the processor at 896 px, 256 image
          tokens) on 1024 px PIL images: preprocessing inside the batch vs prepared in request
          threads while the previous batch runs (as `Inference.run` + `MicroBatcher` do)
  report  the slide report (`report_generate`, the engine's own function): one prompt with 32, 64,
          125 patches (256 image tokens each), the vision tower in chunks of 8, 256 new tokens
          forced; seconds, peak GPU memory, and whether it fits an L4's 24 GB next to the tile engine

It prints images/s, p50/p95 latency per batch, peak GPU memory, the ratio to the seed's path, and
the time per stage (vision tower vs language prefill; CPU preprocessing at 896 px).
`--dry-run` builds a tiny config on CPU and runs one step of each path (tested in CI);
`--device cpu` runs the real shapes on the CPU in bf16 (minutes per batch: the documented CPU path).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # bench_levers, also when this file is loaded by path

import torch  # noqa: E402

from inference_service.engine.medgemma import (  # noqa: E402  (the engine's own code paths)
    explain_generate,
    image_features,
    p_yes_from_logits,
    report_generate,
    verdict_logits,
)

PROMPT_TOKENS = 319  # the reference run's prompt: 256 image tokens + chat and question text
SEED_NEW_TOKENS = 100
EXPLAIN_NEW_TOKENS = 32
REPORT_TEXT_TOKENS = 72  # the report prompt's text and chat tokens around its images
# An L4 has 24 GB (23,034 MiB = 22.5 GiB as nvidia-smi counts it); the CUDA context and the
# allocator's slack take about half a GiB, so this is what the tensors may reserve.
L4_USABLE_GIB = 22.0


@dataclass(frozen=True)
class Shapes:
    """Everything about the model and its inputs that sets the cost."""

    text_hidden: int
    text_layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    sliding_window: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_ffn: int
    image_size: int
    patch: int
    image_tokens: int
    image_token_id: int
    boi_id: int
    eoi_id: int
    prompt_tokens: int


MEDGEMMA_4B = Shapes(
    text_hidden=2560, text_layers=34, heads=8, kv_heads=4, head_dim=256, ffn=10240, vocab=262208,
    sliding_window=1024, vision_hidden=1152, vision_layers=27, vision_heads=16, vision_ffn=4304,
    image_size=896, patch=14, image_tokens=256, image_token_id=262144, boi_id=255999, eoi_id=256000,
    prompt_tokens=PROMPT_TOKENS,
)  # fmt: skip

TINY = Shapes(
    text_hidden=64, text_layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=512,
    sliding_window=64, vision_hidden=32, vision_layers=1, vision_heads=2, vision_ffn=64,
    image_size=56, patch=14, image_tokens=4, image_token_id=500, boi_id=498, eoi_id=499,
    prompt_tokens=67,
)  # fmt: skip


def build_config(s: Shapes) -> Any:
    """A Gemma3Config with these shapes (sliding/global 5:1 as in Gemma 3, SDPA attention)."""
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    text = Gemma3TextConfig(
        vocab_size=s.vocab,
        hidden_size=s.text_hidden,
        intermediate_size=s.ffn,
        num_hidden_layers=s.text_layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.head_dim,
        query_pre_attn_scalar=s.head_dim,
        sliding_window=s.sliding_window,
        max_position_embeddings=131072,
    )  # fmt: skip  (MedGemma's linear RoPE scaling is left out: it changes no cost)
    vision = SiglipVisionConfig(
        hidden_size=s.vision_hidden, intermediate_size=s.vision_ffn, num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads, image_size=s.image_size, patch_size=s.patch, vision_use_head=False,
    )  # fmt: skip
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=s.image_tokens,
        image_token_index=s.image_token_id, boi_token_index=s.boi_id, eoi_token_index=s.eoi_id,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    return config


def build_model(config: Any, device: str, dtype: torch.dtype) -> Any:
    """Random weights, created directly on the device (a 4B model initialises in seconds on GPU)."""
    from transformers import Gemma3ForConditionalGeneration

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def make_inputs(s: Shapes, batch: int, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One image and a `prompt_tokens`-long prompt per row, laid out like the chat template's."""
    gen = torch.Generator().manual_seed(batch)
    before, after = 12, s.prompt_tokens - 12 - s.image_tokens - 3
    text = torch.randint(10, min(s.boi_id, 255000) - 1, (batch, before + after), generator=gen)
    row = [
        torch.full((batch, 1), 2),  # <bos>
        text[:, :before],
        torch.full((batch, 1), s.boi_id),
        torch.full((batch, s.image_tokens), s.image_token_id),
        torch.full((batch, 1), s.eoi_id),
        text[:, before:],
    ]
    input_ids = torch.cat(row, dim=1)
    assert input_ids.shape[1] == s.prompt_tokens
    pixels = torch.randn(batch, 3, s.image_size, s.image_size, generator=gen)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "token_type_ids": (input_ids == s.image_token_id).long().to(device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
    }


def make_report_inputs(
    s: Shapes, patches: int, device: str, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One report prompt laid out as the processor expands it (per patch: "\\n\\n", <start_of_image>,
    the image tokens, <end_of_image>, "\\n\\n"), and its pixels on the CPU, as the engine's chunks come."""
    gen = torch.Generator().manual_seed(patches)
    text = torch.randint(10, min(s.boi_id, 255000) - 1, (1, REPORT_TEXT_TOKENS), generator=gen)
    image = [
        torch.tensor([[108, s.boi_id]]),
        torch.full((1, s.image_tokens), s.image_token_id),
        torch.tensor([[s.eoi_id, 108]]),
    ]
    input_ids = torch.cat([torch.full((1, 1), 2), text[:, :40], *(image * patches), text[:, 40:]], dim=1)
    inputs = {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "token_type_ids": (input_ids == s.image_token_id).long().to(device),
    }
    return inputs, torch.randn(patches, 3, s.image_size, s.image_size, generator=gen).to(dtype)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class Row:
    """One benchmark line: per-call latencies of `batch` images, or (throughput set) a stream's
    per-image latencies and its measured images/s."""

    path: str
    batch: int
    latencies_s: list[float]
    peak_gb: float | None
    throughput: float | None = None

    @property
    def images_per_s(self) -> float:
        if self.throughput is not None:
            return self.throughput
        return self.batch / statistics.mean(self.latencies_s)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000.0


def measure(path: str, batch: int, step: Callable[[], object], device: str, iters: int, warm: int = 1) -> Row:
    """Time `iters` calls of `step` (after `warm` untimed ones), with peak GPU memory."""
    for _ in range(warm):
        step()
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    latencies = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        _sync(device)
        latencies.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    row = Row(path, batch, latencies, peak)
    print(
        f"  {path:<28} b={batch:<3} {row.images_per_s:9.2f} img/s  p50 {row.pct(0.5):9.1f} ms  "
        f"p95 {row.pct(0.95):9.1f} ms  peak {'n/a' if peak is None else f'{peak:6.1f} GiB'}",
        flush=True,
    )
    return row


def engine_rows(model: Any, s: Shapes, args: argparse.Namespace, device: str, dtype: torch.dtype) -> list[Row]:
    """Healer's engine path at each batch size: verdict only, then verdict + explanation."""
    rows: list[Row] = []
    yes_ids, no_ids = [10, 11, 12], [13, 14, 15]  # stand-ins: the cost is the same for any ids
    model.generation_config.pad_token_id = 0
    model.generation_config.min_new_tokens = EXPLAIN_NEW_TOKENS  # worst case: never stop early
    with torch.inference_mode():
        # A freshly built model's first passes run slower (clocks, kernel choice): the first b=1 row
        # of a cold run measured 100 ms, a warm one 61 ms. Settle before measuring anything.
        warm = make_inputs(s, 1, device, dtype)
        for _ in range(5):
            verdict_logits(model, warm)
        _sync(device)
        for batch in args.batch_sizes:
            inputs = make_inputs(s, batch, device, dtype)

            def verdict(inputs: dict[str, torch.Tensor] = inputs) -> object:
                return p_yes_from_logits(verdict_logits(model, inputs), yes_ids, no_ids)

            def explained(inputs: dict[str, torch.Tensor] = inputs) -> object:
                logits, _ = explain_generate(model, inputs, EXPLAIN_NEW_TOKENS)
                return p_yes_from_logits(logits, yes_ids, no_ids)

            rows.append(measure("healer verdict", batch, verdict, device, args.iters))
            if batch in args.explain_batch_sizes:
                rows.append(measure(f"healer verdict+explain({EXPLAIN_NEW_TOKENS})", batch, explained, device,
                                    max(2, args.iters // 2)))  # fmt: skip
            del inputs
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def stage_times(model: Any, s: Shapes, batch: int, device: str, dtype: torch.dtype, iters: int) -> None:
    """Where a verdict's time goes: vision tower + projector vs the whole prefill; CPU preprocessing."""
    inputs = make_inputs(s, batch, device, dtype)
    with torch.inference_mode():
        vision = measure("stage: vision+projector", batch, lambda: model.get_image_features(inputs["pixel_values"]),
                         device, iters)  # fmt: skip
        full = measure("stage: full verdict pass", batch, lambda: verdict_logits(model, inputs), device, iters)
    language = statistics.mean(full.latencies_s) - statistics.mean(vision.latencies_s)
    print(f"  stage: language prefill ≈ {language * 1000:.1f} ms per batch of {batch}")
    try:
        import numpy as np
        from PIL import Image
        from transformers import Gemma3ImageProcessor

        processor = Gemma3ImageProcessor(size={"height": s.image_size, "width": s.image_size})
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)) for _ in range(8)]
        start = time.perf_counter()
        processor(images=images, return_tensors="pt")
        per_image = (time.perf_counter() - start) / len(images) * 1000.0
        print(f"  stage: CPU preprocessing (1024 px → {s.image_size} px) ≈ {per_image:.1f} ms per image")
    except Exception as exc:  # the bench must still print its numbers
        print(f"  stage: CPU preprocessing not measured ({type(exc).__name__}: {exc})")


def bench_engine(model: Any, s: Shapes, device: str, dtype: torch.dtype, fast: Any = None) -> Any:
    """The service's TransformersEngine over `model`, with a Gemma 3 processor at these shapes.

    The processor's tokenizer is the tiny checkpoint's (MedGemma's cannot be downloaded here), so
    the model is told that tokenizer's image-token id; the prompt is the engine's own.
    """
    from inference_service.engine.base import ModelInfo
    from inference_service.engine.medgemma import TransformersEngine
    from inference_service.engine.prompt import PROMPT_VERSION
    from inference_service.engine.tiny import build_processor

    processor = build_processor(image_size=s.image_size, image_seq_length=s.image_tokens)
    model.config.image_token_id = processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    info = ModelInfo("bench/random-medgemma-shapes", "", "none", PROMPT_VERSION, device, str(dtype).split(".")[-1])
    return TransformersEngine(model, processor, info, fast=fast)


def service_images(s: Shapes, count: int) -> list[Any]:
    """`count` random RGB PIL images of 1024 px (twice the image size for tiny shapes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    side = 1024 if s.image_size > 100 else 2 * s.image_size
    return [Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(count)]


def run_stream(engine: Any, items: list[Any], batch: int, count: int, workers: int) -> tuple[float, list[float]]:
    """What `Inference.run` does per request (prepare in a pool of `workers` threads, then queue on
    the `MicroBatcher`), with all `count` requests arriving at once, up to `batch` per forward pass.
    workers == 0: `items` come already prepared (the batcher and engine alone, no CPU preprocessing
    running beside them), the ceiling for the pooled rows. Returns (images/s, per-image latencies)."""
    import asyncio

    from inference_service.batcher import MicroBatcher

    async def stream() -> tuple[float, list[float]]:
        pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="prepare")
        batcher = MicroBatcher(engine, max_batch_size=batch, window_ms=20, max_queue=count)
        await batcher.start()
        loop = asyncio.get_running_loop()

        async def one(image: Any) -> float:
            start = time.perf_counter()
            item = image if workers == 0 else await loop.run_in_executor(pool, engine.prepare, image)
            await batcher.submit(item, False)
            return time.perf_counter() - start

        start = time.perf_counter()
        latencies = await asyncio.gather(*(one(items[i % len(items)]) for i in range(count)))
        elapsed = time.perf_counter() - start
        await batcher.stop()
        pool.shutdown()
        return count / elapsed, list(latencies)

    return asyncio.run(stream())


def service_rows(engine: Any, s: Shapes, args: argparse.Namespace, device: str) -> list[Row]:
    """Healer's engine on PIL images, preprocessing included: inline (inside the batch, serial)
    vs prepared in threads while the previous batch runs (the service's path), at one batch size."""
    from inference_service.engine.base import default_prepare_workers

    batch = args.service_batch
    images = service_images(s, batch)
    side = images[0].width
    tokens = int(engine._text_row["input_ids"].shape[1]) if engine._text_row else -1
    kind = type(engine._processor.image_processor).__name__
    print(f"  service: prompt {tokens} tokens (the engine's prompt), {side} px images, {kind}", flush=True)
    rows = [
        measure("service b=1, prep inline", 1, lambda: engine.predict(images[:1], False), device, args.iters),
        measure(f"service b={batch}, prep inline", batch, lambda: engine.predict(images, False), device,
                max(2, args.iters // 2)),
    ]  # fmt: skip

    count = batch * args.service_rounds
    run_stream(engine, images, batch, batch, default_prepare_workers())  # warm the threads and shapes
    for workers in args.prepare_workers or [default_prepare_workers()]:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if workers == 0:
            prepared = [engine.prepare(im) for im in images]
            rate, latencies = run_stream(engine, prepared, batch, count, workers)
            label = f"service {count} imgs, pre-prepared"
        else:
            rate, latencies = run_stream(engine, images, batch, count, workers)
            label = f"service {count} imgs, {workers} prep thr"
        _sync(device)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        row = Row(label, batch, latencies, peak, throughput=rate)
        print(f"  {row.path:<28} b<={batch:<3} {rate:7.2f} img/s  per-image p50 {row.pct(0.5):9.1f} ms  "
              f"p95 {row.pct(0.95):9.1f} ms", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def report_rows(model: Any, s: Shapes, args: argparse.Namespace, device: str, dtype: torch.dtype) -> list[Row]:
    """The slide report at each patch count: `report_generate` (vision tower in chunks, pre-encoded
    images into greedy generate, `args.report_new_tokens` forced), and its peak next to the tile engine."""
    rows: list[Row] = []
    chunk = args.report_chunk
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    with torch.inference_mode():
        # The tile engine's peak at the service's MAX_BATCH_SIZE: the same weights, in the same process.
        tiles = make_inputs(s, chunk, device, dtype)
        tile_peak = measure(
            f"tile engine b={chunk}", chunk, lambda t=tiles: verdict_logits(model, t), device, 2
        ).peak_gb
        del tiles
        previous = model.generation_config.min_new_tokens
        model.generation_config.pad_token_id = 0
        model.generation_config.min_new_tokens = args.report_new_tokens  # worst case: never stop early
        for patches in args.report_patches:
            inputs, pixels = make_report_inputs(s, patches, device, dtype)

            def chunks(pixels: torch.Tensor = pixels) -> Any:
                return (pixels[i : i + chunk] for i in range(0, pixels.shape[0], chunk))

            def report(inputs: dict[str, torch.Tensor] = inputs, chunks: Any = chunks) -> object:
                return report_generate(model, **inputs, pixel_chunks=chunks(), max_new_tokens=args.report_new_tokens)

            def vision(chunks: Any = chunks) -> object:
                return list(image_features(model, chunks()))

            tokens = int(inputs["input_ids"].shape[1])
            print(f"  report: {patches} patches, prompt {tokens} tokens, {args.report_new_tokens} new", flush=True)
            row = measure(f"report {patches} patches", patches, report, device, args.report_iters)
            reserved = torch.cuda.max_memory_reserved() / 2**30 if device == "cuda" else None
            rows.append(row)
            stage = measure(f"report stage: vision x{patches}", patches, vision, device, args.report_iters)
            total, tower = statistics.median(row.latencies_s), statistics.median(stage.latencies_s)
            print(f"  report: {total:.1f} s = vision tower {tower:.1f} s + prefill and "
                  f"{args.report_new_tokens} decode steps {total - tower:.1f} s", flush=True)  # fmt: skip
            if row.peak_gb is not None and tile_peak is not None and reserved is not None:
                # Same process: the report and the tile batches take turns on one set of weights.
                fits = "fits" if reserved <= L4_USABLE_GIB else "does NOT fit"
                # A second model for the tiles would hold a second copy of the weights.
                two = row.peak_gb + tile_peak
                fits_two = "fits" if two <= L4_USABLE_GIB else "does NOT fit"
                print(f"  report: peak {row.peak_gb:.1f} GiB allocated, {reserved:.1f} reserved (weights "
                      f"{weights_gb:.1f}; tile engine b={chunk} {tile_peak:.1f}); L4 {L4_USABLE_GIB:.0f} GiB usable: "
                      f"next to the tile engine {fits}; with a second model for the tiles {two:.1f} GiB, {fits_two}",
                      flush=True)  # fmt: skip
            del inputs, pixels
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        model.generation_config.min_new_tokens = previous
    return rows


def seed_row(model: Any, s: Shapes, args: argparse.Namespace, device: str) -> Row | None:
    """The seed's path: the same weights reloaded with load_in_8bit=True, batch 1, 100 new tokens."""
    if device != "cuda":
        print("  seed path skipped: 8-bit bitsandbytes needs CUDA")
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import AutoModelForImageTextToText, BitsAndBytesConfig
    except ImportError as exc:
        print(f"  seed path skipped: bitsandbytes is not installed ({exc}); pip install bitsandbytes")
        return None
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # saving/loading 8.6 GB draws bars into the log
    warnings.filterwarnings("ignore", message="MatMul8bitLt")  # once per 8-bit matmul call
    with tempfile.TemporaryDirectory(prefix="healer-bench-") as tmp:
        model.save_pretrained(tmp)
        quantized = AutoModelForImageTextToText.from_pretrained(
            tmp,
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            dtype=torch.bfloat16,
            device_map={"": 0},
            attn_implementation="sdpa",
        ).eval()
    quantized.generation_config.pad_token_id = 0
    quantized.generation_config.min_new_tokens = SEED_NEW_TOKENS
    inputs = make_inputs(s, 1, device, torch.bfloat16)

    def generate() -> object:
        return quantized.generate(**inputs, max_new_tokens=SEED_NEW_TOKENS, do_sample=False)

    with torch.inference_mode():
        return measure(f"seed 8-bit generate({SEED_NEW_TOKENS})", 1, generate, device, args.seed_iters, warm=1)


def main(argv: list[str] | None = None) -> int:
    """Run the GPU benchmark (or, with --dry-run, its tiny CPU rehearsal) and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU, one step of each path")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--explain-batch-sizes", type=int, nargs="*", default=[1, 8, 32, 64])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--seed-iters", type=int, default=3)
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--service-batch", type=int, default=32, help="batch size of the service rows")
    parser.add_argument("--service-rounds", type=int, default=4, help="the service stream is this many batches")
    parser.add_argument("--skip-service", action="store_true")
    parser.add_argument("--report-patches", type=int, nargs="*", default=[32, 64, 125],
                        help="slide report rows: patches per prompt (none: no report rows)")  # fmt: skip
    parser.add_argument("--report-new-tokens", type=int, default=256, help="report length, forced")
    parser.add_argument("--report-chunk", type=int, default=8, help="vision tower chunk (MAX_BATCH_SIZE)")
    parser.add_argument("--report-iters", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="only the slide report rows (and the tile peak)")
    parser.add_argument("--prepare-workers", type=int, nargs="*", default=[],
                        help="service stream threads (0: prepared ahead; default: as the service)")  # fmt: skip
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: MedGemma shapes on the CPU (slow; the CPU path's numbers)")  # fmt: skip
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="with --device cpu")
    parser.add_argument("--levers", nargs="*", default=None, metavar="SPEC",
                        help="measure the engine's speed levers one by one instead (bench_levers.py; no SPEC: "
                             "the verdict phase's list)")  # fmt: skip
    parser.add_argument("--lever-batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--lever-explain-batch", type=int, default=64)
    parser.add_argument("--lever-budget-s", type=float, default=0.0,
                        help="skip the levers left once this many seconds have passed (0: none)")  # fmt: skip
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile levers")
    args = parser.parse_args(argv)

    if args.dry_run:
        shapes, device, dtype = TINY, "cpu", torch.float32
        args.batch_sizes, args.explain_batch_sizes, args.iters, args.seed_iters = [1, 2], [1, 2], 1, 1
        args.service_batch, args.service_rounds = 2, 2
        args.report_patches, args.report_new_tokens, args.report_chunk, args.report_iters = [3, 5], 4, 2, 1
        # Inductor compiles for minutes on a CPU: the rehearsal traces with Dynamo and runs eager kernels.
        args.lever_batch_sizes, args.lever_explain_batch, args.compile_backend = [2, 4], 4, "aot_eager"
    elif args.device == "cpu":
        shapes, device, dtype = MEDGEMMA_4B, "cpu", getattr(torch, args.dtype)
        threads = torch.get_num_threads()
        print(f"# CPU: {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads)", flush=True)
    else:
        if not torch.cuda.is_available():
            print("bench-gpu needs a CUDA GPU (use --dry-run to rehearse on CPU, --device cpu for CPU numbers)")
            return 2
        shapes, device, dtype = MEDGEMMA_4B, "cuda", torch.bfloat16
        print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {os.cpu_count()} CPU cores", flush=True)
    if args.levers:
        import bench_levers

        try:
            bench_levers.check_specs(args.levers)
        except ValueError as exc:
            print(f"--levers: {exc}")
            return 2
    import transformers

    dtype_name = str(dtype).split(".")[-1]
    print(f"# transformers {transformers.__version__}; {dtype_name}; SDPA; prompt {shapes.prompt_tokens} tokens, "
          f"{shapes.image_size} px image; random weights", flush=True)  # fmt: skip

    start = time.perf_counter()
    model = build_model(build_config(shapes), device, dtype)
    params = sum(p.numel() for p in model.parameters())
    print(f"# model built in {time.perf_counter() - start:.1f}s: {params / 1e9:.2f} B parameters", flush=True)
    if args.levers is not None:
        import bench_levers

        return bench_levers.run_levers(model, shapes, args, device, dtype)

    # Most important first (rows print as they finish, so a run cut short still says the most).
    rows: list[Row] = []
    seed = None
    if not args.report_only:
        rows = engine_rows(model, shapes, args, device, dtype)
        seed = None if args.skip_seed else seed_row(model, shapes, args, device)
        gc.collect()  # the 8-bit copy
        if device == "cuda":
            torch.cuda.empty_cache()
        if seed:
            print(f"  verdict vs seed so far: {max(r.images_per_s for r in rows) / seed.images_per_s:.1f}x", flush=True)
    if args.report_patches:
        try:
            rows += report_rows(model, shapes, args, device, dtype)
        except Exception as exc:  # the table must still come out
            print(f"  report rows not measured ({type(exc).__name__}: {exc})", flush=True)
    if not args.report_only:
        stage_times(model, shapes, max(args.batch_sizes[:3]), device, dtype, args.iters)
    if not args.skip_service and not args.report_only:
        try:
            rows += service_rows(bench_engine(model, shapes, device, dtype), shapes, args, device)
        except Exception as exc:  # the table must still come out
            print(f"  service rows not measured ({type(exc).__name__}: {exc})", flush=True)
    del model
    gc.collect()

    print()
    print(f"{'path':<30} {'batch':>5} {'img/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'peak GiB':>9} {'x seed':>8}")
    for row in [*([seed] if seed else []), *rows]:
        ratio = f"{row.images_per_s / seed.images_per_s:7.1f}x" if seed else "     n/a"
        peak = "n/a" if row.peak_gb is None else f"{row.peak_gb:.1f}"
        print(f"{row.path:<30} {row.batch:>5} {row.images_per_s:9.2f} {row.pct(0.5):9.1f} {row.pct(0.95):9.1f} "
              f"{peak:>9} {ratio:>8}")  # fmt: skip
    verdicts = [r for r in rows if r.path == "healer verdict"]
    if seed and verdicts:
        best = max(verdicts, key=lambda r: r.images_per_s)
        print(f"best_verdict_vs_seed={best.images_per_s / seed.images_per_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
