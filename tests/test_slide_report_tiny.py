"""The slide report on the tiny random Gemma 3 checkpoint: one multi-image prompt through the real
processor and model, the vision tower in chunks (CPU, float32, greedy)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("transformers")

import torch

from inference_service.engine.loader import load_engine, synthetic_tile
from inference_service.engine.medgemma import EngineConfigError, TransformersEngine, report_generate
from inference_service.engine.prompt import REPORT_PROMPT_TEXT, REPORT_PROMPT_VERSION, clean_report
from inference_service.engine.slide_report import SlideReporter
from inference_service.engine.tiny import TINY_IMAGE_SEQ_LENGTH, TINY_MODEL_ID, TINY_REVISION
from inference_service.settings import Settings

NEW_TOKENS = 12


def _noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(width * height * 3))
    return Image.frombytes("RGB", (width, height), data).convert(mode)


@pytest.fixture(scope="module")
def patches() -> list[Image.Image]:
    # Seven tiles, as a slide's shards hold them (and a few odd ones: grey, RGBA, not square).
    return [synthetic_tile(224, seed=i) for i in range(4)] + [
        _noise(224, 224, 5, "L"),
        _noise(300, 200, 6, "RGBA"),
        _noise(224, 224, 7),
    ]


def _engine(model_dir: Path, vision_chunk: int) -> TransformersEngine:
    settings = Settings.model_validate(
        {
            "MODEL_DIR": str(model_dir),
            "DEVICE": "cpu",
            "MAX_BATCH_SIZE": vision_chunk,
            "SLIDE_REPORT_MAX_NEW_TOKENS": NEW_TOKENS,
        }
    )
    engine = load_engine(settings)
    assert isinstance(engine, TransformersEngine)
    return engine


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersEngine:
    return _engine(tiny_model_dir, vision_chunk=2)


class TowerCalls:
    """Records the batch size of every call of the vision tower (a forward hook, removed on exit)."""

    def __init__(self, engine: TransformersEngine) -> None:
        self.sizes: list[int] = []
        self._tower = engine._model.model.vision_tower

    def __enter__(self) -> TowerCalls:
        self._handle = self._tower.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def _record(self, _module: Any, _args: tuple[Any, ...], output: Any) -> None:
        self.sizes.append(int(output.last_hidden_state.shape[0]))


def _reference_tokens(engine: TransformersEngine, patches: list[Image.Image]) -> torch.Tensor:
    """The same prompt the unchunked way: the processor over text and images, and the model's own
    `generate` with `pixel_values` (the tower over all images in one call)."""
    processor = engine._processor
    content = [{"type": "text", "text": REPORT_PROMPT_TEXT}, *({"type": "image"} for _ in patches)]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    batch = processor(text=[prompt], images=[[im.convert("RGB") for im in patches]], return_tensors="pt")
    image_id = engine._model.config.image_token_id
    assert int((batch["input_ids"] == image_id).sum()) == len(patches) * TINY_IMAGE_SEQ_LENGTH
    assert int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<start_of_image>")).sum()) == len(
        patches
    )
    with torch.inference_mode():
        out = engine._model.generate(
            **batch,
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            top_p=None,
            top_k=None,
            suppress_tokens=engine._suppress_ids,
        )
    return out[0, batch["input_ids"].shape[1] :]


def test_the_engine_is_a_slide_reporter_with_provenance(engine: TransformersEngine, patches: list[Image.Image]) -> None:
    assert isinstance(engine, SlideReporter)
    report = engine.report_slide(patches)
    assert (report.model_id, report.model_revision, report.prompt_version) == (
        TINY_MODEL_ID,
        TINY_REVISION,
        REPORT_PROMPT_VERSION,
    )
    assert report.patches == len(patches)
    assert 0 < report.new_tokens <= NEW_TOKENS
    assert report.text and report.text == clean_report(report.text)
    assert report.inference_ms > 0


def test_multi_image_prompt_gives_what_the_model_gives_unchunked(
    engine: TransformersEngine, patches: list[Image.Image]
) -> None:
    reference = _reference_tokens(engine, patches)
    with TowerCalls(engine) as tower:
        report = engine.report_slide(patches)
    assert tower.sizes == [2, 2, 2, 1]  # vision_chunk = MAX_BATCH_SIZE = 2, never more
    expected = clean_report(engine._processor.decode(reference, skip_special_tokens=True))
    assert report.text == expected
    assert report.new_tokens == reference.numel()


def test_chunked_and_unchunked_reports_are_the_same(tiny_model_dir: Path, patches: list[Image.Image]) -> None:
    whole = _engine(tiny_model_dir, vision_chunk=len(patches))
    with TowerCalls(whole) as tower:
        unchunked = whole.report_slide(patches)
    assert tower.sizes == [len(patches)]
    for chunk in (1, 3):
        chunked = _engine(tiny_model_dir, vision_chunk=chunk).report_slide(patches)
        assert (chunked.text, chunked.new_tokens) == (unchunked.text, unchunked.new_tokens)


def test_report_generate_chunks_match_the_tower_in_one_call(
    engine: TransformersEngine, patches: list[Image.Image]
) -> None:
    from inference_service.engine.medgemma import image_features

    pixels = torch.cat([engine.prepare(im).pixel_values for im in patches])  # type: ignore[union-attr]
    with torch.inference_mode():
        together = engine._model.get_image_features(pixels).pooler_output
        parts = torch.cat(list(image_features(engine._model, (pixels[i : i + 3] for i in range(0, len(patches), 3)))))
    assert parts.shape == (len(patches), TINY_IMAGE_SEQ_LENGTH, engine._model.config.text_config.hidden_size)
    assert torch.allclose(parts, together, atol=1e-5)


def test_pan_and_scan_processors_take_the_whole_processor_path(
    tiny_model_dir: Path, patches: list[Image.Image]
) -> None:
    plain = _engine(tiny_model_dir, vision_chunk=3)
    expected = plain.report_slide(patches)
    plain._processor.image_processor.do_pan_and_scan = True
    scanning = TransformersEngine(
        plain._model, plain._processor, plain.info, vision_chunk=3, report_max_new_tokens=NEW_TOKENS
    )
    # These tiles are too small to be cropped, so both paths build the same prompt.
    got = scanning.report_slide(patches)
    assert (got.text, got.new_tokens) == (expected.text, expected.new_tokens)


def test_max_new_tokens_bounds_the_report(engine: TransformersEngine, patches: list[Image.Image]) -> None:
    assert engine.report_slide(patches[:2], max_new_tokens=3).new_tokens <= 3


def test_no_patches_is_an_error(engine: TransformersEngine) -> None:
    with pytest.raises(ValueError, match="at least one patch"):
        engine.report_slide([])


def test_thinking_is_suppressed_in_generation(engine: TransformersEngine, patches: list[Image.Image]) -> None:
    # The tiny vocabulary has MedGemma 1.5's `<unused94>`: the engine looks it up and suppresses it.
    tokenizer = engine._processor.tokenizer
    assert engine._suppress_ids == [tokenizer.convert_tokens_to_ids("<unused94>")]

    def run(suppress: list[int]) -> list[int]:
        text = engine._processor(
            text=[
                engine._processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "text", "text": REPORT_PROMPT_TEXT}, {"type": "image"}]}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
            ],
            images=[[patches[0]]],
            return_tensors="pt",
        )
        chunks: Iterator[torch.Tensor] = iter([text["pixel_values"]])
        with torch.inference_mode():
            out = report_generate(
                engine._model,
                input_ids=text["input_ids"],
                attention_mask=text["attention_mask"],
                token_type_ids=text["token_type_ids"],
                pixel_chunks=chunks,
                max_new_tokens=NEW_TOKENS,
                suppress_tokens=suppress,
            )
        return [int(t) for t in out[0]]

    free = run([])
    # Whatever the model would write, suppressing those tokens makes it write none of them.
    assert not set(run(sorted(set(free)))) & set(free)


def test_a_thinking_trace_never_reaches_the_report(engine: TransformersEngine) -> None:
    # Through the real tokenizer: the markers are ordinary tokens (they survive skip_special_tokens).
    tokenizer = engine._processor.tokenizer
    ids = tokenizer.encode(
        "<unused94>thought\n1. Identify the tissue.<unused95>The tissue shows normal colon mucosa.",
        add_special_tokens=False,
    )
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert "<unused94>" in decoded
    assert clean_report(decoded) == "The tissue shows normal colon mucosa."
    unclosed = tokenizer.encode("<unused94>thought\nThe tissue", add_special_tokens=False)
    assert clean_report(tokenizer.decode(unclosed, skip_special_tokens=True)) == ""


def test_a_checkpoint_without_thinking_markers_suppresses_nothing(engine: TransformersEngine) -> None:
    from inference_service.engine.medgemma import thinking_token_ids

    class NoMarkers:
        unk_token_id = 3

        def convert_tokens_to_ids(self, token: str) -> int:
            return 3

    assert thinking_token_ids(NoMarkers()) == []
    assert thinking_token_ids(engine._processor.tokenizer) == engine._suppress_ids


def test_a_transformers_without_pre_encoded_images_is_refused_clearly() -> None:
    class OlderModel:  # what transformers < 5.18 offers: no `_supports_mm_encoder_outputs`
        pass

    ids = torch.zeros((1, 4), dtype=torch.long)
    with pytest.raises(EngineConfigError, match=r"transformers >= 5\.18"):
        report_generate(
            OlderModel(), input_ids=ids, attention_mask=ids, token_type_ids=ids, pixel_chunks=[], max_new_tokens=1
        )
