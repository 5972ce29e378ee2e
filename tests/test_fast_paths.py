"""The engine's speed levers on the tiny checkpoint (CPU): each fast path gives the eager path's p_yes
(within 1e-2) and explanations on the same inputs and weights, and each lever that cannot apply or
fails falls back to the eager path with a logged reason. Tests that need CUDA are marked `gpu`."""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("transformers")

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from inference_service.engine.canary import decode_compile_canary
from inference_service.engine.decode import SentenceStop, generate_kwargs
from inference_service.engine.fast_paths import (
    P_YES_TOLERANCE,
    DecodeOptions,
    FastPaths,
    LeverLog,
    VisionOptions,
    select,
)
from inference_service.engine.loader import fast_paths_from, synthetic_tile, warmup, warmup_batch_sizes
from inference_service.engine.medgemma import LoadOptions, TransformersEngine, explain_generate
from inference_service.engine.prompt import explanation_complete, parse_generated
from inference_service.engine.vision_levers import VisionLevers, linear_patch_embed
from inference_service.settings import Settings

CUDA = torch.cuda.is_available()


def _load(model_dir: Path, fast: FastPaths | None = None, device: str = "cpu") -> TransformersEngine:
    return TransformersEngine.load(LoadOptions(model_dir=str(model_dir), device=device), fast=fast)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [synthetic_tile(seed=i) for i in range(4)]


@pytest.fixture(scope="module")
def eager(tiny_model_dir: Path, images: list[Image.Image]) -> dict[str, Any]:
    """The eager path's verdicts and explanations on `images` (batch 4, then batch 2)."""
    engine = _load(tiny_model_dir)
    return {
        "verdict": [r.p_yes for r in engine.predict(images, explain=False)],
        "pair": [r.p_yes for r in engine.predict(images[:2], explain=False)],
        "explained": engine.predict(images, explain=True),
    }


def _assert_same_as_eager(engine: TransformersEngine, images: list[Image.Image], eager: dict[str, Any]) -> None:
    verdicts = [r.p_yes for r in engine.predict(images, explain=False)]
    assert verdicts == pytest.approx(eager["verdict"], abs=P_YES_TOLERANCE)
    pair = [r.p_yes for r in engine.predict(images[:2], explain=False)]
    assert pair == pytest.approx(eager["pair"], abs=P_YES_TOLERANCE)
    explained = engine.predict(images, explain=True)
    assert [r.p_yes for r in explained] == pytest.approx(eager["verdict"], abs=P_YES_TOLERANCE)
    assert [r.explanation for r in explained] == [r.explanation for r in eager["explained"]]
    assert [r.answer for r in explained] == [r.answer for r in eager["explained"]]


# Every lever that runs on a CPU, alone and together. The compile levers use Dynamo's aot_eager
# backend here (the real graph capture at fixed shapes, without Inductor's minutes of C++ builds);
# Inductor itself is the `slow` test below.
CPU_LEVERS = {
    "sdpa flash": FastPaths(vision=VisionOptions(sdpa_backend="flash")),
    "sdpa math": FastPaths(vision=VisionOptions(sdpa_backend="math")),
    "patch linear": FastPaths(vision=VisionOptions(patch_embed="linear")),
    "patch channels-last": FastPaths(vision=VisionOptions(patch_embed="channels-last")),
    "compile at 1, 2, 4": FastPaths(
        vision=VisionOptions(compile="default", compile_batch_sizes=(1, 2, 4), compile_backend="aot_eager")
    ),
    "static cache": FastPaths(decode=DecodeOptions(cache="static")),
    "stop at the sentence": FastPaths(decode=DecodeOptions(stop="sentence")),
    "all together": FastPaths(
        vision=VisionOptions(
            sdpa_backend="flash",
            patch_embed="linear",
            compile="default",
            compile_batch_sizes=(2, 4),
            compile_backend="aot_eager",
        ),
        decode=DecodeOptions(stop="sentence", cache="static"),
    ),
}


@pytest.mark.parametrize("name", list(CPU_LEVERS))
def test_every_fast_path_gives_the_eager_p_yes_and_explanations(
    name: str, tiny_model_dir: Path, images: list[Image.Image], eager: dict[str, Any]
) -> None:
    fast = CPU_LEVERS[name]
    engine = _load(tiny_model_dir, fast)
    status = engine.fast_paths
    assert status and all(state.startswith("on") for state in status.values()), status
    worst = engine.check_fast_paths(images[:2])
    assert worst is not None and worst <= P_YES_TOLERANCE
    _assert_same_as_eager(engine, images, eager)
    assert all(state.startswith("on") for state in engine.fast_paths.values())


@pytest.mark.slow
def test_inductor_compiles_the_tower_at_its_sizes_and_runs_others_eager(
    tiny_model_dir: Path, images: list[Image.Image], eager: dict[str, Any]
) -> None:
    fast = FastPaths(vision=VisionOptions(compile="default", compile_batch_sizes=(2,)))
    engine = _load(tiny_model_dir, fast)
    pair = [r.p_yes for r in engine.predict(images[:2], explain=False)]  # compiled (Inductor's C++ on CPU)
    assert pair == pytest.approx(eager["pair"], abs=P_YES_TOLERANCE)
    four = [r.p_yes for r in engine.predict(images, explain=False)]  # not a compiled size: eager
    assert four == pytest.approx(eager["verdict"], abs=P_YES_TOLERANCE)
    assert engine._vision is not None and engine._vision.compiled_sizes == [2]
    assert engine.fast_paths["vision_compile"].startswith("on")


def test_warmup_compiles_every_batch_size_the_batcher_runs(tiny_model_dir: Path, images: list[Image.Image]) -> None:
    sizes = warmup_batch_sizes(4)
    fast = FastPaths(
        vision=VisionOptions(compile="default", compile_batch_sizes=tuple(sizes), compile_backend="aot_eager")
    )
    engine = _load(tiny_model_dir, fast)
    assert engine._vision is not None and engine._vision.compiled_sizes == []
    warmup(engine, sizes)
    assert engine._vision.compiled_sizes == sizes == [1, 2, 4]
    engine.predict(images[:3], explain=False)  # 3 is no size of the batcher's: eager, nothing compiled
    assert engine._vision.compiled_sizes == [1, 2, 4]


def test_settings_choose_the_levers_and_the_compiled_sizes(tiny_model_dir: Path) -> None:
    assert not fast_paths_from(Settings(model_dir=str(tiny_model_dir))).any  # today's path by default
    settings = Settings(
        model_dir=str(tiny_model_dir),
        max_batch_size=24,
        vision_sdpa_backend="cudnn",
        vision_patch_embed="linear",
        vision_compile="reduce-overhead",
        pinned_staging=True,
        explain_stop="sentence",
        explain_cache="static",
        explain_compile="reduce-overhead",
    )
    fast = fast_paths_from(settings)
    assert fast.vision == VisionOptions(
        sdpa_backend="cudnn", patch_embed="linear", compile="reduce-overhead", compile_batch_sizes=(1, 2, 4, 8, 16, 24)
    )
    assert fast.decode == DecodeOptions(stop="sentence", cache="static", compile="reduce-overhead")
    assert fast.pinned_staging


def test_only_sizes_warm_up_runs_are_compiled(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        model_dir=str(tiny_model_dir),
        max_batch_size=32,
        vision_compile="default",
        vision_compile_batch_sizes=[32, 8, 12],
    )
    with caplog.at_level(logging.WARNING, logger="inference_service.engine.loader"):
        fast = fast_paths_from(settings)
    assert fast.vision.compile_batch_sizes == (8, 32)  # 12 is no size warm-up runs: it would compile in a request
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "fast_path_sizes"]
    assert record.ignored == [12]  # type: ignore[attr-defined]


def test_settings_refuse_an_unknown_lever_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("VISION_SDPA_BACKEND", "flash3")
    with pytest.raises(ValidationError, match="VISION_SDPA_BACKEND"):
        Settings()
    with pytest.raises(ValueError, match="explain_cache='paged'"):
        DecodeOptions(cache="paged")


def test_cuda_only_levers_are_off_on_the_cpu_with_a_logged_reason(
    tiny_model_dir: Path, images: list[Image.Image], eager: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    fast = FastPaths(
        vision=VisionOptions(sdpa_backend="cudnn", compile="reduce-overhead", compile_batch_sizes=(1, 2)),
        decode=DecodeOptions(cache="static", compile="reduce-overhead"),
        pinned_staging=True,
    )
    with caplog.at_level(logging.WARNING, logger="inference_service.engine.fast_paths"):
        engine = _load(tiny_model_dir, fast)
    status = engine.fast_paths
    assert status["vision_sdpa_backend"] == "off: cudnn attention needs CUDA"
    assert status["vision_compile"] == "off: reduce-overhead (CUDA graphs) needs CUDA"
    assert status["pinned_staging"] == "off: pinned staging needs CUDA"
    assert status["explain_compile"] == "off: the decode step is compiled on CUDA only"
    assert status["explain_cache"] == "on: static"  # the static cache alone runs anywhere
    logged = {r.lever: r.reason for r in caplog.records if getattr(r, "event", "") == "fast_path_fallback"}  # type: ignore[attr-defined]
    assert logged == {k: v.removeprefix("off: ") for k, v in status.items() if v.startswith("off")}
    _assert_same_as_eager(engine, images, eager)


def test_selection_needs_sdpa_and_a_static_cache_for_what_builds_on_them() -> None:
    levers = LeverLog()
    fast = FastPaths(
        vision=VisionOptions(sdpa_backend="flash", compile="default"),  # no batch sizes to compile
        decode=DecodeOptions(compile="default"),  # a dynamic cache
    )
    chosen = select(fast, "cuda", "eager", levers)
    assert not chosen.vision.any and chosen.decode == DecodeOptions()
    assert levers.status() == {
        "vision_sdpa_backend": "off: the attention implementation is eager, not sdpa",
        "vision_compile": "off: no batch sizes to compile",
        "explain_compile": "off: a compiled decode step needs EXPLAIN_CACHE=static",
    }
    assert select(FastPaths(pinned_staging=True), "cuda", "sdpa", LeverLog()).pinned_staging


def _failing_attention_backend(model_dir: Path) -> TransformersEngine:
    # Past the selection (as a GPU whose cuDNN cannot take the shapes would be): PyTorch's CPU build
    # has no memory-efficient kernel, so the first batch raises "No viable backend" inside the tower.
    engine = _load(model_dir)
    VisionLevers(engine._model, VisionOptions(sdpa_backend="efficient"), engine._levers).install()
    assert engine.fast_paths == {"vision_sdpa_backend": "on: efficient"}
    return engine


def _failing_compiler(model_dir: Path) -> TransformersEngine:
    def no_compiler(graph: Any, example_inputs: Any) -> Any:  # a stack whose compiler is broken
        raise RuntimeError("the C compiler is missing")

    return _load(
        model_dir,
        FastPaths(vision=VisionOptions(compile="default", compile_batch_sizes=(2, 4), compile_backend=no_compiler)),
    )


@pytest.mark.parametrize(
    ("broken", "lever", "prefix", "reason"),
    [
        pytest.param(_failing_attention_backend, "vision_sdpa_backend", "off: RuntimeError", "backend", id="sdpa"),
        pytest.param(_failing_compiler, "vision_compile", "off: ", "the C compiler is missing", id="compile"),
    ],
)
def test_a_lever_that_fails_at_run_time_falls_back_to_the_eager_tower(
    tiny_model_dir: Path,
    images: list[Image.Image],
    eager: dict[str, Any],
    broken: Callable[[Path], TransformersEngine],
    lever: str,
    prefix: str,
    reason: str,
) -> None:
    engine = broken(tiny_model_dir)
    _assert_same_as_eager(engine, images, eager)
    state = engine.fast_paths[lever]
    assert state.startswith(prefix) and reason in state, state


def test_levers_that_disagree_with_the_eager_path_are_switched_off(
    tiny_model_dir: Path, images: list[Image.Image], eager: dict[str, Any]
) -> None:
    fast = FastPaths(vision=VisionOptions(patch_embed="linear"), decode=DecodeOptions(stop="sentence"))
    engine = _load(tiny_model_dir, fast)
    # A negative tolerance: no p_yes can be that close, so every lever counts as disagreeing.
    assert engine.check_fast_paths(images[:2], tolerance=-1.0) is not None
    status = engine.fast_paths
    assert set(status) == {"vision_patch_embed", "explain_stop"}
    for state in status.values():
        assert re.fullmatch(r"off: p_yes differs from the eager path by [0-9.e+-]+ \(> -1\)", state), state
    assert engine._vision is None and "forward" not in vars(engine._model.model.vision_tower)
    assert engine.check_fast_paths(images[:2]) is None  # nothing left on
    _assert_same_as_eager(engine, images, eager)


def test_the_linear_patch_embedding_is_the_convolution() -> None:
    conv = torch.nn.Conv2d(3, 8, kernel_size=14, stride=14)
    pixels = torch.randn(2, 3, 56, 42)
    expected = conv(pixels)
    got = linear_patch_embed(conv, pixels)
    assert got.shape == expected.shape == (2, 8, 4, 3)
    assert torch.allclose(got, expected, atol=1e-5)
    # SigLIP flattens and transposes it next: a view, no copy.
    assert got.flatten(2).transpose(1, 2).is_contiguous()


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("Yes", False),
        ("Yes.", False),
        ("Yes. The glands are crowded.", False),  # the sentence may still go on ("crowded.5 mm")
        ("Yes. The glands are crowded. ", True),
        ("Yes. The glands are crowded.\n", True),
        ("**No** — normal mucosa! More", True),
        ("Answer: yes. Irregular glands\n\nmore", True),
        ("No\n\nRegular crypts\n\n", True),
        ("The answer is yes. Because", False),  # no leading answer word: the whole budget is used
        ("Yes or no? It shows glands. ", False),
        ("<unused94>thought\nYes. Glands. ", False),
    ],
)
def test_explanation_complete(text: str, complete: bool) -> None:
    assert explanation_complete(text) is complete


def test_a_complete_explanation_parses_as_its_every_continuation() -> None:
    texts = [
        "Yes. The tissue shows irregular crowded glands. No, it does not.",
        "**No** — the epithelium is benign!\nMore text here.",
        "Answer: Yes, invasive adenocarcinoma with necrosis.\n\nSecond paragraph.",
        "no\n\nregular crypts and preserved architecture. fat",
        "YES! Atypia, mitoses and necrosis are visible in the stroma. The rest.",
        "Yes. pleomorphic cells_ disorganized. more",
    ]
    for full in texts:
        stops = [i for i in range(1, len(full) + 1) if explanation_complete(full[:i])]
        assert stops, full
        for i in stops:
            assert parse_generated(full[:i]) == parse_generated(full), (full, i)


class ForceText(LogitsProcessor):
    """Make greedy decoding write given token ids (then repeat the last): a model that answers."""

    def __init__(self, rows: list[list[int]], prompt_len: int) -> None:
        self.rows, self.prompt_len = rows, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, -math.inf)
        for row, tokens in enumerate(self.rows):
            forced[row, tokens[min(step, len(tokens) - 1)]] = 0.0
        return forced  # type: ignore[return-value]


def test_sentence_stop_ends_each_row_at_its_first_sentence(tiny_model_dir: Path, images: list[Image.Image]) -> None:
    engine = _load(tiny_model_dir)
    tokenizer = engine._processor.tokenizer
    texts = [
        "Yes. The tissue shows irregular crowded glands. No. The tissue shows normal colon mucosa",
        "The image is consistent with carcinoma because the cells are pleomorphic and disorganized",
    ]
    rows = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    inputs = engine._encode([engine.prepare(im) for im in images[:2]])
    prompt_len = int(inputs["input_ids"].shape[1])
    budget = 30
    forced = LogitsProcessorList([ForceText(rows, prompt_len)])
    with torch.inference_mode():
        _, everything = explain_generate(engine._model, inputs, budget, extra={"logits_processor": forced})
        _, stopped = explain_generate(
            engine._model,
            inputs,
            budget,
            extra={"logits_processor": forced, "stopping_criteria": [SentenceStop(tokenizer, prompt_len)]},
        )
    full = tokenizer.batch_decode(everything, skip_special_tokens=True)
    short = tokenizer.batch_decode(stopped, skip_special_tokens=True)
    assert short[0].startswith("Yes. The tissue shows irregular crowded glands. No") and len(short[0]) < len(full[0])
    assert short[1] == full[1]  # no leading answer word: written to the budget
    assert [parse_generated(t) for t in short] == [parse_generated(t) for t in full]
    assert parse_generated(short[0]).explanation == "The tissue shows irregular crowded glands."


def test_static_cache_alone_never_compiles_and_a_compile_asks_for_its_mode() -> None:
    assert generate_kwargs(DecodeOptions()) == {}
    assert generate_kwargs(DecodeOptions(stop="sentence")) == {}
    assert generate_kwargs(DecodeOptions(cache="static")) == {"cache_implementation": "static", "disable_compile": True}
    kwargs = generate_kwargs(DecodeOptions(cache="static", compile="reduce-overhead"))
    assert kwargs["disable_compile"] is False and kwargs["cache_implementation"] == "static"
    assert (kwargs["compile_config"].mode, kwargs["compile_config"].dynamic) == ("reduce-overhead", False)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "died of SIGSEGV"),
        ("import sys; sys.exit('no CUDA graphs here')", "failed (exit 1): no CUDA graphs here"),
        ("import time; time.sleep(30)", "did not finish within 1 s"),
        ("print('canary ok')", ""),
    ],
)
def test_the_decode_canary_says_why_a_child_did_not_finish(code: str, expected: str) -> None:
    reason = decode_compile_canary("reduce-overhead", timeout_s=1.0 if "sleep" in code else 60.0,
                                   command=[sys.executable, "-c", code])  # fmt: skip
    assert reason.endswith(expected) if expected else reason == ""


@pytest.mark.slow
def test_the_canary_child_runs_the_combination_on_this_stack() -> None:
    # The child's own code, not a stand-in: a tiny Gemma 3 generating twice with a static cache and
    # a compiled decode step (the CPU rehearses with Inductor's C++ backend; the GPU runs the canary
    # in reduce-overhead mode, in `test_cuda_levers_give_the_eager_p_yes_on_the_gpu`).
    assert decode_compile_canary("default", "cpu") == ""


def test_loading_with_levers_logs_what_each_does(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from inference_service.engine.loader import load_engine

    settings = Settings(model_dir=str(tiny_model_dir), device="cpu", vision_sdpa_backend="math", pinned_staging=True)
    with caplog.at_level(logging.INFO, logger="inference_service.engine.loader"):
        engine = load_engine(settings)
    assert isinstance(engine, TransformersEngine)
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "fast_paths"]
    assert record.levers == {  # type: ignore[attr-defined]
        "vision_sdpa_backend": "on: math",
        "pinned_staging": "off: pinned staging needs CUDA",
    }
    assert record.max_p_yes_difference <= P_YES_TOLERANCE  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fast",
    [
        FastPaths(pinned_staging=True),
        FastPaths(vision=VisionOptions(sdpa_backend="cudnn")),
        FastPaths(vision=VisionOptions(sdpa_backend="efficient")),
        FastPaths(vision=VisionOptions(compile="reduce-overhead", compile_batch_sizes=(2, 4))),
        FastPaths(vision=VisionOptions(compile="default", compile_batch_sizes=(2, 4))),
        FastPaths(decode=DecodeOptions(cache="static", compile="reduce-overhead")),
    ],
    ids=["staging", "cudnn", "efficient", "vision-cuda-graphs", "vision-inductor", "decode-cuda-graphs"],
)
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_levers_give_the_eager_p_yes_on_the_gpu(tiny_model_dir: Path, fast: FastPaths) -> None:
    images = [synthetic_tile(seed=i) for i in range(4)]
    reference = _load(tiny_model_dir, device="cuda")
    expected = [r.p_yes for r in reference.predict(images, explain=True)]
    engine = _load(tiny_model_dir, fast, device="cuda")
    assert all(state.startswith("on") for state in engine.fast_paths.values()), engine.fast_paths
    for _ in range(2):  # the second batch replays what the first compiled or captured
        got = [r.p_yes for r in engine.predict(images, explain=True)]
        assert got == pytest.approx(expected, abs=P_YES_TOLERANCE)
    if fast.pinned_staging:
        assert engine.prepare(images[0]).pixel_values.is_cuda  # type: ignore[union-attr]
