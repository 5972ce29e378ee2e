"""A slide's report, start to finish: admission → the report's lease → the chosen tiles read from
their shard objects → one `report_slide` prompt → the report written (fenced). The verdict, the
job's `state` and its `lease` are never touched (`healer_core.report_store`).

`process_report` returns an Outcome like `worker.process_job`, and the push route answers the same
status codes: 204 written / already finished / failed permanently (recorded) / fenced, 429 held
elsewhere or another report has this process's report slot, 503 transient (lease released, the
reason kept on the report).

How a report shares the engine with the tile batches. `TransformersEngine.report_slide` runs under
the same lock as `predict`, so a report and a batch never run at once (one model, one GPU: the
L4 holds one of each at a time, docs/BENCHMARKS.md). To keep the batches from starving:
- one report at a time per process (`ReportRunner`, its own thread): batches wait for at most one
  report (≈ 30 s for 125 patches projected on an L4, ≈ 16 s expected on an H200; not measured
  yet, docs/BENCHMARKS.md), and between two reports the batcher always takes the engine (the next
  report first leases, downloads and decodes);
- everything but the generate runs before it, off the engine: the lease, the shard downloads and
  the safe decode of only the chosen tiles (`OpenedShard.tiles(only=...)`), in worker threads;
- a push that finds the slot taken waits up to 30 s, then gets 429 before any lease is taken.

Failures: tiles that cannot be read (a shard object gone with the work bucket's lifecycle, or one
that fails validation) and a report the engine cannot take (no report path, more tiles than this
service's SLIDE_REPORT_PATCHES) fail the report with the reason; anything the engine raises
releases it for a retry (Pub/Sub redelivers; the dead letter fails it once really tried).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from PIL.Image import Image

from healer_core.publisher import Publisher
from healer_core.report_store import DeadReport, ReportStore
from healer_core.schema import JobMessage, Report, ReportTile
from healer_core.slide_messages import publish_report
from healer_core.slide_store import StepStatus
from healer_media.blobs import BlobSource
from healer_media.errors import ImageRejected, ObjectGone, ShardRejected, TransientError
from healer_media.shard import ShardLimits
from inference_service.engine.slide_report import SlideReport, SlideReporter
from inference_service.shard_worker import read_shard
from inference_service.slots import held
from inference_service.worker import Outcome

if TYPE_CHECKING:
    from inference_service.runtime import Runtime

log = logging.getLogger("healer.report")
ADMISSION_WAIT_S = 30.0


class ReportRunner:
    """One report at a time in this process, run in a thread of its own ("report")."""

    def __init__(self) -> None:
        self._slot = asyncio.Semaphore(1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report")

    def admitted(self, wait_s: float = ADMISSION_WAIT_S) -> contextlib.AbstractAsyncContextManager[bool]:
        """`async with runner.admitted() as ok:` ok is True while this report holds the slot."""
        return held(self._slot, wait_s)

    async def run(self, engine: SlideReporter, images: Sequence[Image], max_new_tokens: int) -> SlideReport:
        """`engine.report_slide(images)` in the report thread (blocking there, not on the loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, engine.report_slide, images, max_new_tokens)

    def close(self) -> None:
        """Stop the report thread (a report still running finishes; its result is dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class ReportDeps:
    store: ReportStore
    blobs: BlobSource
    engine: Any  # a SlideReporter when the engine has a report path (checked per report)
    runner: ReportRunner
    publisher: Publisher  # dead report messages put back in flight (JOBS_TOPIC)
    owner: str
    lease_seconds: float
    max_patches: int  # SLIDE_REPORT_PATCHES here: the most tiles this engine takes in one prompt
    max_new_tokens: int
    limits: ShardLimits


def report_deps(runtime: Runtime) -> ReportDeps:
    """The report path's dependencies, from the service's runtime (after the model loaded)."""
    assert runtime.inference is not None, "the model is not loaded yet"
    s = runtime.settings
    return ReportDeps(
        store=ReportStore.of(runtime.store),
        blobs=runtime.blobs,
        engine=runtime.inference.engine,
        runner=ReportRunner(),
        publisher=runtime.publisher,
        owner=runtime.owner,
        lease_seconds=s.lease_seconds,
        max_patches=s.slide_report_patches,
        max_new_tokens=s.slide_report_max_new_tokens,
        limits=ShardLimits(),
    )


class Unreadable(Exception):
    """The report's tiles cannot be read (permanent): the message says why."""


async def process_report(message: JobMessage, deps: ReportDeps) -> Outcome:
    """Write one slide's report, or say why not now."""
    async with deps.runner.admitted() as admitted:
        if not admitted:
            return Outcome.BUSY  # before touching Firestore: cheap backpressure
        return await _leased(message.job_id, deps)


async def _leased(job_id: str, deps: ReportDeps) -> Outcome:
    store = deps.store
    lease = await asyncio.to_thread(store.lease_report, job_id, deps.owner, deps.lease_seconds)
    if lease.status in (StepStatus.MISSING, StepStatus.NOT_DUE, StepStatus.TERMINAL):
        log.info("report not run", extra={"job_id": job_id, "status": str(lease.status)})
        return Outcome.ALREADY_TERMINAL
    if lease.status != StepStatus.ACQUIRED:
        return Outcome.HELD
    token, pending = lease.token, lease.report
    log.info("report leased", extra={"job_id": job_id, "attempt": pending.attempts, "patches": pending.patches})
    refusal = _refusal(pending, deps)
    if refusal:
        return await _fail(deps, job_id, token, refusal, "refused")
    heartbeat = asyncio.create_task(_heartbeat(deps, job_id, token))
    try:
        images = await asyncio.to_thread(read_tiles, deps, job_id, pending.tiles)
        written = await deps.runner.run(deps.engine, images, deps.max_new_tokens)
    except asyncio.CancelledError:
        reason = "The service shut down while writing the report."
        await asyncio.shield(_release(deps, job_id, token, reason, "shutdown"))
        raise
    except Unreadable as exc:
        return await _fail(deps, job_id, token, str(exc), "bad_shard")
    except TransientError as exc:
        return await _release(deps, job_id, token, exc.message, str(exc.code))
    except Exception as exc:
        log.exception("report failed", extra={"job_id": job_id})
        return await _release(
            deps, job_id, token, f"The model failed writing the report ({type(exc).__name__}).", "engine_error"
        )
    finally:
        heartbeat.cancel()
    report = Report(**asdict(written))  # a SlideReport's fields are all Report fields
    if not await asyncio.to_thread(store.finish_report, job_id, token, report):
        log.warning("report fenced off: its lease was lost to another worker", extra={"job_id": job_id})
        return Outcome.FENCED
    log.info(
        "report written",
        extra={
            "job_id": job_id,
            "patches": report.patches,
            "tokens": report.new_tokens,
            "ms": round(report.inference_ms),
        },
    )
    return Outcome.DONE


def _refusal(report: Report, deps: ReportDeps) -> str:
    """Why this service cannot write `report` at all ("" when it can)."""
    if not isinstance(deps.engine, SlideReporter):
        return "This service's engine has no slide report path."
    if deps.max_patches == 0:
        return "SLIDE_REPORT_PATCHES is 0 on the inference service: it writes no slide reports."
    if not report.tiles:
        return "No tiles were chosen for the report."
    if len(report.tiles) > deps.max_patches:
        return (
            f"The report has {len(report.tiles)} tiles; the inference service takes at most {deps.max_patches}"
            " (SLIDE_REPORT_PATCHES must be the same on both services)."
        )
    return ""


def read_tiles(deps: ReportDeps, job_id: str, tiles: Sequence[ReportTile]) -> list[Image]:
    """The report's tiles, in prompt order, from their shard objects (pinned to the generation the
    shard document records, decoded by the safe shard decoder, only the chosen tiles). Blocking.

    Raises Unreadable (permanent) for a shard without its document or object, or one that fails
    validation; TransientError when a download fails."""
    wanted: dict[int, list[ReportTile]] = defaultdict(list)
    for tile in tiles:
        wanted[tile.shard].append(tile)
    images: dict[int, Image] = {}
    for n, chosen in sorted(wanted.items()):
        shard = deps.store.get_shard(job_id, n)
        if shard is None:
            raise Unreadable(f"Shard {n} of the slide has no document: the report's tiles cannot be read.")
        try:
            decoded = read_shard(deps.blobs, deps.limits, shard, job_id).tiles(only={t.index for t in chosen})
        except ObjectGone as exc:
            raise Unreadable(
                f"Shard {n}'s object is gone from the work bucket (its lifecycle rule deletes shards after"
                " some days): the report's tiles cannot be read."
            ) from exc
        except (ShardRejected, ImageRejected) as exc:
            raise Unreadable(f"Shard {n}: {exc.as_job_error().message}") from exc
        found = {t.index: t for t in decoded}
        for tile in chosen:
            got = found[tile.index]
            if (got.x, got.y, got.w, got.h) != (tile.x, tile.y, tile.w, tile.h):
                raise Unreadable(f"Shard {n}: tile {tile.index} is not where the report's record puts it.")
            images[tile.index] = got.image
    return [images[t.index] for t in tiles]


async def _heartbeat(deps: ReportDeps, job_id: str, token: str) -> None:
    """Renew the report's lease every third of it while the report runs: an expired report lease
    then means a dead worker (the sweep retakes it), however long a report takes on a CPU."""
    while True:
        await asyncio.sleep(deps.lease_seconds / 3)
        if not await asyncio.to_thread(deps.store.extend_report_lease, job_id, token, deps.lease_seconds):
            log.warning("report lease lost", extra={"job_id": job_id})
            return


async def _fail(deps: ReportDeps, job_id: str, token: str, reason: str, code: str) -> Outcome:
    ok = await asyncio.to_thread(deps.store.fail_report, job_id, token, reason, code)
    log.warning("report failed permanently", extra={"job_id": job_id, "error_code": code, "recorded": ok})
    return Outcome.FAILED if ok else Outcome.FENCED


async def _release(deps: ReportDeps, job_id: str, token: str, reason: str, code: str) -> Outcome:
    ok = await asyncio.to_thread(deps.store.release_report, job_id, token, reason, code)
    log.warning("report released for retry", extra={"job_id": job_id, "error_code": code, "released": ok})
    return Outcome.RETRY


async def settle_dead_report(message: JobMessage, deps: ReportDeps, max_attempts: int, give_up_after_s: float) -> int:
    """A `report` message that ran out of delivery attempts; returns the status code to answer.

    Failed with the reason once really tried (leased `max_attempts` times, or not run for
    `give_up_after_s` since its first dead letter); left to a live lease's holder (429); otherwise
    put back in flight with a fresh message (it was refused, not tried). The verdict stands."""
    job_id = message.job_id
    action = await asyncio.to_thread(
        deps.store.settle_dead_report, job_id, max_attempts=max_attempts, give_up_after_s=give_up_after_s
    )
    extra = {"job_id": job_id, "action": str(action)}
    if action == DeadReport.HELD:
        return 429
    if action == DeadReport.REPUBLISH:
        job = await asyncio.to_thread(deps.store.get, job_id)
        if job is not None:
            await asyncio.to_thread(publish_report, deps.store, deps.publisher, job)
        log.warning("dead report message put back in flight", extra=extra)
    elif action == DeadReport.FAILED:
        log.warning("report dead-lettered: failed", extra=extra)
    return 204
