"""The end-to-end half of `make bench-slide`: one slide through the local stack, timed stage by
stage from its job document, the slide service's memory sampled meanwhile, and the same tiles
through the image path of the same inference service, for the slide path's per-tile overhead.

The stack is the bench's own (its HEALER_HOME, ports at a base of their own, a project and bucket
of its own), started with what the upload → verdict path needs (the emulators, ingest, the
Eventarc and Pub/Sub push stand-ins, the inference service on the tiny model, the slide service)
and stopped and removed afterwards, so a developer's `make up` stack is never touched.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, Path(__file__).resolve().parent):  # the repository, and bench_http beside this file
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_http import _drive  # noqa: E402  (the `make bench` driver of POST /predict)
from google.cloud import storage  # type: ignore[attr-defined]  # noqa: E402

from healer.stack import control  # noqa: E402
from healer.stack.config import StackConfig  # noqa: E402
from healer.stack.provision import ensure_bucket, ensure_pubsub, ensure_slides_pubsub  # noqa: E402
from healer_core.ids import job_id_for  # noqa: E402
from healer_core.schema import Job, JobState  # noqa: E402
from healer_core.slide_store import SlideStore  # noqa: E402
from healer_core.store import JobStore, new_client  # noqa: E402

# The stack's usual port numbers end in these digits; the bench puts them at its own base:
# 36000 by default, away from the dev stack (80xx), the tests (180xx) and the soak (370xx).
PORT_OFFSETS = {
    "HEALER_STORAGE_PORT": 23,
    "HEALER_PUBSUB_PORT": 85,
    "HEALER_FIRESTORE_PORT": 86,
    "HEALER_INGEST_PORT": 81,
    "HEALER_RECONCILE_PORT": 82,
    "HEALER_SERVICE_PORT": 80,
    "HEALER_CONSOLE_PORT": 90,
    "HEALER_SLIDE_PORT": 83,
}
DEFAULT_PORT_BASE = 36000
# What an upload travels through to its verdict; the console, reconcile and its scheduler are not
# on that path and stay off (fewer processes on the cores being measured).
ON_PATH = ("ingest", "service", "push", "slide", "eventarc")


class BenchError(RuntimeError):
    """The stack could not measure what was asked (a job failed, or did not finish in time)."""


def bench_config(home: Path, port_base: int) -> StackConfig:
    """The bench stack's configuration: its own home, ports, project and bucket."""
    ports: dict[str, Any] = {name: port_base + offset for name, offset in PORT_OFFSETS.items()}
    return StackConfig(  # env-alias kwargs
        HEALER_HOME=home,
        HEALER_PROJECT="healer-bench",
        HEALER_BUCKET="healer-bench-inbox",
        HEALER_RECONCILE_EVERY_SECONDS=0,
        **ports,
    )


def _component(cfg: StackConfig, name: str, env: dict[str, str]) -> control.Component:
    (comp,) = [c for c in control.app_components(cfg) if c.name == name]
    comp.env.update(env)
    return comp


@contextmanager
def bench_stack(cfg: StackConfig, service_env: dict[str, str], slide_env: dict[str, str]) -> Iterator[StackConfig]:
    """Start the bench's stack (after stopping and removing whatever an interrupted run of it
    left in its home), yield, then stop it and remove its home. The client environment (the
    emulators' hosts) is set for the duration and restored afterwards."""
    saved = dict(os.environ)
    control.down(cfg)  # only the processes recorded under this home
    shutil.rmtree(cfg.home, ignore_errors=True)
    cfg.home.mkdir(parents=True)
    os.environ.update(cfg.client_env())
    try:
        for comp in control.emulator_components(cfg):
            control.start(cfg, comp)
        ensure_bucket(cfg)
        ensure_pubsub(cfg)
        ensure_slides_pubsub(cfg)
        control.ensure_model(cfg)
        for name in ON_PATH:
            env = service_env if name == "service" else slide_env if name == "slide" else {}
            control.start(cfg, _component(cfg, name, env))
        yield cfg
    finally:
        control.down(cfg)
        shutil.rmtree(cfg.home, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)


def restart_slide_service(cfg: StackConfig, env: dict[str, str]) -> None:
    """The slide service again, with `env` (its settings are read once, at start-up)."""
    control.stop_component(cfg, "slide")
    control.start(cfg, _component(cfg, "slide", env))


# --- the slide service's memory ----------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])  # after "(comm) state"
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class TreeMemory:
    """Samples a process and its descendants (the slide service and the child processes it
    spawns to survey and tile) every `every_s`: the peak of their summed resident memory, and
    each process's own high-water mark (VmHWM, the kernel's)."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self.children_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        """One look at the tree."""
        pids = [self.pid, *_descendants(self.pid)]
        total = 0
        for pid in pids:
            total += _status_kib(pid, "VmRSS")
            self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), _status_kib(pid, "VmHWM"))
        self.peak_kib = max(self.peak_kib, total)
        self.children_seen = max(self.children_seen, len(self.hwm_kib) - 1)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_mib(self) -> float:
        """The largest summed resident memory of the tree seen in one sample."""
        return self.peak_kib / 1024.0

    @property
    def service_hwm_mib(self) -> float:
        """The service process's own high-water mark (since it started)."""
        return self.hwm_kib.get(self.pid, 0) / 1024.0

    @property
    def bound_mib(self) -> float:
        """The sum of every process's high-water mark: an upper bound on the tree's true peak,
        whatever the sampling missed between two looks."""
        return sum(self.hwm_kib.values()) / 1024.0


# --- one slide, end to end ----------------------------------------------------------------------


@dataclass
class SlideRun:
    """One slide's trip through the stack, with its stages from the job document (seconds)."""

    job: Job
    tile_mpp: float
    upload_s: float
    to_job_s: float  # upload finished → job created (the Eventarc stand-in and ingest)
    queued_s: float  # job created → leased for tiling
    tiling_s: float  # leased → tiled (the hand-off): reading the slide in, survey, shards written
    fetch_s: float  # of which reading the slide in (a download to a temporary file, locally)
    scoring_s: float  # tiled → every shard counted (the finalize claimed)
    finalizing_s: float  # claimed → verdict
    total_s: float  # upload started → verdict
    memory: TreeMemory
    shard_inference_ms: list[float] = field(default_factory=list)

    @property
    def tiles(self) -> int:
        return self.job.slide.tiles_total if self.job.slide else 0

    @property
    def shards(self) -> int:
        return self.job.slide.shards_total if self.job.slide else 0

    @property
    def scoring_tiles_per_s(self) -> float:
        return self.tiles / self.scoring_s if self.scoring_s > 0 else 0.0


def _event_at(job: Job, event: str, after: datetime | None = None) -> datetime:
    for entry in sorted(job.history, key=lambda e: e.at):
        if entry.event == event and (after is None or entry.at > after):
            return entry.at
    raise BenchError(f"job {job.job_id} has no '{event}' in its history")


def wait_terminal(store: JobStore, job_ids: list[str], timeout_s: float) -> dict[str, Job]:
    """Every job, once all are done or failed; BenchError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = store.get_many(job_ids)
        if len(jobs) == len(job_ids) and all(j.state.terminal for j in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            waiting = len(job_ids) - sum(1 for j in jobs.values() if j.state.terminal)
            raise BenchError(f"{waiting} of {len(job_ids)} jobs unfinished after {timeout_s:.0f} s")
        time.sleep(0.25)


def _must_be_done(jobs: dict[str, Job]) -> None:
    failed = [j for j in jobs.values() if j.state != JobState.DONE]
    if failed:
        error = failed[0].error
        raise BenchError(f"{len(failed)} job(s) did not end done; first: {failed[0].state} {error}")


def run_slide(cfg: StackConfig, slide: Path, name: str, tile_mpp: float, timeout_s: float) -> SlideRun:
    """Upload `slide` as `name` and follow its job to the verdict, sampling the slide service's
    memory meanwhile."""
    store = SlideStore.of(JobStore(new_client(cfg.project), cfg.jobs_collection))
    pid = control.running_pid(cfg, "slide")
    if pid is None:
        raise BenchError("the slide service is not running")
    blob = storage.Client(project=cfg.project).bucket(cfg.bucket).blob(name)
    with TreeMemory(pid) as memory:
        started = time.time()
        blob.upload_from_filename(str(slide), timeout=600)
        uploaded = time.time()
        job_id = job_id_for(cfg.bucket, name, int(blob.generation))
        jobs = wait_terminal(store, [job_id], timeout_s)
    _must_be_done(jobs)
    job = jobs[job_id]
    assert job.created_at is not None and job.finished_at is not None and job.slide is not None
    leased = _event_at(job, "leased")
    tiled = _event_at(job, "tiled")
    scored = _event_at(job, "scored", after=tiled)
    return SlideRun(
        job=job,
        tile_mpp=tile_mpp,
        upload_s=uploaded - started,
        to_job_s=job.created_at.timestamp() - uploaded,
        queued_s=(leased - job.created_at).total_seconds(),
        tiling_s=(tiled - leased).total_seconds(),
        fetch_s=job.slide.fetch_ms / 1000.0,
        scoring_s=(scored - tiled).total_seconds(),
        finalizing_s=(job.finished_at - scored).total_seconds(),
        total_s=job.finished_at.timestamp() - started,
        memory=memory,
        shard_inference_ms=[s.inference_ms for s in store.shards(job_id)],
    )


# --- the same tiles through the image path -------------------------------------------------------


def shard_tiles(cfg: StackConfig, job_id: str) -> list[bytes]:
    """The JPEG bytes of every tile the slide service wrote for the slide, in tile order."""
    store = SlideStore.of(JobStore(new_client(cfg.project), cfg.jobs_collection))
    client = storage.Client(project=cfg.project)
    tiles: list[bytes] = []
    for shard in store.shards(job_id):
        bucket, _, name = shard.object.removeprefix("gs://").partition("/")
        data = client.bucket(bucket).blob(name, generation=shard.generation).download_as_bytes()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = sorted((m for m in tar.getmembers() if m.name.endswith(".jpg")), key=lambda m: m.name)
            for member in members:
                extracted = tar.extractfile(member)
                assert extracted is not None
                tiles.append(extracted.read())
    return tiles


@dataclass(frozen=True)
class Rate:
    """Tiles scored over a window of seconds."""

    tiles: int
    seconds: float
    note: str = ""

    @property
    def per_s(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0


def predict_rate(cfg: StackConfig, tiles: list[bytes], concurrency: int, seconds: float) -> Rate:
    """The tiles POSTed to the inference service's /predict, `concurrency` at a time (cycling
    through them) for `seconds` after a warm-up: the same batcher and engine, no Firestore, no
    download."""
    cell = asyncio.run(_drive(cfg.service_url, tiles, concurrency, seconds, warm=concurrency))
    if cell.errors:
        raise BenchError(f"/predict answered {cell.errors} errors among {cell.completed + cell.errors} requests")
    return Rate(cell.completed, cell.seconds, f"c={concurrency}")


def upload_rate(cfg: StackConfig, tiles: list[bytes], prefix: str, timeout_s: float) -> Rate:
    """The tiles uploaded as single images (16 uploads at a time), each becoming an image job:
    tiles over the window from the first job created to the last verdict."""
    bucket = storage.Client(project=cfg.project).bucket(cfg.bucket)

    def one(item: tuple[int, bytes]) -> str:
        blob = bucket.blob(f"{prefix}/{item[0]:05d}.jpg")
        blob.upload_from_string(item[1], content_type="image/jpeg")
        return job_id_for(cfg.bucket, blob.name, int(blob.generation))

    started = time.time()
    with ThreadPoolExecutor(16) as pool:
        job_ids = list(pool.map(one, enumerate(tiles)))
    uploaded = time.time() - started
    store = JobStore(new_client(cfg.project), cfg.jobs_collection)
    jobs = wait_terminal(store, job_ids, timeout_s)
    _must_be_done(jobs)
    first = min(j.created_at for j in jobs.values() if j.created_at is not None)
    last = max(j.finished_at for j in jobs.values() if j.finished_at is not None)
    return Rate(len(jobs), (last - first).total_seconds(), f"uploaded in {uploaded:.1f} s")


# --- the whole end-to-end measurement ------------------------------------------------------------


@dataclass
class StackResult:
    """One slide at one TILE_MPP, and the image path's rates for its tiles."""

    run: SlideRun
    predict: Rate
    uploads: Rate | None


def measure(
    cfg: StackConfig,
    slide: Path,
    tile_mpps: list[float],
    slide_env: dict[str, str],
    concurrency: int,
    predict_seconds: float,
    image_uploads: bool,
    timeout_s: float,
    say: Callable[[str], None],
) -> list[StackResult]:
    """For each TILE_MPP: the slide service (re)started with it, the slide end to end, then its
    own tiles through /predict and (optionally) as uploaded images."""
    results: list[StackResult] = []
    for i, tile_mpp in enumerate(tile_mpps):
        if i:
            restart_slide_service(cfg, slide_env | {"TILE_MPP": f"{tile_mpp:g}"})
        name = f"bench/slide-{i}-{tile_mpp:g}{slide.suffix}"
        say(f"  TILE_MPP {tile_mpp:g}: uploading the slide and waiting for its verdict …")
        run = run_slide(cfg, slide, name, tile_mpp, timeout_s)
        tiles = shard_tiles(cfg, run.job.job_id)
        say(f"  TILE_MPP {tile_mpp:g}: {len(tiles)} tiles through /predict …")
        predict = predict_rate(cfg, tiles, concurrency, predict_seconds)
        uploads = None
        if image_uploads:
            say(f"  TILE_MPP {tile_mpp:g}: the same {len(tiles)} tiles uploaded as single images …")
            uploads = upload_rate(cfg, tiles, f"bench/tiles-{i}-{tile_mpp:g}", timeout_s)
        results.append(StackResult(run, predict, uploads))
    return results
