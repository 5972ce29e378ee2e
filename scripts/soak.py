"""Soak the local pipeline: bursts, hostile files, crashes and duplicate events, then an audit.

`make soak` (or `python scripts/soak.py`) brings up its own local stack (HEALER_HOME
`.healer/soak`, ports 370xx, so a `make up` dev stack is untouched), uploads 200 images in three
bursts of about 16x the service's queue, a quarter of them hostile (bad bytes, and valid images
in deep or wide pixel modes: 16-bit, float, alpha, palette, CMYK, 1-bit), and 3 whole slides
generated from the sample tiles (plus a truncated slide and a MIRAX index); SIGKILLs and
restarts the inference service twice while it holds leases, and the slide service too; injects
duplicate finalize events; waits for every upload to reach a terminal job (running the reconcile
sweep, as Cloud Scheduler would, when progress stalls); audits Firestore against what was
uploaded (a slide verdict must count every shard and tile exactly once, or it counts as a
duplicate); and stops the stack. Its last line is

    uploads=<n> done=<n> failed=<n> lost=<n> duplicates=<n> stuck=<n>

and it exits non-zero unless lost, duplicates and stuck are all 0.

Production's delivery budget (5 attempts, then the dead-letter topic) and the product's dead-
letter handling; shortened for a run of minutes: Pub/Sub retry backoff 1–10 s (production
10–600 s), a 20 s lease (300 s), MAX_QUEUE 4 (64), MAX_IMAGE_BYTES 2 MB (so "oversize" stays
cheap), 8 explanation tokens on the tiny CPU model.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import random
import shutil
import signal
import struct
import sys
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "ingest_function")]

import requests  # noqa: E402
from google.cloud import storage  # noqa: E402
from PIL import Image  # noqa: E402

from healer.stack import control  # noqa: E402
from healer.stack.config import StackConfig  # noqa: E402
from healer.stack.eventarc import deliver  # noqa: E402
from healer_core.ids import job_id_for  # noqa: E402
from healer_core.schema import Job, JobKind, JobState  # noqa: E402
from healer_core.store import JobStore, new_client  # noqa: E402

# Defaults away from the dev stack (80xx) and the tests (180xx); each overridable from the env.
SOAK_PORTS = {
    "HEALER_STORAGE_PORT": "37023",
    "HEALER_PUBSUB_PORT": "37085",
    "HEALER_FIRESTORE_PORT": "37086",
    "HEALER_INGEST_PORT": "37081",
    "HEALER_RECONCILE_PORT": "37082",
    "HEALER_SERVICE_PORT": "37080",
    "HEALER_CONSOLE_PORT": "37090",
    "HEALER_SLIDE_PORT": "37083",
}
# What the stack's child processes read (they inherit this process's environment).
SOAK_ENV = {
    "LEASE_SECONDS": "20",
    "INFERENCE_BUDGET_SECONDS": "15",  # below the lease, as the service's settings require
    "MAX_QUEUE": "4",
    "MAX_BATCH_SIZE": "4",
    "MAX_IMAGE_BYTES": "2000000",
    "MAX_FRAMES": "16",
    "MAX_NEW_TOKENS": "8",
    "UNPUBLISHED_GRACE_SECONDS": "10",
    "STALE_QUEUED_SECONDS": "60",
    "LOG_LEVEL": "INFO",
    # Whole slides: small shards (several per slide), one tiling process (a 2-core machine).
    "SHARD_TILES": "2",
    "TILING_PROCESSES": "1",
}
MAX_FRAMES = 16
MAX_IMAGE_BYTES = 2_000_000
MAX_QUEUE = 4
# A valid image in a deep or wide pixel mode ends screened (done) or refused with a permanent,
# coded error (the decode memory budget's); never retried to the dead letter, never a crash.
SCREENED_OR_REFUSED = "done-or-refused"


def say(line: str) -> None:
    print(line, flush=True)


# ---- what gets uploaded -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    content_type: str
    expect: str  # "done", the error code it must fail with, or SCREENED_OR_REFUSED
    kind: str = "image"


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _bomb_png(side: int = 100_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@functools.cache
def _png_16bit_rgba(side: int) -> bytes:
    """A 16-bit RGBA PNG (8 bytes a pixel decoded); its flat rows compress to almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    rows = (b"\0" + b"\x12\x34" * 4 * side) * side
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@functools.cache
def _mode_image(mode: str, side: int, fmt: str, **kw: object) -> bytes:
    """A flat image in `mode` (compresses to a small file, decodes to side² × its pixel size)."""
    color: Any = {"F": 0.25, "I;16": 4660, "1": 1, "P": 7, "LA": (90, 128), "RGBA": (200, 80, 160, 128)}.get(
        mode, (10, 20, 30, 40) if mode == "CMYK" else 120
    )
    return _encode(Image.new(mode, (side, side), color), fmt, **kw)


def _frames_tiff(frames: int) -> bytes:
    images = [Image.new("RGB", (32, 32), (i * 10 % 256, 40, 90)) for i in range(frames)]
    return _encode(images[0], "TIFF", save_all=True, append_images=images[1:])


HOSTILE: dict[str, Callable[[random.Random], tuple[bytes, str, str]]] = {
    "pdf-as-png": lambda r: (b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nendobj\n", "image/png", "not_an_image"),
    "html-as-png": lambda r: (b"<!DOCTYPE html><html><body>not a slide</body></html>", "image/png", "not_an_image"),
    "truncated-png": lambda r: (_encode(_noise(r, 256), "PNG")[:400], "image/png", "truncated"),
    "truncated-jpeg": lambda r: (_encode(_noise(r, 256), "JPEG")[:600], "image/jpeg", "truncated"),
    "bomb": lambda r: (_bomb_png(), "image/png", "decompression_bomb"),
    "zero-bytes": lambda r: (b"", "image/png", "empty"),
    "oversize": lambda r: (b"\x89PNG\r\n\x1a\n" + r.randbytes(MAX_IMAGE_BYTES + 1000), "image/png", "too_large"),
    "frames-over-cap": lambda r: (_frames_tiff(MAX_FRAMES + 4), "image/tiff", "too_many_frames"),
    # Valid files whose pixel mode decodes to many times their RGB size (issue 11, item 2).
    "rgba-16bit-png": lambda r: (_png_16bit_rgba(3000), "image/png", SCREENED_OR_REFUSED),
    "gray-16bit-png": lambda r: (_mode_image("I;16", 3000, "PNG"), "image/png", SCREENED_OR_REFUSED),
    "float-tiff": lambda r: (
        _mode_image("F", 3000, "TIFF", compression="tiff_adobe_deflate"),
        "image/tiff",
        SCREENED_OR_REFUSED,
    ),
    "alpha-png": lambda r: (_mode_image("RGBA", 3000, "PNG"), "image/png", SCREENED_OR_REFUSED),
    "palette-png": lambda r: (_mode_image("P", 4000, "PNG"), "image/png", SCREENED_OR_REFUSED),
    "cmyk-jpeg": lambda r: (_mode_image("CMYK", 3000, "JPEG"), "image/jpeg", SCREENED_OR_REFUSED),
    "1bit-png": lambda r: (_mode_image("1", 6000, "PNG"), "image/png", SCREENED_OR_REFUSED),
}


def _noise(r: random.Random, side: int) -> Image.Image:
    return Image.frombytes("RGB", (side, side), r.randbytes(side * side * 3))


def build_uploads(total: int, hostile_share: float, samples: list[Path], seed: int) -> list[Upload]:
    """`total` uploads, `hostile_share` of them hostile (spread over every kind), shuffled."""
    r = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    kinds = list(HOSTILE)
    n_hostile = max(len(kinds), -(-int(total * hostile_share * 100) // 100))
    uploads: list[Upload] = []
    for i in range(n_hostile):
        kind = kinds[i % len(kinds)]
        data, content_type, code = HOSTILE[kind](r)
        uploads.append(Upload(f"soak-{run}/hostile/{kind}-{i}.png", data, content_type, code, kind))
    for i in range(total - n_hostile):
        if samples and i % 2 == 0:
            path = samples[i % len(samples)]
            uploads.append(
                Upload(
                    f"soak-{run}/tiles/{i}-{path.name}",
                    path.read_bytes(),
                    "image/tiff" if path.suffix == ".tif" else "image/png",
                    "done",
                )
            )
        else:
            side = r.choice([64, 128, 224, 300])
            fmt, content_type = r.choice([("PNG", "image/png"), ("JPEG", "image/jpeg")])
            uploads.append(
                Upload(f"soak-{run}/synthetic/{i}.{fmt.lower()}", _encode(_noise(r, side), fmt), content_type, "done")
            )
    r.shuffle(uploads)
    return uploads


def build_slides(count: int, samples: list[Path], folder: Path, seed: int) -> list[Upload]:
    """`count` whole slides generated from the sample tiles (10X, a handful of tissue tiles each),
    plus two bad ones: a truncated slide (unreadable_slide) and a MIRAX index (unsupported_slide)."""
    from slide_service import synth

    if not count or not samples:
        return []
    run = uuid.uuid4().hex[:6]
    uploads: list[Upload] = []
    for i in range(count):
        slide = synth.write_slide(folder / f"slide-{i}.svs", samples, width=4096, height=3072, mpp=1.0, seed=seed + i)
        uploads.append(Upload(f"soak-{run}/slides/slide-{i}.svs", slide.path.read_bytes(), "image/tiff", "done"))
    cut = synth.truncate(folder / "slide-0.svs", folder / "cut.svs", 0.5)
    uploads.append(Upload(f"soak-{run}/slides/cut.svs", cut.read_bytes(), "image/tiff", "unreadable_slide"))
    mirax = synth.write_mrxs_standin(folder / "case.mrxs")
    uploads.append(Upload(f"soak-{run}/slides/case.mrxs", mirax.read_bytes(), "", "unsupported_slide"))
    return uploads


def find_samples() -> list[Path]:
    for folder in (REPO.parent / "shared" / "samples", REPO / "samples"):
        found = sorted(p for p in folder.glob("*") if p.suffix in (".tif", ".png")) if folder.is_dir() else []
        if found:
            return found
    return []


# ---- the stack ----------------------------------------------------------------------------------


def soak_config(home: Path) -> StackConfig:
    ports: dict[str, Any] = {k: os.environ.get(k, v) for k, v in SOAK_PORTS.items()}
    return StackConfig(  # type: ignore[call-arg]  # env-alias kwargs, invisible to mypy
        HEALER_HOME=home,
        HEALER_PROJECT="healer-soak",
        HEALER_BUCKET="healer-soak-inbox",
        MAX_DELIVERY_ATTEMPTS=5,  # production's: the dead-letter path is part of the soak
        ACK_DEADLINE_SECONDS=60,
        # Retry after 1–10 s instead of 10–600 s so the soak takes minutes. The emulator honours
        # a retry policy loosely: after the service comes back it may not redeliver refused
        # pushes for many minutes, which is what the scheduled reconcile sweep exists for.
        PUBSUB_MIN_BACKOFF_SECONDS=1,
        PUBSUB_MAX_BACKOFF_SECONDS=10,
        **ports,
    )


def bring_up(cfg: StackConfig) -> None:
    control.down(cfg)
    shutil.rmtree(cfg.home, ignore_errors=True)
    cfg.home.mkdir(parents=True)
    os.environ.update(SOAK_ENV)
    os.environ.update(cfg.client_env())
    control.up(cfg, echo=lambda line: say(f"  {line}"))


def wait_for_leases(store: JobStore, items: list[Uploaded], timeout_s: float = 60.0) -> int:
    """Wait until the service holds at least one live lease among `items`; returns how many it holds."""
    deadline = time.monotonic() + timeout_s
    held = 0
    while time.monotonic() < deadline:
        jobs = get_jobs(store, [i.job_id for i in items])
        held = sum(1 for j in jobs.values() if j.state == JobState.RUNNING and j.lease is not None)
        if held:
            return held
        time.sleep(0.2)
    return held


def kill_and_restart_service(cfg: StackConfig, name: str = "service") -> float:
    """SIGKILL a service (`service` or `slide`) mid-work and start a new one; returns seconds until
    it was ready again."""
    started = time.monotonic()
    (component,) = [c for c in control.app_components(cfg) if c.name == name]
    control.stop_component(cfg, name, timeout_s=5, sig=signal.SIGKILL)
    # A killed multi-threaded process looks dead (zombie leader) before its last thread has
    # closed the listening socket: wait for the port to be free before starting the next one.
    deadline = time.monotonic() + 15
    while control._port_open(cfg.host, component.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    control.start(cfg, component)
    return time.monotonic() - started


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class Uploaded:
    upload: Upload
    generation: int
    job_id: str


def upload_all(bucket: storage.Bucket, uploads: list[Upload], workers: int = 8) -> list[Uploaded]:
    def one(u: Upload) -> Uploaded:
        blob = bucket.blob(u.name)
        blob.upload_from_string(u.data, content_type=u.content_type)
        generation = int(blob.generation)
        return Uploaded(u, generation, job_id_for(bucket.name, u.name, generation))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, uploads))


def inject_duplicates(cfg: StackConfig, done: list[Uploaded], count: int, r: random.Random) -> Counter[int]:
    """Replay finalize events of already-uploaded objects, several copies at once (Eventarc's
    at-least-once), retrying non-2xx answers as Eventarc does. Returns final statuses."""
    client = storage.Client(project=cfg.project)
    targets = r.sample(done, min(count, len(done)))

    def replay(item: Uploaded) -> int:
        blob = client.bucket(cfg.bucket).get_blob(item.upload.name)
        if blob is None:
            return 404
        status = 0
        for _ in range(10):
            status = deliver(cfg.ingest_url, blob._properties, f"dup-{uuid.uuid4().hex[:8]}")
            if 200 <= status < 300:
                break
            time.sleep(1.0)
        return status

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(replay, [t for t in targets for _ in range(3)]))


def wait_terminal(cfg: StackConfig, store: JobStore, items: list[Uploaded], timeout_s: float, stall_s: float) -> int:
    """Wait for every upload's job to be terminal; run the reconcile sweep when progress stalls
    for `stall_s` (0: never). Returns how many times reconcile ran."""
    deadline = time.monotonic() + timeout_s
    ids = [i.job_id for i in items]
    last_count, last_change, reconciles = -1, time.monotonic(), 0
    while time.monotonic() < deadline:
        jobs = get_jobs(store, ids)
        terminal = sum(1 for j in jobs.values() if j.state.terminal)
        if terminal == len(ids):
            return reconciles
        if terminal != last_count:
            say(f"  {terminal}/{len(ids)} terminal")
            last_count, last_change = terminal, time.monotonic()
        elif stall_s and time.monotonic() - last_change > stall_s:
            say(f"  no progress for {stall_s:.0f} s: running the reconcile sweep (as Cloud Scheduler would)")
            response = requests.post(cfg.reconcile_url, json={}, timeout=120)
            say(f"  reconcile: {response.status_code} {response.json().get('counts') if response.ok else ''}")
            reconciles += 1
            last_change = time.monotonic()
        time.sleep(2.0)
    return reconciles


def service_ok(cfg: StackConfig) -> bool:
    try:
        return requests.get(f"{cfg.service_url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def get_jobs(store: JobStore, ids: list[str]) -> dict[str, Job]:
    found: dict[str, Job] = {}
    for start in range(0, len(ids), 100):
        found.update(store.get_many(ids[start : start + 100]))
    return found


def audit(store: JobStore, items: list[Uploaded]) -> dict[str, int]:
    """Firestore against the uploads: each generation exactly one terminal job, one outcome."""
    jobs = get_jobs(store, [i.job_id for i in items])
    counts = Counter(uploads=len(items), done=0, failed=0, lost=0, duplicates=0, stuck=0)
    wrong: list[str] = []
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        job = jobs.get(item.job_id)
        if job is None:
            counts["lost"] += 1
            continue
        outcomes = [e.event for e in job.history if e.event in ("done", "failed")]
        if len(outcomes) > 1 or (job.state == JobState.DONE and job.error is not None):
            counts["duplicates"] += 1  # more than one terminal write: two verdicts, or verdict + failure
        if not job.state.terminal:
            counts["stuck"] += 1
            continue
        counts[str(job.state)] += 1
        got = "done" if job.state == JobState.DONE else (job.error.code if job.error else "?")
        if item.upload.expect == SCREENED_OR_REFUSED:
            by_kind[item.upload.kind][got] += 1
            refused = job.state == JobState.FAILED and job.error is not None and not job.error.retryable
            ok = got == "done" or refused
        else:
            ok = got == item.upload.expect
        if not ok:
            wrong.append(f"{item.upload.name}: expected {item.upload.expect}, got {got}")
    for item in items:  # a slide verdict counts every shard and every tile exactly once
        job = jobs.get(item.job_id)
        if job is not None and job.kind == JobKind.SLIDE and job.state == JobState.DONE and job.slide is not None:
            s = job.slide
            if s.shards_done != s.shards_total or s.tiles_scored != s.tiles_total or not s.shards_total:
                counts["duplicates"] += 1
                counted = f"shards {s.shards_done}/{s.shards_total}, tiles {s.tiles_scored}/{s.tiles_total}"
                wrong.append(f"{item.upload.name}: {counted}")
    slides = [jobs[i.job_id] for i in items if i.job_id in jobs and jobs[i.job_id].kind == JobKind.SLIDE]
    if slides:
        say(f"  slides: {len(slides)}, {sum(1 for j in slides if j.state == JobState.DONE)} with a slide verdict")
    for line in wrong[:20]:
        say(f"  unexpected outcome: {line}")
    counts["unexpected"] = len(wrong)
    for kind, seen in sorted(by_kind.items()):
        say(f"  {kind}: {dict(seen)}")
    attempts = Counter(j.attempts for j in jobs.values())
    say(f"  attempts per job: {dict(sorted(attempts.items()))}")
    back = [j.dead_letters for j in jobs.values() if j.dead_letters]
    say(f"  dead letters put back in flight: {len(back)} job(s), {sum(back)} time(s) in all")
    dead = sum(1 for j in jobs.values() if j.error is not None and j.error.code == "dead_lettered")
    say(f"  jobs failed as dead_lettered: {dead}")
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--hostile-share", type=float, default=0.25)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("SOAK_HOME", REPO / ".healer" / "soak")))
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds to wait for terminal jobs")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--sweep-after",
        type=float,
        default=45.0,
        help="run the reconcile sweep after this many seconds without progress (0: never)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--slides", type=int, default=3, help="whole slides (plus two bad ones) among the uploads")
    args = parser.parse_args(argv)

    cfg = soak_config(args.home.resolve())
    r = random.Random(args.seed)
    uploads = build_uploads(args.uploads, args.hostile_share, find_samples(), args.seed)
    slides = build_slides(args.slides, find_samples(), args.home.resolve() / "slides", args.seed)
    uploads = uploads + slides
    random.Random(args.seed).shuffle(uploads)
    hostile = sum(1 for u in uploads if u.expect != "done")
    say(f"soak: {len(uploads)} uploads ({hostile} hostile, {len(slides)} slides), stack home {cfg.home}")
    started = time.monotonic()
    try:
        bring_up(cfg)
        say(f"stack up in {time.monotonic() - started:.0f}s")
        store = JobStore(new_client(cfg.project), cfg.jobs_collection)
        bucket = storage.Client(project=cfg.project).bucket(cfg.bucket)
        thirds = [
            uploads[: len(uploads) // 3],
            uploads[len(uploads) // 3 : 2 * len(uploads) // 3],
            uploads[2 * len(uploads) // 3 :],
        ]
        done: list[Uploaded] = []
        for phase, batch in enumerate(thirds, 1):
            burst = upload_all(bucket, batch)
            done += burst
            say(f"phase {phase}: a burst of {len(batch)} uploads ({len(batch) / MAX_QUEUE:.0f}x MAX_QUEUE={MAX_QUEUE})")
            if phase < 3:  # while the burst is being worked on: leases are held
                held = wait_for_leases(store, burst)
                back = kill_and_restart_service(cfg)
                say(f"phase {phase}: SIGKILL the service while it holds {held} lease(s); back in {back:.1f}s")
            statuses = inject_duplicates(cfg, done, 15, r)
            say(f"phase {phase}: replayed 45 duplicate events: {dict(statuses)}")
            if phase < 3 and slides:
                back = kill_and_restart_service(cfg, "slide")
                say(f"phase {phase}: SIGKILL the slide service; back in {back:.1f}s")
        service_pid = control.running_pid(cfg, "service")
        reconciles = wait_terminal(cfg, store, done, args.timeout, args.sweep_after)
        counts = audit(store, done)
        still_up = control.running_pid(cfg, "service") == service_pid is not None and service_ok(cfg)
        say(f"  service up throughout the last phase (no unplanned restart): {'yes' if still_up else 'NO'}")
        say(
            f"  reconcile sweeps: {reconciles}; unexpected outcomes: {counts.pop('unexpected')}; "
            f"wall time {time.monotonic() - started:.0f}s"
        )
    finally:
        if not args.keep:
            control.down(cfg)
    say(" ".join(f"{k}={counts[k]}" for k in ("uploads", "done", "failed", "lost", "duplicates", "stuck")))
    return 0 if counts["lost"] == counts["duplicates"] == counts["stuck"] == 0 and still_up else 1


if __name__ == "__main__":
    sys.exit(main())
