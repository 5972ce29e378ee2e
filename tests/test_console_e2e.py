"""The review console in a real browser, on the whole local stack.

Headless Debian Chromium, driven by playwright-core (console/web/e2e/upload.mjs), uploads two
sample tiles and one hostile file through the page, waits for their verdicts in the live list,
opens one, and saves the list and detail screenshots used by docs/CONSOLE.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from healer.stack.config import StackConfig
from healer_core.schema import ERROR_DESCRIPTIONS, ErrorCode
from tests.browser import SCREENSHOTS, ensure_chromium, ensure_frontend, run_e2e

pytestmark = pytest.mark.slow


def _pick_samples(paths: list[Path]) -> list[Path]:
    """A tumour tile and a normal one when the samples have them, else the first two."""
    tumour = next((p for p in paths if "tumor" in p.name), None)
    normal = next((p for p in paths if "normal" in p.name or "mucosa" in p.name), None)
    picked = [p for p in (tumour, normal) if p is not None]
    return picked if len(picked) == 2 else paths[:2]


def test_upload_two_images_and_review_them(stack_cfg: StackConfig, sample_paths: list[Path], tmp_path: Path) -> None:
    chromium = ensure_chromium()
    ensure_frontend()
    images = _pick_samples(sample_paths)
    assert len(images) == 2
    hostile = tmp_path / "not-a-slide.png"
    hostile.write_bytes(b"%PDF-1.7\n% a document renamed to .png\n")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url = f"http://{stack_cfg.host}:{stack_cfg.console_port}"

    result = run_e2e(
        "upload.mjs",
        *("--url", url, "--out", str(SCREENSHOTS), "--chromium", str(chromium)),
        *("--hostile", str(hostile), "--timeout", "240", *map(str, images)),
    )

    assert [row["file"] for row in result["rows"]] == [p.name for p in images]
    for row in result["rows"]:
        assert row["state"] == "done"
        assert row["answer"] in {"Suspicious", "Not suspicious", "Indeterminate"}
    assert result["hostile"] == ERROR_DESCRIPTIONS[ErrorCode.NOT_AN_IMAGE]
    detail = result["detail"]
    assert detail["url"].endswith(f"/jobs/{result['rows'][0]['job_id']}")
    assert 0 < max(detail["preview"]) <= 512
    assert detail["history"] >= 3  # created, published, leased, done
    for name in ("console-list.png", "console-detail.png"):
        with Image.open(SCREENSHOTS / name) as shot:
            assert shot.format == "PNG" and shot.width >= 1200
