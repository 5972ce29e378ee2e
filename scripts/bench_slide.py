"""`make bench-slide`: how fast the slide service turns a whole-slide image into tile shards, and
how much memory it needs to do it.

Generates (once; cached under .healer/bench/) a 40,000 x 30,000 px JPEG-tiled Aperio-style slide
from the sample tiles, then runs the slide service's own pipeline on it: open → tissue mask →
tile plan → every shard built (tiles read, resized, JPEG-encoded, packed), at each TILE_MPP and
with 1 and 2 processes. Each configuration runs in a fresh child process, so its peak resident
memory (the kernel's high-water mark, ru_maxrss) is its own. Shards are built and discarded:
this measures extraction, not uploads. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Measured verdict rates the tiles must keep up with (docs/BENCHMARKS.md): MedGemma-4B on an
# H200 at batch 32, and the projection for Cloud Run's NVIDIA L4.
GPU_RATES = {"H200 (measured)": 44.0, "L4 (projected)": 7.0}
MEMORY_TARGET_MIB = 1024.0


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: unlike wall time, it does not grow
    when other work shares the machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def sample_paths() -> list[Path]:
    """The real H&E tiles in ../shared/samples when present, else the ones the project ships."""
    for folder in (ROOT.parent / "shared" / "samples", ROOT / "samples"):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix in (".tif", ".png", ".jpg"))
            if any(p.name.startswith("tumor_") for p in found):
                return found
    raise SystemExit("no sample tiles found")


# --- child processes: one job each, one JSON line out ----------------------------------------


def child_generate(path: Path, width: int, height: int) -> dict[str, Any]:
    from slide_service import synth

    started = time.perf_counter()
    tmp = path.with_suffix(".partial")
    synth.write_slide(tmp, sample_paths(), width=width, height=height, mpp=0.25, quality=80)
    tmp.replace(path)  # a half-written cache never looks finished
    return {"seconds": time.perf_counter() - started, "peak_mib": _peak_mib(resource.RUSAGE_SELF)}


def child_tile(path: Path, tile_mpp: float, tile_px: int, processes: int, shard_tiles: int) -> dict[str, Any]:
    from slide_service.grid import plan_tiles
    from slide_service.open import SlideLimits, open_slide
    from slide_service.shards import iter_shards, parallel_shards
    from slide_service.tissue import detect_tissue

    marks = [time.perf_counter()]
    limits = SlideLimits()
    slide = open_slide(path, limits)
    marks.append(time.perf_counter())
    mask = detect_tissue(slide)
    marks.append(time.perf_counter())
    plan = plan_tiles(slide.info, mask, tile_px, tile_mpp, min_tissue=0.25, max_tiles=100_000)
    marks.append(time.perf_counter())
    job = "b" * 32
    cpu_before = _cpu_seconds()
    if processes == 1:
        blobs = iter_shards(slide, plan, job, shard_tiles, quality=90)
    else:
        blobs = parallel_shards(path, limits, plan, job, shard_tiles, 90, processes)
    shards = tiles = size = 0
    for blob in blobs:  # built and dropped, as an upload would drop them
        shards, tiles, size = shards + 1, tiles + len(blob.tiles), size + len(blob.data)
    marks.append(time.perf_counter())
    cpu = _cpu_seconds() - cpu_before  # workers have exited by now: their time is in RUSAGE_CHILDREN
    info = slide.info
    slide.close()
    return {
        "slide": {
            "width": info.width,
            "height": info.height,
            "mpp": info.mpp,
            "vendor": info.vendor,
            "levels": len(info.levels),
        },
        "tissue_fraction": mask.tissue_fraction,
        "level": plan.level,
        "size0": plan.size0,
        "tiles": tiles,
        "shards": shards,
        "shard_mb": size / shards / 1e6 if shards else 0.0,
        "seconds": {
            "open": marks[1] - marks[0],
            "tissue": marks[2] - marks[1],
            "plan": marks[3] - marks[2],
            "shards": marks[4] - marks[3],
        },
        "cpu_seconds": cpu,
        "peak_mib": _peak_mib(resource.RUSAGE_SELF),
        "worker_peak_mib": _peak_mib(resource.RUSAGE_CHILDREN) if processes > 1 else 0.0,
    }


def _run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=str(ROOT))
    if done.returncode != 0:
        raise SystemExit(f"bench child {args[0]} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the benchmark -----------------------------------------------------------------------------


def ensure_slide(cache: Path, width: int, height: int) -> tuple[Path, str]:
    from slide_service import synth

    path = cache / f"synthetic-{width}x{height}-v{synth.VERSION}.svs"
    if path.exists():
        return path, "cached"
    cache.mkdir(parents=True, exist_ok=True)
    made = _run_child("_generate", str(path), str(width), str(height))
    return path, f"generated in {made['seconds']:.0f} s, generator peak RSS {made['peak_mib']:.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=40_000)
    parser.add_argument("--height", type=int, default=30_000)
    parser.add_argument("--cache", type=Path, default=ROOT / ".healer" / "bench")
    parser.add_argument("--tile-mpp", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--tile-px", type=int, default=896)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-tiles", type=int, default=64)
    args = parser.parse_args(argv)

    slide, how = ensure_slide(args.cache, args.width, args.height)
    print(
        f"slide: {args.width} x {args.height} px at 0.25 µm/px, JPEG q80 256-px tiles, "
        f"{slide.stat().st_size / 1e6:.0f} MB ({how})"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(a shared machine: numbers move with its load)"
    )
    header = (
        f"{'TILE_MPP':>8} {'procs':>5} {'tiles':>6} {'shards':>6} {'open s':>7} {'tissue s':>8} "
        f"{'shards s':>8} {'tiles/s':>8} {'/core':>6} {'/cpu-s':>6} {'service MiB':>11} {'worker MiB':>10}"
    )
    print(header)
    rows: list[dict[str, Any]] = []
    for tile_mpp in args.tile_mpp:
        for procs in args.processes:
            r = _run_child("_tile", str(slide), str(tile_mpp), str(args.tile_px), str(procs), str(args.shard_tiles))
            rate = r["tiles"] / r["seconds"]["shards"] if r["seconds"]["shards"] > 0 else 0.0
            per_cpu = r["tiles"] / r["cpu_seconds"] if r["cpu_seconds"] > 0 else 0.0
            r.update(tile_mpp=tile_mpp, processes=procs, tiles_per_s=rate, per_core=rate / procs, per_cpu=per_cpu)
            rows.append(r)
            worker = f"{r['worker_peak_mib']:.0f}" if procs > 1 else "-"
            print(
                f"{tile_mpp:>8g} {procs:>5} {r['tiles']:>6} {r['shards']:>6} {r['seconds']['open']:>7.2f} "
                f"{r['seconds']['tissue']:>8.2f} {r['seconds']['shards']:>8.1f} {rate:>8.1f} "
                f"{rate / procs:>6.1f} {per_cpu:>6.1f} {r['peak_mib']:>11.0f} {worker:>10}"
            )
    first = rows[0]
    print(
        f"tissue: {first['tissue_fraction']:.1%} of the slide; shards of {args.shard_tiles} tiles "
        f"≈ {first['shard_mb']:.1f} MB at TILE_MPP {first['tile_mpp']:g}"
    )
    print("tiles/s is wall time (what this machine gave, shared with whatever else runs); /cpu-s is tiles per")
    print("CPU-second of the service and its workers (what one dedicated core does)")
    for tile_mpp in args.tile_mpp:
        single = next((r for r in rows if r["tile_mpp"] == tile_mpp and r["processes"] == 1), None)
        if single is None or single["per_cpu"] <= 0 or single["per_core"] <= 0:
            continue
        needs = ", ".join(
            f"{name} {rate:g} tiles/s: {rate / single['per_cpu']:.1f} dedicated cores"
            f" ({rate / single['per_core']:.1f} at this machine's wall rate)"
            for name, rate in GPU_RATES.items()
        )
        print(f"cores to feed a GPU at TILE_MPP {tile_mpp:g}: {needs}")
    worst = max(r["peak_mib"] + r["processes"] * r["worker_peak_mib"] for r in rows)
    verdict = "under" if worst < MEMORY_TARGET_MIB else "OVER"
    print(
        f"peak memory: service process ≤ {max(r['peak_mib'] for r in rows):.0f} MiB; with workers ≤ {worst:.0f} MiB "
        f"({verdict} the {MEMORY_TARGET_MIB:.0f} MiB target)"
    )
    print(
        f"tiles_per_s_per_core={rows[0]['per_core']:.2f} tiles_per_cpu_s={rows[0]['per_cpu']:.2f} "
        f"peak_rss_mib={worst:.0f}"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_generate":
        print(json.dumps(child_generate(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_tile":
        a = sys.argv[2:]
        print(json.dumps(child_tile(Path(a[0]), float(a[1]), int(a[2]), int(a[3]), int(a[4]))))
    else:
        sys.exit(main())
