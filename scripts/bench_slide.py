"""`make bench-slide`: how fast the slide service turns a whole-slide image into tile shards, how
much memory it needs, how long the slide takes end to end on the local stack, and what scoring
tiles through shards costs against scoring the same tiles as single images.

1. Extraction. Generates (once; cached under .healer/bench/) a 40,000 x 30,000 px JPEG-tiled
   Aperio-style slide from the sample tiles, then runs the slide service's own pipeline on it:
   open → tissue mask → tile plan → every shard built (tiles read, resized, JPEG-encoded, packed),
   at each TILE_MPP and with 1 and 2 processes. Each configuration runs in a fresh child process,
   so its peak resident memory (the kernel's high-water mark, ru_maxrss) is its own. Shards are
   built and discarded: this measures extraction, not uploads. From the per-CPU-second rate: the
   cores that feed an H200 (measured) and an L4 (projected).
2. Batching (unless --no-batching). Shard tiles against single images through the inference
   service's own Inference, MicroBatcher and TileScorer, with an engine that takes a GPU's time
   (the H200's measured batch times, the L4's projected ones): how full the batches of each path
   are, which the tiny model on a CPU cannot show (scripts/bench_slide_batching.py).
3. End to end (unless --no-stack). The bench's own local stack (its own HEALER_HOME and ports;
   stopped and removed afterwards) with the tiny model: the slide uploaded to the inbox and
   followed to its verdict, stage by stage from its job document (tiling, scoring, finalizing),
   the slide service's memory sampled meanwhile; then the slide's own tiles, taken from its
   shards, through the same inference service as single images: POST /predict at 2 x
   MAX_BATCH_SIZE concurrency, and uploaded to the inbox as image jobs. The ratios say what the
   slide path costs per tile against the image path at the same MAX_BATCH_SIZE.

Prints numbers; asserts nothing. `--quick` is a smaller run (a 16k x 12k slide, one
configuration, fewer modelled tiles, TILE_MPP 1.0 end to end); any option given explicitly
overrides it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_slide_stack import StackResult

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_slide_stack, the end-to-end half

# Verdict rates the tiles must keep up with (docs/BENCHMARKS.md): MedGemma-4B on an H200 at
# batch 32 (measured), and Cloud Run's NVIDIA L4 (projected from the H200's stages: ≈ 5.5/s).
GPU_RATES = {"H200 (measured)": 44.0, "L4 (projected)": 5.5}
MEMORY_TARGET_MIB = 1024.0
# The target: the slide path scores at least this share of the image path's tiles/s.
OVERHEAD_TARGET = 0.80
FULL_SIZE = (40_000, 30_000)
QUICK_SIZE = (16_384, 12_288)  # the demo's slide


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: unlike wall time, it does not grow
    when other work shares the machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def sample_paths() -> list[Path]:
    """The real H&E tiles the project ships in samples/ (tumor_* and normal_*, samples/README.md)."""
    found = sorted(p for p in (ROOT / "samples").iterdir() if p.suffix in (".tif", ".png", ".jpg"))
    if not any(p.name.startswith("tumor_") for p in found):
        raise SystemExit("no tumor_* sample tiles in samples/")
    return found


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
        "tile_kb": size / tiles / 1e3 if tiles else 0.0,
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with `--quick`'s smaller defaults filled in where no value was given."""
    # Imported here, not at the top: the extraction children run this file too, and the Google
    # clients the end-to-end half imports would add their memory to the peak they measure.
    import bench_slide_stack as stack

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run: 16k x 12k slide, one configuration")
    parser.add_argument("--width", type=int, help=f"slide width in px (default {FULL_SIZE[0]}; quick {QUICK_SIZE[0]})")
    parser.add_argument(
        "--height", type=int, help=f"slide height in px (default {FULL_SIZE[1]}; quick {QUICK_SIZE[1]})"
    )
    parser.add_argument(
        "--cache", type=Path, default=ROOT / ".healer" / "bench", help="where generated slides are kept"
    )
    parser.add_argument("--tile-mpp", type=float, nargs="+", help="extraction: TILE_MPP values (default 1.0 0.5)")
    parser.add_argument("--tile-px", type=int, default=896)
    parser.add_argument("--processes", type=int, nargs="+", help="extraction: process counts (default 1 2)")
    parser.add_argument("--shard-tiles", type=int, default=64)
    parser.add_argument("--no-stack", action="store_true", help="extraction only: no local stack, no end to end")
    parser.add_argument("--e2e-tile-mpp", type=float, nargs="+", help="end to end: TILE_MPP values (default 1.0 0.5)")
    parser.add_argument("--batch-size", type=int, default=8, help="the inference service's MAX_BATCH_SIZE (default 8)")
    parser.add_argument("--predict-seconds", type=float, help="seconds of /predict per TILE_MPP (default 10; quick 3)")
    parser.add_argument("--no-uploads", action="store_true", help="skip the tiles uploaded as single images")
    parser.add_argument("--no-batching", action="store_true", help="skip the batching on a modelled GPU")
    parser.add_argument(
        "--batching-tiles", type=int, help="tiles per path on the modelled H200 (default 256; quick 64; L4: a fifth)"
    )
    parser.add_argument("--port-base", type=int, default=stack.DEFAULT_PORT_BASE, help="the bench stack's ports")
    parser.add_argument("--home", type=Path, default=ROOT / ".healer" / "bench" / "stack", help="its HEALER_HOME")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for a slide's verdict")
    args = parser.parse_args(argv)
    quick = args.quick
    width, height = QUICK_SIZE if quick else FULL_SIZE
    args.width = args.width or width
    args.height = args.height or height
    args.tile_mpp = args.tile_mpp or ([1.0] if quick else [1.0, 0.5])
    args.processes = args.processes or ([1] if quick else [1, 2])
    args.e2e_tile_mpp = args.e2e_tile_mpp or ([1.0] if quick else [1.0, 0.5])
    args.predict_seconds = args.predict_seconds or (3.0 if quick else 10.0)
    args.batching_tiles = args.batching_tiles or (64 if quick else 256)
    problems = [
        f"--width and --height must be at least 1024 (got {args.width} x {args.height})"
        if min(args.width, args.height) < 1024
        else "",
        "--tile-mpp and --e2e-tile-mpp must be in (0, 16]"
        if any(not 0 < m <= 16 for m in args.tile_mpp + args.e2e_tile_mpp)
        else "",
        "--processes must be at least 1" if min(args.processes) < 1 else "",
        "--tile-px must be between 64 and 4096" if not 64 <= args.tile_px <= 4096 else "",
        "--shard-tiles must be between 1 and 1024" if not 1 <= args.shard_tiles <= 1024 else "",
        "--batch-size must be between 1 and 256" if not 1 <= args.batch_size <= 256 else "",
        "--port-base must be between 1024 and 65400" if not 1024 <= args.port_base <= 65400 else "",
        "--predict-seconds must be positive" if args.predict_seconds <= 0 else "",
        "--batching-tiles must be between 16 and 4096" if not 16 <= args.batching_tiles <= 4096 else "",
    ]
    for problem in problems:
        if problem:
            parser.error(problem)
    return args


def extraction(args: argparse.Namespace, slide: Path) -> list[dict[str, Any]]:
    """The extraction table: each TILE_MPP x process count in a child process of its own."""
    header = (
        f"{'TILE_MPP':>8} {'procs':>5} {'tiles':>6} {'shards':>6} {'open s':>7} {'tissue s':>8} {'shards s':>8} "
        f"{'tiles/s':>8} {'/core':>6} {'/cpu-s':>6} {'KB/tile':>7} {'service MiB':>11} {'worker MiB':>10}"
    )
    print(header, flush=True)
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
                f"{rate / procs:>6.1f} {per_cpu:>6.1f} {r['tile_kb']:>7.0f} {r['peak_mib']:>11.0f} {worker:>10}",
                flush=True,
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
        f"({verdict} the {MEMORY_TARGET_MIB:.0f} MiB target)",
        flush=True,
    )
    return rows


def batching(args: argparse.Namespace) -> float:
    """Shard tiles against single images through the service's batcher on modelled GPUs; prints
    the table and returns the lowest ratio."""
    import bench_slide_batching as modelled

    sizes = sorted({args.batch_size, 32})
    print(
        "\nshard tiles vs single images through the inference service's own Inference, MicroBatcher and "
        f"TileScorer, on a modelled GPU: preprocessing sleeps {modelled.PREPARE_MS:g} ms per tile (the H200 host's), "
        "a batch sleeps its measured (H200) or projected (L4) time; the service's default window, queue, threads and "
        f"shards in flight; single images 2 x MAX_BATCH_SIZE in flight, shards of {modelled.SHARD_TILES} tiles",
        flush=True,
    )
    rows = modelled.measure(sizes, args.batching_tiles, max(16, args.batching_tiles // 5))
    print(
        f"{'GPU':<28} {'MAX_BATCH_SIZE':>14} {'tiles':>6} {'shards tiles/s':>14} {'(mean batch)':>12} "
        f"{'images tiles/s':>14} {'(mean batch)':>12} {'ratio':>6}"
    )
    for r in rows:
        print(
            f"{r.gpu:<28} {r.batch_size:>14} {r.tiles:>6} {r.shards.per_s:>14.1f} {f'({r.shards.mean_batch:.1f})':>12} "
            f"{r.images.per_s:>14.1f} {f'({r.images.mean_batch:.1f})':>12} {r.ratio:>6.2f}",
            flush=True,
        )
    return min(r.ratio for r in rows)


def end_to_end(args: argparse.Namespace, slide: Path) -> list[StackResult]:
    """The slide through the bench's own local stack (started and removed here), then its tiles
    through the image path; prints the stage and overhead tables."""
    import bench_slide_stack as stack

    cfg = stack.bench_config(args.home.resolve(), args.port_base)
    service_env = {"MAX_BATCH_SIZE": str(args.batch_size), "EXPLAIN": "false"}
    slide_env = {"TILE_PX": str(args.tile_px), "SHARD_TILES": str(args.shard_tiles)}
    first = slide_env | {"TILE_MPP": f"{args.e2e_tile_mpp[0]:g}"}
    ports = sorted(int(p) for p in stack.PORT_OFFSETS.values())
    print(
        f"\nend to end on the bench's local stack (HEALER_HOME {cfg.home}, ports {args.port_base + ports[0]}–"
        f"{args.port_base + ports[-1]}): tiny model, MAX_BATCH_SIZE={args.batch_size}, EXPLAIN=false (tiles are "
        "verdict-only); the slide service with its defaults (TILING_PROCESSES: one per core, at most 4)",
        flush=True,
    )
    started = time.monotonic()
    with stack.bench_stack(cfg, service_env, first):
        print(f"  stack up in {time.monotonic() - started:.0f} s", flush=True)
        results = stack.measure(
            cfg,
            slide,
            args.e2e_tile_mpp,
            slide_env,
            concurrency=2 * args.batch_size,
            predict_seconds=args.predict_seconds,
            image_uploads=not args.no_uploads,
            timeout_s=args.timeout,
            say=lambda line: print(line, flush=True),
        )
    print(f"  stack stopped and {cfg.home} removed")
    print(
        f"{'TILE_MPP':>8} {'tiles':>6} {'shards':>6} {'upload s':>8} {'→job s':>7} {'queued s':>8} {'tiling s':>8} "
        f"{'(read in)':>9} {'scoring s':>9} {'finalizing s':>12} {'upload→verdict s':>16} {'memory MiB':>10}"
    )
    for r in (result.run for result in results):
        print(
            f"{r.tile_mpp:>8g} {r.tiles:>6} {r.shards:>6} {r.upload_s:>8.1f} {r.to_job_s:>7.1f} {r.queued_s:>8.1f} "
            f"{r.tiling_s:>8.1f} {f'({r.fetch_s:.1f})':>9} {r.scoring_s:>9.1f} {r.finalizing_s:>12.1f} "
            f"{r.total_s:>16.1f} {r.memory.peak_mib:>10.0f}"
        )
    print(
        "stages from the job's history: →job = upload done → job created (Eventarc stand-in, ingest); queued → "
        "leased; tiling = leased → tiled (read in = the download to a temporary file); scoring = tiled → every "
        "shard counted; finalizing = → verdict"
    )
    for r in (result.run for result in results):
        m = r.memory
        verdict = "under" if max(m.peak_mib, m.bound_mib) < MEMORY_TARGET_MIB else "OVER"
        print(
            f"slide service memory at TILE_MPP {r.tile_mpp:g}: peak {m.peak_mib:.0f} MiB (service and its "
            f"{m.children_seen} child processes, summed, sampled every {m.every_s * 1000:.0f} ms); "
            f"≤ {m.bound_mib:.0f} MiB (every process's high-water mark added up); the service process alone "
            f"{m.service_hwm_mib:.0f} MiB ({verdict} the {MEMORY_TARGET_MIB:.0f} MiB target)"
        )
    print(f"\nslide path vs image path: the same tiles, the same inference service, MAX_BATCH_SIZE={args.batch_size}")
    print(
        f"{'TILE_MPP':>8} {'tiles':>6} {'slide path tiles/s':>18} {'/predict tiles/s':>16} {'ratio':>6} "
        f"{'uploaded images tiles/s':>23} {'ratio':>6}"
    )
    for result in results:
        r, p, u = result.run, result.predict, result.uploads
        slide_rate = r.scoring_tiles_per_s
        up = f"{u.per_s:>23.1f} {slide_rate / u.per_s:>6.2f}" if u and u.per_s else f"{'-':>23} {'-':>6}"
        print(f"{r.tile_mpp:>8g} {r.tiles:>6} {slide_rate:>18.1f} {p.per_s:>16.1f} {slide_rate / p.per_s:>6.2f} {up}")
    print(
        "slide path: tiles / scoring s (shard messages, leases, shard reads, decoding, batches, counting); "
        f"/predict: the tiles cycled {2 * args.batch_size} at a time for {args.predict_seconds:g} s "
        "(no Firestore, no download; the client shares this machine's cores); uploaded images: one image job per "
        f"tile, first job created → last verdict. Target: slide path ≥ {OVERHEAD_TARGET:.0%} of the image path."
    )
    for r in (result.run for result in results):
        batched = sum(r.shard_inference_ms) / 1000.0
        print(
            f"TILE_MPP {r.tile_mpp:g}: the {r.shards} shard(s) spent {batched:.1f} s in the batcher (their "
            f"inference_ms, summed; up to MAX_SHARDS_IN_FLIGHT at once) of the {r.scoring_s:.1f} s of scoring; the "
            "rest is each shard's message, lease, read, the decoding of its first batch's tiles and count"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; the last line holds the headline numbers."""
    args = parse_args(argv)
    slide, how = ensure_slide(args.cache, args.width, args.height)
    print(
        f"slide: {args.width} x {args.height} px at 0.25 µm/px, JPEG q80 256-px tiles, "
        f"{slide.stat().st_size / 1e6:.0f} MB ({how})"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(a shared machine: numbers move with its load)",
        flush=True,
    )
    rows = extraction(args, slide)
    worst = max(r["peak_mib"] + r["processes"] * r["worker_peak_mib"] for r in rows)
    summary = (
        f"tiles_per_s_per_core={rows[0]['per_core']:.2f} tiles_per_cpu_s={rows[0]['per_cpu']:.2f} "
        f"peak_rss_mib={worst:.0f}"
    )
    if not args.no_batching:
        summary += f" modelled_gpu_ratio_min={batching(args):.2f}"
    if not args.no_stack:
        results = end_to_end(args, slide)

        def ratios(of: Callable[[StackResult], float]) -> str:
            return ",".join(f"{r.run.scoring_tiles_per_s / of(r):.2f}" if of(r) > 0 else "-" for r in results)

        summary += (
            f" e2e_s={','.join(f'{r.run.total_s:.1f}' for r in results)}"
            f" service_peak_mib={max(r.run.memory.peak_mib for r in results):.0f}"
            f" slide_vs_predict={ratios(lambda r: r.predict.per_s)}"
        )
        if not args.no_uploads:
            summary += f" slide_vs_uploads={ratios(lambda r: r.uploads.per_s if r.uploads else 0.0)}"
    print(summary)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_generate":
        print(json.dumps(child_generate(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_tile":
        a = sys.argv[2:]
        print(json.dumps(child_tile(Path(a[0]), float(a[1]), int(a[2]), int(a[3]), int(a[4]))))
    else:
        sys.exit(main())
