"""The engine on the tiny random Gemma 3 checkpoint, through real transformers (CPU)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

# transformers is a dependency of the project ([model] extra, `make venv`): a broken install must
# fail these tests, not skip them.
from inference_service.engine.base import Engine
from inference_service.engine.loader import (
    SelfTestError,
    load_engine,
    selftest,
    synthetic_tile,
    warmup,
    warmup_batch_sizes,
)
from inference_service.engine.medgemma import EngineConfigError, LoadOptions, TransformersEngine
from inference_service.engine.prompt import PROMPT_VERSION
from inference_service.engine.tiny import TINY_MODEL_ID, TINY_REVISION
from inference_service.settings import Settings
from tests.fakes import FakeEngine


def _noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(width * height * 3))
    return Image.frombytes("RGB", (width, height), data).convert(mode)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersEngine:
    loaded = load_engine(Settings(model_dir=str(tiny_model_dir), device="cpu"))
    assert isinstance(loaded, TransformersEngine)
    return loaded


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    # Mixed sizes, aspect ratios and modes: the processor resizes all of them to 224 px.
    return [
        _noise(64, 64, 1),
        _noise(300, 120, 2),
        _noise(31, 517, 3, "L"),
        synthetic_tile(256),
        _noise(900, 700, 5, "RGBA"),
    ]


def test_engine_satisfies_the_port_and_says_it_is_tiny(engine: TransformersEngine) -> None:
    assert isinstance(engine, Engine)
    info = engine.info
    assert info.model_id == TINY_MODEL_ID and "NOT MedGemma" in info.model_id
    assert info.model_revision == TINY_REVISION
    assert (info.quantization, info.prompt_version, info.device, info.dtype) == (
        "none",
        PROMPT_VERSION,
        "cpu",
        "float32",
    )


def test_verdict_fields(engine: TransformersEngine, images: list[Image.Image]) -> None:
    results = engine.predict(images, explain=False)
    assert len(results) == len(images)
    for result in results:
        assert result.answer in ("yes", "no", "indeterminate")
        assert result.p_yes is not None and math.isfinite(result.p_yes) and 0.0 <= result.p_yes <= 1.0
        assert result.explanation == ""
        assert result.inference_ms > 0
    # The (randomly initialised) image path is live: different images, different p_yes.
    assert len({round(r.p_yes or 0, 6) for r in results}) > 1


def test_batched_equals_single(engine: TransformersEngine, images: list[Image.Image]) -> None:
    batched = engine.predict(images, explain=False)
    for image, together in zip(images, batched, strict=True):
        (alone,) = engine.predict([image], explain=False)
        assert together.p_yes is not None and alone.p_yes is not None
        assert abs(together.p_yes - alone.p_yes) < 1e-3
        assert together.answer == alone.answer


def test_prepared_images_give_what_the_whole_processor_gives(
    engine: TransformersEngine, images: list[Image.Image]
) -> None:
    import torch

    from inference_service.engine.medgemma import p_yes_from_logits, verdict_logits

    # Reference: the processor over the whole batch, text and images together (no cached prompt).
    processor = engine._processor
    batch = processor(
        text=[engine._prompt] * len(images),
        images=[[im.convert("RGB")] for im in images],
        return_tensors="pt",
        padding=True,
    )
    with torch.inference_mode():
        reference = p_yes_from_logits(verdict_logits(engine._model, dict(batch)), engine._yes_ids, engine._no_ids)
    prepared = [engine.prepare(im) for im in images]
    mixed = [im if i % 2 else prepared[i] for i, im in enumerate(images)]  # raw and prepared together
    for items in (prepared, mixed):
        got = [r.p_yes for r in engine.predict(items, explain=False)]
        assert got == pytest.approx(reference, abs=1e-5)


def test_pan_and_scan_processors_take_the_whole_processor_path(tiny_model_dir: Path, images: list[Image.Image]) -> None:
    engine = load_engine(Settings(model_dir=str(tiny_model_dir), device="cpu"))
    assert isinstance(engine, TransformersEngine)
    fixed = [r.p_yes for r in engine.predict(images, explain=False)]
    engine._processor.image_processor.do_pan_and_scan = True
    scanning = TransformersEngine(engine._model, engine._processor, engine.info)
    assert scanning.prepare(images[2]).mode == "RGB"  # type: ignore[union-attr]  # only converted; the batch is processed whole
    # These images are too small to be cropped, so both paths must agree.
    assert [r.p_yes for r in scanning.predict(images, explain=False)] == pytest.approx(fixed, abs=1e-5)


def test_explain_gives_one_sentence_and_the_same_p_yes(engine: TransformersEngine, images: list[Image.Image]) -> None:
    plain = engine.predict(images[:3], explain=False)
    explained = engine.predict(images[:3], explain=True)
    for a, b in zip(plain, explained, strict=True):
        # generate()'s first step is the same prefill as the verdict-only forward pass.
        assert a.p_yes is not None and b.p_yes is not None and abs(a.p_yes - b.p_yes) < 1e-3
        assert b.explanation.strip()
        assert "\n" not in b.explanation
    assert engine.predict([], explain=True) == []


def test_explanations_suppress_the_thinking_opener(engine: TransformersEngine, images: list[Image.Image]) -> None:
    import torch

    from inference_service.engine.medgemma import explain_generate

    # The tiny vocabulary has MedGemma 1.5's `<unused94>`; the engine suppresses it while explaining.
    assert engine._suppress_ids == [engine._processor.tokenizer.convert_tokens_to_ids("<unused94>")]
    inputs = engine._encode([engine.prepare(images[0])])
    with torch.inference_mode():
        logits, free = explain_generate(engine._model, inputs, 8)
        banned = sorted({int(t) for t in free[0]})
        suppressed_logits, suppressed = explain_generate(engine._model, inputs, 8, banned)
    assert not {int(t) for t in suppressed[0]} & set(banned)  # none of what it wrote freely
    assert torch.equal(logits, suppressed_logits)  # p_yes reads the raw logits, before suppression


def test_deterministic_checkpoint(tiny_model_dir: Path, engine: TransformersEngine, tmp_path: Path) -> None:
    from inference_service.engine.tiny import build_tiny_checkpoint

    again = TransformersEngine.load(LoadOptions(model_dir=str(build_tiny_checkpoint(tmp_path / "again"))))
    image = synthetic_tile()
    assert again.predict([image], False)[0].p_yes == engine.predict([image], False)[0].p_yes
    manifest = json.loads((tiny_model_dir / "healer-model.json").read_text())
    assert manifest["model_id"] == TINY_MODEL_ID
    size = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert size < 5_000_000


def test_selftest_and_warmup(engine: TransformersEngine) -> None:
    result = selftest(engine)
    assert result.p_yes is not None and result.explanation
    timings = warmup(engine, warmup_batch_sizes(4), explain=(False, True))
    assert set(timings) == {"b1", "b1+explain", "b2", "b2+explain", "b4", "b4+explain"}


def test_selftest_rejects_nan_and_empty_explanation() -> None:
    with pytest.raises(SelfTestError):
        selftest(FakeEngine(p_yes=lambda _: math.nan))
    with pytest.raises(SelfTestError, match="explanation is empty"):
        selftest(FakeEngine(explanation=""))
    assert selftest(FakeEngine(explanation=""), explain=False).explanation == ""


def test_warmup_batch_sizes() -> None:
    assert warmup_batch_sizes(1) == [1]
    assert warmup_batch_sizes(8) == [1, 2, 4, 8]
    assert warmup_batch_sizes(12) == [1, 2, 4, 8, 12]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QUANTIZATION": "8bit", "DEVICE": "cpu"}, "needs a CUDA GPU"),
        ({"DEVICE": "cuda"}, "no CUDA device"),
    ],
)
def test_impossible_configurations_are_refused_clearly(tiny_model_dir: Path, env: dict[str, str], message: str) -> None:
    import torch

    if env.get("DEVICE") == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(EngineConfigError, match=message):
        load_engine(Settings.model_validate({"MODEL_DIR": str(tiny_model_dir), **env}))


def test_float16_is_refused_by_the_settings_and_by_the_engine_itself() -> None:
    # The service's settings refuse it at start-up (test_settings.py); the engine, which the GPU
    # bench builds without settings, refuses it too.
    from pydantic import ValidationError

    from inference_service.engine.medgemma import resolve_dtype

    with pytest.raises(ValidationError, match="DTYPE=float16 is refused"):
        Settings.model_validate({"DTYPE": "float16"})
    for name in ("float16", "fp16", "half"):
        with pytest.raises(EngineConfigError, match="float16 is refused"):
            resolve_dtype(name, "cpu")


def test_missing_model_dir_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError, match="healer model download"):
        load_engine(Settings(model_dir=str(tmp_path / "nothing"), device="cpu"))


def test_importing_the_engine_package_and_loader_does_not_import_torch() -> None:
    code = (
        "import sys, inference_service.engine.loader, inference_service.engine.prompt, "
        "inference_service.engine.slide_report, inference_service.batcher, inference_service.app; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
