"""`make bench-slide` runs end to end on a small generated slide (numbers printed, never asserted):
its options, the extraction table alone, and its quick mode on its own local stack."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_slide.py"
# The bench's stack in tests: away from the session's emulators (base + 23..90) and from a local
# stack at base + 100..199.
BENCH_PORT_BASE = int(os.environ.get("HEALER_TEST_PORT_BASE", "18000")) + 200
TINY = ["--width", "4096", "--height", "3072", "--tile-px", "224"]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healer_bench_slide", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    return bench


def test_bench_slide_options_default_to_the_real_size_and_quick_shortens_them() -> None:
    bench = _load()
    full = bench.parse_args([])
    assert (full.width, full.height) == (40_000, 30_000)
    assert full.tile_mpp == [1.0, 0.5] and full.processes == [1, 2] and full.e2e_tile_mpp == [1.0, 0.5]
    assert full.batch_size == 8 and full.predict_seconds == 10.0 and not full.no_stack and not full.no_uploads
    quick = bench.parse_args(["--quick"])
    assert (quick.width, quick.height) == (16_384, 12_288)
    assert quick.tile_mpp == [1.0] and quick.processes == [1] and quick.e2e_tile_mpp == [1.0]
    assert quick.predict_seconds == 3.0
    # What is given explicitly wins over --quick.
    mixed = bench.parse_args(["--quick", "--width", "8192", "--e2e-tile-mpp", "0.5", "--processes", "1", "2"])
    assert (mixed.width, mixed.height) == (8192, 12_288)
    assert mixed.e2e_tile_mpp == [0.5] and mixed.processes == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--width", "512"], "--width and --height must be at least 1024"),
        (["--e2e-tile-mpp", "0"], "--tile-mpp and --e2e-tile-mpp must be in (0, 16]"),
        (["--processes", "0"], "--processes must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be between 1 and 256"),
        (["--port-base", "80"], "--port-base must be between 1024 and 65400"),
        (["--tile-mpp", "nan-ish"], "invalid float value"),
    ],
)
def test_bench_slide_refuses_options_that_cannot_run(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load()
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_slide_extraction_generates_caches_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load()
    args = [*TINY, "--cache", str(tmp_path), "--processes", "1", "--tile-mpp", "1.0", "--no-stack", "--no-batching"]
    assert bench.main(args) == 0
    first = capsys.readouterr().out
    assert "generated in" in first and "tiles/s" in first
    assert "cores to feed a GPU at TILE_MPP 1: H200 (measured) 44 tiles/s" in first
    assert "L4 (projected) 5.5 tiles/s" in first
    assert "KB/tile" in first and "peak memory: service process" in first
    assert "end to end" not in first and "modelled GPU" not in first
    assert first.strip().splitlines()[-1].startswith("tiles_per_s_per_core=")
    assert len(list(tmp_path.glob("synthetic-4096x3072-v*.svs"))) == 1 and not list(tmp_path.glob("*.partial"))
    assert bench.main(args) == 0
    assert "(cached)" in capsys.readouterr().out  # the slide is generated once


def test_the_modelled_gpu_takes_the_measured_batch_times() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    import bench_slide_batching as modelled

    assert [modelled.h200_batch_ms(n) for n in (1, 8, 32, 64)] == pytest.approx([100.7, 200.3, 722.9, 1425.8])
    assert 200.3 < modelled.h200_batch_ms(16) < 722.9 and modelled.h200_batch_ms(128) > 1425.8
    assert modelled.l4_batch_ms(8) == 8 * 182.0


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.emulator
@pytest.mark.stack
@pytest.mark.timeout(900)
def test_bench_slide_quick_mode_runs_end_to_end_on_its_own_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load()
    home = tmp_path / "stack"
    env_before = dict(os.environ)
    argv = ["--quick", *TINY, "--cache", str(tmp_path), "--home", str(home), "--port-base", str(BENCH_PORT_BASE)]
    assert bench.main([*argv, "--predict-seconds", "1", "--batching-tiles", "16"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    # The extraction table; shard tiles against single images on the modelled GPUs; then the slide
    # through the stack, stage by stage, with its memory.
    assert "cores to feed a GPU at TILE_MPP 1" in out
    modelled = [line.split() for line in lines if line.startswith(("H200 (measured batch times)", "L4 (projected)"))]
    assert [(row[0], row[-7]) for row in modelled] == [("H200", "8"), ("H200", "32"), ("L4", "8"), ("L4", "32")]
    assert all(float(row[-1]) > 0 for row in modelled)
    assert f"ports {BENCH_PORT_BASE + 23}–{BENCH_PORT_BASE + 90}" in out
    stages = lines[lines.index(next(line for line in lines if line.startswith("TILE_MPP  tiles shards upload s"))) + 1]
    tile_mpp, tiles, shards = stages.split()[:3]
    assert (tile_mpp, shards) == ("1", "1") and int(tiles) > 0
    assert "slide service memory at TILE_MPP 1: peak" in out and "the 1024 MiB target" in out
    # The same tiles through /predict and as uploaded images, with the ratios.
    ratios = lines[lines.index(next(line for line in lines if "slide path tiles/s" in line)) + 1].split()
    assert ratios[0] == "1" and ratios[1] == tiles and len(ratios) == 7
    summary = dict(field.split("=") for field in lines[-1].split())
    assert {"tiles_per_s_per_core", "modelled_gpu_ratio_min", "e2e_s", "service_peak_mib", "slide_vs_predict"} <= set(
        summary
    )
    assert "slide_vs_uploads" in summary
    assert float(summary["e2e_s"]) > 0 and float(summary["slide_vs_predict"]) > 0
    # It cleaned up after itself: no process left on its ports, its home gone, the environment as it was.
    assert f"stack stopped and {home} removed" in out and not home.exists()
    ports = [BENCH_PORT_BASE + offset for offset in (23, 80, 81, 83, 85, 86)]
    deadline = time.monotonic() + 30  # an emulator's JVM may take a moment to let go of its port
    while any(_listening(port) for port in ports) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [port for port in ports if _listening(port)] == []
    assert dict(os.environ) == env_before
