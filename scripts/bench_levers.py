"""The engine's speed levers measured one by one in one process (`bench_gpu.py --levers`).

Each lever (inference_service/engine/fast_paths.py) is switched on alone on the same random
MedGemma-4B-shaped model, measured, and switched off again; then the levers that helped are
measured together ("combined"). Per lever, what it can change:

  vision levers   verdict images/s at batch 32 and 64, the vision tower's ms per batch of 32,
                  and max |Δp_yes| against the eager path on the same inputs and weights
  staging         the service's stream (the engine object, its batcher, 2 preparing threads, 1024 px
                  PIL images) against the same engine on images prepared and on the GPU already
  decode levers   verdict + 32-token explanation images/s at batch 64, ms per decode step, and
                  max |Δp_yes| of the explanation's first step against the eager verdict

A lever spec is `eager`, `combined`, or comma-separated `key=value` pairs: sdpa=auto|cudnn|flash|
efficient|math, patch=conv|channels-last|linear, compile=off|default|max-autotune-no-cudagraphs|
reduce-overhead, staging=on|off, cache=dynamic|static, decode-compile=off|default|reduce-overhead.
A lever that cannot apply or fails falls back exactly as in the service, and its row says why.
A decode compile is tried first in a child process (`canary.py`), as the service does.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

import bench_gpu as bench
import torch
import torch._dynamo  # reset between compile levers

from inference_service.engine.canary import decode_compile_canary
from inference_service.engine.decode import generate_kwargs
from inference_service.engine.fast_paths import (
    P_YES_TOLERANCE,
    DecodeOptions,
    FastPaths,
    LeverLog,
    VisionOptions,
    record_decode,
    select,
)
from inference_service.engine.medgemma import explain_generate, p_yes_from_logits, verdict_logits
from inference_service.engine.vision_levers import VisionLevers

# The first phase (verdict path) and the second (explanations; its compiled decode may crash the
# process on some stacks, so gpu_check.sh runs it in a process of its own).
VERDICT_LEVERS = [
    "eager", "sdpa=cudnn", "sdpa=flash", "compile=default", "staging=on", "patch=linear",
    "patch=channels-last", "sdpa=efficient", "compile=reduce-overhead", "combined",
]  # fmt: skip
EXPLAIN_LEVERS = ["eager", "cache=static", "cache=static,decode-compile=default",
                  "cache=static,decode-compile=reduce-overhead"]  # fmt: skip
YES_IDS, NO_IDS = [10, 11, 12], [13, 14, 15]  # stand-ins, as in bench_gpu.engine_rows
HELPS = 1.02  # a lever joins "combined" when it is at least 2% faster, within the p_yes tolerance

_KEYS = {
    "sdpa": ("vision", "sdpa_backend"),
    "patch": ("vision", "patch_embed"),
    "compile": ("vision", "compile"),
    "cache": ("decode", "cache"),
    "decode-compile": ("decode", "compile"),
}


def parse_spec(spec: str) -> FastPaths:
    """`eager` or `key=value,...` → the FastPaths it names (ValueError for an unknown key or value)."""
    if spec == "eager":
        return FastPaths()
    vision: dict[str, Any] = {}
    decode: dict[str, str] = {}
    staging = False
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key == "staging":
            if value not in ("on", "off"):
                raise ValueError(f"staging={value!r}: expected on or off")
            staging = value == "on"
        elif key == "stop":
            raise ValueError("stop=sentence cannot be measured here: random weights never end a sentence")
        elif key in _KEYS:
            group, name = _KEYS[key]
            (vision if group == "vision" else decode)[name] = value
        else:
            raise ValueError(f"unknown lever {key!r} in {spec!r} (expected {', '.join([*_KEYS, 'staging'])})")
    return FastPaths(vision=VisionOptions(**vision), decode=DecodeOptions(**decode), pinned_staging=staging)


@dataclass
class LeverResult:
    """One lever's numbers (None where the lever cannot change them, or they were not measured)."""

    spec: str
    verdict: dict[int, float] = field(default_factory=dict)  # batch → images/s
    verdict_s: dict[int, float] = field(default_factory=dict)  # batch → mean seconds per batch
    vision_ms: float | None = None
    explain: float | None = None
    explain_s: float | None = None
    step_ms: float | None = None
    service: tuple[float, float] | None = None  # (stream images/s, engine images/s)
    delta: float | None = None
    status: str = ""


@dataclass
class LeverBench:
    """State shared by the levers of one run: the model, the eager references, the results."""

    model: Any
    shapes: bench.Shapes
    args: argparse.Namespace
    device: str
    dtype: torch.dtype
    reference: dict[int, list[float]] = field(default_factory=dict)  # batch → eager p_yes
    results: list[LeverResult] = field(default_factory=list)
    # What the eager row measures besides its verdicts: only what some other lever is compared with.
    eager_explains: bool = False
    eager_serves: bool = False

    def run(self, specs: list[str], budget_s: float) -> list[LeverResult]:
        """Measure each spec in order (eager first: it is the reference); once `budget_s` (0: none)
        has passed, the rest are skipped."""
        specs = ["eager", *(spec for spec in specs if spec != "eager")]
        named = [parse_spec(spec) for spec in specs if spec not in ("eager", "combined")]
        self.eager_explains = any(f.decode.any for f in named)
        self.eager_serves = any(f.pinned_staging for f in named)
        start = time.perf_counter()
        for spec in specs:
            if budget_s and time.perf_counter() - start > budget_s:
                print(f"  lever {spec}: skipped, the time budget of {budget_s:g} s is spent", flush=True)
                self.results.append(LeverResult(spec, status="skipped (time budget)"))
                continue
            fast = self.combined() if spec == "combined" else parse_spec(spec)
            if fast is None:
                print("  lever combined: skipped, no lever helped", flush=True)
                continue
            result = self.measure(spec, fast)
            self.results.append(result)
            print(summary_line(result, self.args.lever_explain_batch), flush=True)
        return self.results

    def measure(self, spec: str, fast: FastPaths) -> LeverResult:
        """Switch `fast` on, measure what it can change, switch it off."""
        print(f"  lever {spec}: {describe_fast(fast)}", flush=True)
        started = time.perf_counter()
        levers = LeverLog()
        sizes = tuple(self.args.lever_batch_sizes)
        backend = self.args.compile_backend
        fast = replace(fast, vision=replace(fast.vision, compile_batch_sizes=sizes, compile_backend=backend))
        chosen = select(fast, self.device, "sdpa", levers)
        decode = chosen.decode
        if decode.compile != "off":
            reason = decode_compile_canary(decode.compile, self.device)
            if reason:
                levers.fell_back("explain_compile", reason)
                decode = replace(decode, compile="off")
        record_decode(decode, levers)
        result = LeverResult(spec)
        eager = spec == "eager"
        vision = VisionLevers(self.model, chosen.vision, levers).install() if chosen.vision.any else None
        try:
            if eager or fast.vision.any:
                self._verdicts(result)
            if (eager and self.eager_explains) or fast.decode.any:
                self._explain(result, decode)
            if (eager and self.eager_serves) or fast.pinned_staging:
                self._service(result, chosen.pinned_staging)
        except torch.cuda.OutOfMemoryError as exc:
            result.status = f"out of memory: {exc}"[:120]
        finally:
            if vision is not None:
                vision.remove()
            if chosen.vision.compile != "off" or decode.compile != "off":
                torch._dynamo.reset()  # free the compiled graphs (and their CUDA graph pools)
            gc.collect()
            if self.device == "cuda":
                torch.cuda.empty_cache()
        result.status = result.status or "; ".join(f"{k} {v}" for k, v in levers.status().items()) or "eager"
        print(f"  lever {spec}: {time.perf_counter() - started:.0f} s; {result.status}", flush=True)
        return result

    def _verdicts(self, result: LeverResult) -> None:
        s, args = self.shapes, self.args
        with torch.inference_mode():
            for batch in args.lever_batch_sizes:
                inputs = bench.make_inputs(s, batch, self.device, self.dtype)
                p_yes = p_yes_from_logits(verdict_logits(self.model, inputs), YES_IDS, NO_IDS)  # compiles
                self._compare(result, batch, p_yes)
                row = bench.measure(f"{result.spec} verdict", batch, lambda i=inputs: verdict_logits(self.model, i),
                                    self.device, args.iters)  # fmt: skip
                result.verdict[batch] = row.images_per_s
                result.verdict_s[batch] = statistics.mean(row.latencies_s)
                if batch == args.lever_batch_sizes[0]:
                    pixels = inputs["pixel_values"]
                    tower = self.model.get_image_features
                    row = bench.measure(f"{result.spec} vision", batch, lambda p=pixels, t=tower: t(p), self.device,
                                        args.iters)  # fmt: skip
                    result.vision_ms = statistics.mean(row.latencies_s) * 1000.0
                del inputs

    def _explain(self, result: LeverResult, decode: DecodeOptions) -> None:
        s, args, batch = self.shapes, self.args, self.args.lever_explain_batch
        new_tokens = bench.EXPLAIN_NEW_TOKENS
        self.model.generation_config.pad_token_id = 0
        self.model.generation_config.min_new_tokens = new_tokens  # worst case: never stop early
        extra = generate_kwargs(decode)
        inputs = bench.make_inputs(s, batch, self.device, self.dtype)
        with torch.inference_mode():
            if batch not in self.reference:
                self.reference[batch] = p_yes_from_logits(verdict_logits(self.model, inputs), YES_IDS, NO_IDS)

            def explained() -> list[float]:
                logits, _ = explain_generate(self.model, inputs, new_tokens, extra=extra)
                return p_yes_from_logits(logits, YES_IDS, NO_IDS)

            self._compare(result, batch, explained())  # compiles, if the lever does
            row = bench.measure(f"{result.spec} explain({new_tokens})", batch, explained, self.device,
                                max(2, args.iters // 2))  # fmt: skip
        result.explain = row.images_per_s
        result.explain_s = statistics.mean(row.latencies_s)
        verdict_s = result.verdict_s.get(batch) or self._eager_verdict_s(batch)
        if verdict_s is not None:
            result.step_ms = (result.explain_s - verdict_s) / (new_tokens - 1) * 1000.0

    def _service(self, result: LeverResult, staging: bool) -> None:
        """The service's stream against the same engine on images already prepared and on the GPU."""
        from inference_service.engine.medgemma import PreparedImage

        args = self.args
        image_token_id = self.model.config.image_token_id  # bench_engine sets the tokenizer's
        try:
            engine = bench.bench_engine(self.model, self.shapes, self.device, self.dtype,
                                        fast=FastPaths(pinned_staging=staging))  # fmt: skip
            batch = args.service_batch
            images = bench.service_images(self.shapes, batch)
            ready = [PreparedImage(engine.prepare(im).pixel_values.to(self.device)) for im in images]
            engine.predict(ready, False)
            row = bench.measure(f"{result.spec} engine alone", batch, lambda: engine.predict(ready, False), self.device,
                                args.iters)  # fmt: skip
            count = batch * args.service_rounds
            bench.run_stream(engine, images, batch, batch, 2)  # warm the threads (and the staging buffers)
            rate, _ = bench.run_stream(engine, images, batch, count, 2)
            print(f"  {result.spec} service stream   b<={batch:<3} {rate:7.2f} img/s, 2 preparing threads, "
                  f"{count} images ({rate / row.images_per_s:.0%} of the engine)", flush=True)  # fmt: skip
            result.service = (rate, row.images_per_s)
            if staging and not engine.fast_paths.get("pinned_staging", "").startswith("on"):
                result.status = f"pinned_staging {engine.fast_paths.get('pinned_staging')}"
        finally:
            self.model.config.image_token_id = image_token_id

    def _compare(self, result: LeverResult, batch: int, p_yes: list[float]) -> None:
        reference = self.reference.setdefault(batch, p_yes)
        delta = max(abs(a - b) for a, b in zip(reference, p_yes, strict=True))
        result.delta = delta if result.delta is None else max(result.delta, delta)

    def _eager_verdict_s(self, batch: int) -> float | None:
        for r in self.results:
            if r.spec == "eager" and batch in r.verdict_s:
                return r.verdict_s[batch]
        return None

    def combined(self) -> FastPaths | None:
        """The levers that helped, together: per kind, the fastest one that beat eager by 2%."""
        eager = next((r for r in self.results if r.spec == "eager"), None)
        if eager is None:
            return None
        first = self.args.lever_batch_sizes[0]
        vision: dict[str, Any] = {}
        best: dict[str, float] = {}
        decode: DecodeOptions | None = None
        staging = False
        for r in self.results:
            if r.spec in ("eager", "combined") or r.status.startswith("skipped") or "off:" in r.status:
                continue
            if r.delta is not None and not r.delta <= P_YES_TOLERANCE:
                continue
            fast = parse_spec(r.spec)
            rate = r.verdict.get(first)
            if fast.vision.any and rate and rate > eager.verdict.get(first, float("inf")) * HELPS:
                for name in ("sdpa_backend", "patch_embed", "compile"):
                    value = getattr(fast.vision, name)
                    if value != getattr(VisionOptions(), name) and rate > best.get(name, 0.0):
                        vision[name], best[name] = value, rate
            helps = fast.decode.any and r.explain and eager.explain and r.explain > eager.explain * HELPS
            if helps and r.explain and (decode is None or r.explain > best.get("decode", 0.0)):
                decode, best["decode"] = fast.decode, r.explain
            if fast.pinned_staging and r.service and eager.service:
                staging = r.service[0] / r.service[1] > eager.service[0] / eager.service[1]
        if not vision and decode is None and not staging:
            return None
        return FastPaths(vision=VisionOptions(**vision), decode=decode or DecodeOptions(), pinned_staging=staging)


def describe_fast(fast: FastPaths) -> str:
    """The levers `fast` switches on, as key=value pairs."""
    off = FastPaths()
    on = [
        f"{key}={getattr(getattr(fast, group), name)}"
        for key, (group, name) in _KEYS.items()
        if getattr(getattr(fast, group), name) != getattr(getattr(off, group), name)
    ]
    on += ["staging=on"] if fast.pinned_staging else []
    return ",".join(on) or "eager (every lever off)"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}"


def print_table(results: list[LeverResult], args: argparse.Namespace) -> None:
    """The levers side by side."""
    b1, b2 = [*args.lever_batch_sizes, None][:2]
    eb = args.lever_explain_batch
    print()
    print(f"{'lever':<44} {f'b{b1} img/s':>10} {f'b{b2} img/s' if b2 else '':>10} {f'vision b{b1} ms':>14} "
          f"{f'explain b{eb}':>11} {'ms/step':>8} {'service/engine':>20} {'max|Δp_yes|':>11}  status")  # fmt: skip
    for r in results:
        service = "-" if r.service is None else f"{r.service[0]:.1f}/{r.service[1]:.1f} {_share(*r.service)}"
        print(f"{r.spec:<44} {_num(r.verdict.get(b1), '.2f'):>10} {_num(r.verdict.get(b2 or 0), '.2f'):>10} "
              f"{_num(r.vision_ms, '.1f'):>14} {_num(r.explain, '.2f'):>11} {_num(r.step_ms, '.1f'):>8} "
              f"{service:>20} {_num(r.delta, '.2e'):>11}  {r.status}")  # fmt: skip
    eager = next((r for r in results if r.spec == "eager"), None)
    if eager is not None and eager.step_ms is not None:
        print(
            f"# stop=sentence is not measurable on random weights (their text never ends a sentence): a "
            f"sentence of n tokens saves ({bench.EXPLAIN_NEW_TOKENS} - n) steps of the ms/step above"
        )


def summary_line(r: LeverResult, explain_batch: int) -> str:
    """One lever's numbers on one machine-readable line (printed as soon as the lever is measured,
    so a run stopped by its time limit keeps every lever it finished)."""
    fields = [f"lever={r.spec}"] + [f"b{b}={v:.2f}" for b, v in r.verdict.items()]
    if r.explain is not None:
        fields.append(f"explain_b{explain_batch}={r.explain:.2f}")
    if r.service is not None:
        fields.append(f"service_ratio={r.service[0] / r.service[1]:.3f}")
    if r.delta is not None:
        fields.append(f"max_dp={r.delta:.2e}")
    return " ".join(fields)


def check_specs(specs: list[str]) -> None:
    """Raise ValueError for a spec that names no lever (before minutes of building and measuring)."""
    for spec in specs:
        if spec != "combined":
            parse_spec(spec)


def run_levers(model: Any, shapes: bench.Shapes, args: argparse.Namespace, device: str, dtype: torch.dtype) -> int:
    """Measure `args.levers` (the verdict phase's list by default) and print them side by side."""
    specs = args.levers or VERDICT_LEVERS
    check_specs(specs)
    with torch.inference_mode():  # settle, as bench_gpu.engine_rows does
        warm = bench.make_inputs(shapes, 1, device, dtype)
        for _ in range(5):
            verdict_logits(model, warm)
    results = LeverBench(model, shapes, args, device, dtype).run(specs, args.lever_budget_s)
    print_table(results, args)
    return 0
