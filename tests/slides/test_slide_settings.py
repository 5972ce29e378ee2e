"""The slide service's settings: documented defaults, and start-up refusals that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

from slide_service.settings import SlideSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in SlideSettings.model_fields.values():
        monkeypatch.delenv(str(field.validation_alias), raising=False)
    s = SlideSettings()
    assert (s.tile_mpp, s.tile_px, s.min_tissue, s.shard_tiles, s.slide_top_k) == (1.0, 896, 0.25, 64, 8)
    assert (s.tissue_mpp, s.assumed_mpp, s.max_slide_tiles, s.max_slide_bytes) == (8.0, 0.25, 20_000, 10**10)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILE_MPP", "0.5")
    monkeypatch.setenv("SHARD_TILES", "32")
    s = SlideSettings()
    assert (s.tile_mpp, s.shard_tiles) == (0.5, 32)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TILE_MPP": "0"}, "TILE_MPP"),
        ({"TILE_MPP": "-1"}, "TILE_MPP"),
        ({"SHARD_TILES": "0"}, "SHARD_TILES"),
        ({"SHARD_TILES": "5000"}, "SHARD_TILES"),
        ({"TILE_PX": "8"}, "TILE_PX"),
        ({"MIN_TISSUE": "0"}, "MIN_TISSUE"),
        ({"MIN_TISSUE": "1.5"}, "MIN_TISSUE"),
        ({"MAX_SLIDE_TILES": "0"}, "MAX_SLIDE_TILES"),
        ({"SLIDE_TOP_K": "0"}, "SLIDE_TOP_K"),
        ({"TILE_PX": "64", "TILE_MPP": "0.25"}, "TISSUE_MPP"),
        ({"THRESHOLD": "0.95", "INDETERMINATE_BAND": "0.1"}, "INDETERMINATE_BAND"),
    ],
)
def test_what_cannot_work_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        SlideSettings()
    assert named in str(info.value)


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, field in SlideSettings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):  # e.g. PROJECT_ID or GOOGLE_CLOUD_PROJECT: the first is documented
            alias = alias.choices[0]
        assert isinstance(alias, str), name
        assert f"`{alias}`" in readme, f"{alias} is not in README's configuration tables"
