"""healer.model: token rules and describing a MODEL_DIR (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.model import ModelDownloadError, download, info, resolve_token
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


def test_missing_token_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MY_HF_TOKEN", raising=False)
    with pytest.raises(ModelDownloadError) as caught:
        download("google/medgemma-4b-it", tmp_path, token=None)
    message = str(caught.value)
    assert "HF_TOKEN" in message and "\n" not in message
    assert not any(tmp_path.iterdir())


def test_info_of_tiny_checkpoint(tiny_model_dir: Path) -> None:
    described = info(tiny_model_dir)
    assert described["present"] is True
    assert described["model_id"] == TINY_MODEL_ID
    assert described["dtype"] == "float32"
    assert described["architectures"] == ["Gemma3ForConditionalGeneration"]
    assert 0 < described["size_bytes"] < 5_000_000


def test_info_of_empty_dir(tmp_path: Path) -> None:
    assert info(tmp_path)["present"] is False
