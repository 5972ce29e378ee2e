"""The slide report's switch on the local stack: one SLIDE_REPORT_PATCHES for the slide service
(which chooses the tiles) and the inference service (which takes them), defaulting by model."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.stack import control
from healer.stack.config import LOCAL_REPORT_PATCHES, TINY_REPORT_PATCHES, StackConfig
from inference_service.engine.manifest import write_manifest
from inference_service.engine.tiny import TINY_MODEL_ID
from inference_service.settings import Settings
from slide_service.settings import SlideSettings


def _model(folder: Path, model_id: str) -> Path:
    folder.mkdir()
    write_manifest(folder, model_id, "rev", "test")
    return folder


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (None, TINY_REPORT_PATCHES),  # no MODEL_DIR: the tiny checkpoint the stack builds
        (TINY_MODEL_ID, TINY_REPORT_PATCHES),
        ("google/medgemma-1.5-4b-it", LOCAL_REPORT_PATCHES),  # a real model: a CPU report must stay short
    ],
)
def test_the_default_follows_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str | None, expected: int
) -> None:
    monkeypatch.delenv("SLIDE_REPORT_PATCHES", raising=False)
    model_dir = str(_model(tmp_path / "model", model)) if model else ""
    cfg = StackConfig(HEALER_HOME=tmp_path / "home", MODEL_DIR=model_dir)
    assert cfg.report_patches == expected
    assert cfg.stack_env()["SLIDE_REPORT_PATCHES"] == str(expected)
    assert (TINY_REPORT_PATCHES, LOCAL_REPORT_PATCHES) == (125, 8)


@pytest.mark.parametrize("patches", ["0", "32"])
def test_a_set_value_reaches_both_services_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patches: str) -> None:
    monkeypatch.setenv("SLIDE_REPORT_PATCHES", patches)
    cfg = StackConfig(HEALER_HOME=tmp_path / "home", MODEL_DIR=str(_model(tmp_path / "model", "google/medgemma-4b-it")))
    env = control._base_env(cfg)  # what every component of the stack is started with
    assert env["SLIDE_REPORT_PATCHES"] == patches
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert SlideSettings().slide_report_patches == Settings().slide_report_patches == int(patches)


def test_an_impossible_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIDE_REPORT_PATCHES", "257")
    with pytest.raises(ValueError, match="SLIDE_REPORT_PATCHES"):
        StackConfig()
