"""healer.model: token rules and describing a MODEL_DIR (no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from healer.model import DEFAULT_MODEL_ID, ModelDownloadError, download, info, resolve_token, verify_model_dir
from inference_service.engine.tiny import TINY_MODEL_ID


def test_token_from_argument_then_hf_token_then_seed_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MY_HF_TOKEN", raising=False)
    assert resolve_token(None) is None
    monkeypatch.setenv("MY_HF_TOKEN", "seed")
    assert resolve_token(None) == "seed"
    monkeypatch.setenv("HF_TOKEN", "hf")
    assert resolve_token(None) == "hf"
    assert resolve_token("given") == "given"


@pytest.mark.parametrize("model_id", [DEFAULT_MODEL_ID, "google/medgemma-4b-it"])
def test_missing_token_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_id: str) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MY_HF_TOKEN", raising=False)
    with pytest.raises(ModelDownloadError) as caught:
        download(model_id, tmp_path, token=None)
    message = str(caught.value)
    assert "HF_TOKEN" in message and "\n" not in message
    assert f"https://huggingface.co/{model_id}" in message  # the page whose terms to accept
    assert not any(tmp_path.iterdir())


def test_default_model_is_medgemma_1_5() -> None:
    from inference_service.settings import Settings

    assert DEFAULT_MODEL_ID == "google/medgemma-1.5-4b-it" == Settings().model_id


def test_a_downloaded_image_text_gemma_3_passes_the_check(tiny_model_dir: Path) -> None:
    verify_model_dir(tiny_model_dir, "healer/tiny")


def test_a_text_only_or_incomplete_snapshot_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    text_only = tmp_path / "text-only"
    shutil.copytree(tiny_model_dir, text_only)
    (text_only / "config.json").write_text(json.dumps({"architectures": ["Gemma3ForCausalLM"]}))
    with pytest.raises(ModelDownloadError, match="Gemma3ForCausalLM, not an image-text Gemma 3") as caught:
        verify_model_dir(text_only, "google/medgemma-27b-text-it")
    assert "google/medgemma-1.5-4b-it" in str(caught.value) and "\n" not in str(caught.value)
    no_processor = tmp_path / "no-processor"
    shutil.copytree(tiny_model_dir, no_processor)
    (no_processor / "processor_config.json").unlink()  # transformers 5 keeps the image processor's config there
    with pytest.raises(ModelDownloadError, match=r"preprocessor_config\.json or processor_config\.json"):
        verify_model_dir(no_processor)
    with pytest.raises(ModelDownloadError, match=r"no readable config\.json"):
        verify_model_dir(tmp_path / "empty")


def test_info_of_tiny_checkpoint(tiny_model_dir: Path) -> None:
    described = info(tiny_model_dir)
    assert described["present"] is True
    assert described["model_id"] == TINY_MODEL_ID
    assert described["dtype"] == "float32"
    assert described["architectures"] == ["Gemma3ForConditionalGeneration"]
    assert (described["image_size"], described["image_tokens"]) == (224, 16)  # MedGemma: 896 px, 256
    assert 0 < described["size_bytes"] < 5_000_000


def test_info_of_empty_dir(tmp_path: Path) -> None:
    assert info(tmp_path)["present"] is False
