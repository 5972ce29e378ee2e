"""The benchmark scripts import and their CPU-side logic runs (numbers are printed, never asserted)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"healer_bench_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_dry_run_builds_and_steps_every_path(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("bench_gpu")
    assert bench.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "healer verdict " in out and "healer verdict+explain(32)" in out
    assert "seed path skipped" in out  # no CUDA here
    # The service rows ran the real engine object on PIL images (not guarded into a skip line).
    assert "service rows not measured" not in out
    assert "service b=2, prep inline" in out and "service 4 imgs, " in out and " prep thr" in out
    # The slide report ran through the engine's own report_generate (not guarded into a skip line).
    assert "report rows not measured" not in out
    assert "report 3 patches" in out and "report 5 patches" in out and "tile engine b=2" in out
    assert "report: 5 patches, prompt 113 tokens, 4 new" in out  # 5 x (4 image tokens + 4) + 73


def test_bench_gpu_report_only_runs_just_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    bench = _load("bench_gpu")
    assert bench.main(["--dry-run", "--report-only"]) == 0
    out = capsys.readouterr().out
    assert "report 3 patches" in out and "report 5 patches" in out
    assert "healer verdict" not in out and "service b=" not in out and "seed path" not in out


def test_report_inputs_have_medgemma_shapes() -> None:
    pytest.importorskip("transformers")
    bench = _load("bench_gpu")
    s = bench.MEDGEMMA_4B
    inputs, pixels = bench.make_report_inputs(s, 125, "cpu", bench.torch.bfloat16)
    assert int(inputs["token_type_ids"].sum()) == 125 * 256
    assert inputs["input_ids"].shape == (1, 125 * (256 + 4) + 73)
    assert int((inputs["input_ids"] == s.boi_id).sum()) == int((inputs["input_ids"] == s.eoi_id).sum()) == 125
    assert pixels.shape == (125, 3, 896, 896) and pixels.dtype == bench.torch.bfloat16


@pytest.mark.parametrize("argv", [["--dry-run"], ["--dry-run", "--levers", "eager", "staging=on", "cache=static"]])
def test_bench_gpu_needs_nothing_a_bare_gpu_image_lacks(argv: list[str]) -> None:
    # GPU machines are often bare images (torch, transformers, Pillow): the script must not pull in
    # pydantic, FastAPI or the Google clients through the service's modules.
    probe = (
        "import runpy, sys; sys.argv = ['bench_gpu.py', *{!r}]\n"
        "try:\n    runpy.run_path({!r}, run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "needs = ('pydantic', 'fastapi', 'google.cloud.firestore', 'google.cloud.storage', 'google.cloud.pubsub')\n"
        "print(sorted(m for m in needs if m in sys.modules))"
    ).format(argv, str(SCRIPTS / "bench_gpu.py"))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_gpu_check_script_records_the_stack_and_the_run(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh"), "--dry-run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    stack = (tmp_path / "stack.txt").read_text()
    assert "torch" in stack and "transformers" in stack and "bitsandbytes" in stack
    bench = (tmp_path / "bench-gpu.txt").read_text()
    assert "healer verdict+explain(32)" in bench and "report 5 patches" in bench


def _lever_lines(out: str) -> dict[str, str]:
    """The machine-readable line of each lever: spec → the rest of its line."""
    rows: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("lever="):
            head, _, rest = line.partition(" ")
            rows[head.removeprefix("lever=")] = rest
    return rows


def test_bench_gpu_levers_measures_each_lever_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    bench = _load("bench_gpu")
    specs = ["sdpa=flash", "sdpa=cudnn", "patch=linear", "compile=default", "staging=on", "cache=static",
             "cache=static,decode-compile=reduce-overhead"]  # fmt: skip
    assert bench.main(["--dry-run", "--levers", *specs]) == 0
    out = capsys.readouterr().out
    rows = _lever_lines(out)
    assert list(rows) == ["eager", *specs]  # eager first: the reference of every other row
    # Each lever measures what it can change, next to the eager path's numbers.
    assert {"b2=", "b4=", "explain_b4=", "service_ratio=", "max_dp="} <= {
        f.split("=")[0] + "=" for f in rows["eager"].split()
    }
    for spec in ("sdpa=flash", "sdpa=cudnn", "patch=linear", "compile=default"):
        assert "b2=" in rows[spec] and "b4=" in rows[spec] and "max_dp=0.00e+00" in rows[spec]
        assert "explain_b4" not in rows[spec] and "service_ratio" not in rows[spec]
    assert "service_ratio=" in rows["staging=on"] and "b2=" not in rows["staging=on"]
    for spec in ("cache=static", "cache=static,decode-compile=reduce-overhead"):
        assert "explain_b4=" in rows[spec] and "b2=" not in rows[spec]
    # The table says what each lever did on this stack: on, or why it fell back (no CUDA here).
    table = out[out.index("\nlever ") :]
    assert "vision_sdpa_backend on: flash" in table and "vision_compile on: default at batch sizes 2,4" in table
    assert "vision_sdpa_backend off: cudnn attention needs CUDA" in table
    assert "pinned_staging off: pinned staging needs CUDA" in table
    assert (
        "explain_cache on: static" in table and "explain_compile off: the decode step is compiled on CUDA only" in table
    )


@pytest.mark.parametrize(
    ("spec", "why"),
    [("sdpa=flash3", "vision_sdpa_backend='flash3'"), ("stop=sentence", "random weights never end a sentence"),
     ("speed=max", "unknown lever 'speed'")],
)  # fmt: skip
def test_bench_gpu_levers_refuse_what_they_cannot_measure(
    spec: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    bench = _load("bench_gpu")
    assert bench.main(["--dry-run", "--levers", "eager", spec]) == 2
    out = capsys.readouterr().out
    assert why in out and "model built" not in out  # refused before minutes of building


def test_gpu_check_levers_runs_both_phases_in_their_own_processes(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh"), "levers", "--dry-run"], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "C compiler" in (tmp_path / "stack.txt").read_text()
    verdict = _lever_lines((tmp_path / "levers-verdict.txt").read_text())
    assert list(verdict)[:9] == [
        "eager",
        "sdpa=cudnn",
        "sdpa=flash",
        "compile=default",
        "staging=on",
        "patch=linear",
        "patch=channels-last",
        "sdpa=efficient",
        "compile=reduce-overhead",
    ]  # fmt: skip  ("combined" follows when a lever helped: timing on this CPU decides)
    explain = _lever_lines((tmp_path / "levers-explain.txt").read_text())
    assert list(explain) == [
        "eager",
        "cache=static",
        "cache=static,decode-compile=default",
        "cache=static,decode-compile=reduce-overhead",
    ]
    assert all("explain_b4=" in fields for fields in explain.values())


def test_bench_gpu_shapes_match_medgemma_4b() -> None:
    bench = _load("bench_gpu")
    config = bench.build_config(bench.MEDGEMMA_4B)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        2560,
        34,
        8,
        4,
    )
    assert (text.head_dim, text.intermediate_size, text.vocab_size, text.sliding_window) == (256, 10240, 262208, 1024)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (1152, 27, 896, 14)
    assert (config.image_token_id, config.boi_token_id, config.eoi_token_id, config.mm_tokens_per_image) == (
        262144,
        255999,
        256000,
        256,
    )
    inputs = bench.make_inputs(bench.MEDGEMMA_4B, 2, "cpu", bench.torch.float32)
    assert inputs["input_ids"].shape == (2, 319)
    assert int(inputs["token_type_ids"].sum()) == 2 * 256


def test_bench_http_counts_completions_errors_and_percentiles() -> None:
    """Its driver against a stand-in /predict that answers 200 and 500 in turn: the warm-up is
    not counted, failures are errors (not latencies), and the percentiles are ordered."""
    bench = _load("bench_http")
    answers = itertools.count()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                ok = next(answers) % 2 == 0
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cell = asyncio.run(bench._drive(url, [b"\x89PNG"], concurrency=2, seconds=0.5, warm=3))
    finally:
        server.shutdown()
    assert cell.concurrency == 2 and cell.completed > 0 and cell.errors > 0
    assert abs(cell.completed - cell.errors) <= 2  # every other answer failed
    assert 0 < cell.p50_ms <= cell.p95_ms
    assert cell.images_per_s == cell.completed / cell.seconds
