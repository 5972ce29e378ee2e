"""`make bench`: images/s and latency through the real HTTP service, batching off versus on.

Starts `uvicorn --factory inference_service.app:create_app` twice on the tiny checkpoint (or any
MODEL_DIR): once with MAX_BATCH_SIZE=1 (batching off), once with batching on; drives `POST /predict`
at concurrency 1, 8 and 32 for a fixed time each; prints a side-by-side table. The last line is
`ratio=<batched/unbatched images/s at concurrency 32>`. It prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference_service.engine.loader import synthetic_tile  # noqa: E402  (PIL only, no torch)


@dataclass(frozen=True)
class Cell:
    """One measurement: a service configuration at one client concurrency."""

    concurrency: int
    completed: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float

    @property
    def images_per_s(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _png(seed: int, size: int) -> bytes:
    buf = io.BytesIO()
    synthetic_tile(size, seed=seed).save(buf, format="PNG")
    return buf.getvalue()


class Service:
    """The real service under uvicorn in a child process, configured through its environment."""

    def __init__(self, app: str, env: dict[str, str], log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("w")
        cmd = [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=self._log, stderr=self._log)
        self.log_path = log_path

    def wait_ready(self, timeout_s: float) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"service not ready after {timeout_s:.0f}s; see {self.log_path}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


async def _drive(url: str, images: list[bytes], concurrency: int, seconds: float, warm: int) -> Cell:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(i: int) -> float | None:
            files = {"image_file": (f"tile-{i}.png", images[i % len(images)], "image/png")}
            start = time.perf_counter()
            response = await client.post("/predict", files=files)
            return (time.perf_counter() - start) * 1000.0 if response.status_code == 200 else None

        await asyncio.gather(*(one(i) for i in range(warm)))  # connections open, caches warm
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.perf_counter() < deadline:
                latency = await one(i)
                if latency is None:
                    errors += 1
                else:
                    latencies.append(latency)
                i += concurrency

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    ordered = sorted(latencies) or [0.0]
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Cell(concurrency, len(latencies), errors, elapsed, statistics.median(ordered), p95)


def run_mode(args: argparse.Namespace, name: str, batch_size: int, images: list[bytes]) -> list[Cell]:
    """Start the service with one batching configuration and measure every concurrency level."""
    env = {
        "MODEL_DIR": str(args.model_dir),
        "MAX_BATCH_SIZE": str(batch_size),
        "BATCH_WINDOW_MS": str(args.window_ms if batch_size > 1 else 0),
        "MAX_QUEUE": str(max(args.concurrency) * 4),
        "EXPLAIN": "true" if args.explain else "false",
        "WARMUP": "true",
        "DEVICE": args.device,
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    log_dir = ROOT / ".healer" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    service = Service(args.app, env, log_dir / f"bench-{name}.log")
    try:
        ready_s = service.wait_ready(args.ready_timeout)
        print(f"# {name}: MAX_BATCH_SIZE={batch_size}, ready in {ready_s:.1f}s", flush=True)
        cells = []
        for concurrency in args.concurrency:
            cell = asyncio.run(_drive(service.url, images, concurrency, args.seconds, warm=concurrency))
            print(
                f"#   c={concurrency:<3} {cell.images_per_s:8.2f} img/s  p50 {cell.p50_ms:8.1f} ms  "
                f"p95 {cell.p95_ms:8.1f} ms  ({cell.completed} ok, {cell.errors} errors)",
                flush=True,
            )
            cells.append(cell)
        return cells
    finally:
        service.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; the last line is `ratio=...`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", ".healer/models/tiny")))
    parser.add_argument("--app", default="inference_service.app:create_app")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per concurrency level")
    parser.add_argument("--batch-size", type=int, default=32, help="MAX_BATCH_SIZE when batching is on")
    parser.add_argument("--window-ms", type=float, default=5.0, help="BATCH_WINDOW_MS when batching is on")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--explain", action="store_true", help="also generate explanations (EXPLAIN=true)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    if not (args.model_dir / "config.json").is_file():
        from inference_service.engine.tiny import build_tiny_checkpoint

        print(f"# building the tiny checkpoint in {args.model_dir}", flush=True)
        build_tiny_checkpoint(args.model_dir)
    images = [_png(seed, args.image_size) for seed in range(16)]
    print(
        f"# machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}; "
        f"model {args.model_dir}; explain={args.explain}; {args.seconds:.0f}s per cell",
        flush=True,
    )
    off = run_mode(args, "batching-off", 1, images)
    on = run_mode(args, "batching-on", args.batch_size, images)

    print()
    on_title = f"batching on (max {args.batch_size})"
    print(f"{'concurrency':>11} | {'batching off':^32} | {on_title:^32} | speed-up")
    print(f"{'':>11} | {'img/s':>8} {'p50 ms':>10} {'p95 ms':>11} | {'img/s':>8} {'p50 ms':>10} {'p95 ms':>11} |")
    for a, b in zip(off, on, strict=True):
        speedup = b.images_per_s / a.images_per_s if a.images_per_s else float("nan")
        print(
            f"{a.concurrency:>11} | {a.images_per_s:8.2f} {a.p50_ms:10.1f} {a.p95_ms:11.1f} | "
            f"{b.images_per_s:8.2f} {b.p50_ms:10.1f} {b.p95_ms:11.1f} | {speedup:6.2f}x"
        )
    last_off = next((c for c in off if c.concurrency == 32), off[-1])
    last_on = next((c for c in on if c.concurrency == 32), on[-1])
    ratio = last_on.images_per_s / last_off.images_per_s if last_off.images_per_s else float("nan")
    print(f"ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
