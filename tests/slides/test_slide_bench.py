"""`make bench-slide` runs end to end on a small generated slide (numbers printed, never asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_slide.py"


def test_bench_slide_generates_caches_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("healer_bench_slide", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    args = [
        "--width",
        "4096",
        "--height",
        "3072",
        "--cache",
        str(tmp_path),
        "--tile-px",
        "224",
        "--processes",
        "1",
        "--tile-mpp",
        "1.0",
    ]
    assert bench.main(args) == 0
    first = capsys.readouterr().out
    assert "generated in" in first and "tiles/s" in first and "cores to feed a GPU" in first
    assert "peak memory: service process" in first and first.strip().splitlines()[-1].startswith(
        "tiles_per_s_per_core="
    )
    assert len(list(tmp_path.glob("synthetic-4096x3072-v*.svs"))) == 1 and not list(tmp_path.glob("*.partial"))
    assert bench.main(args) == 0
    assert "(cached)" in capsys.readouterr().out  # the slide is generated once
