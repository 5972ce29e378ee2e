"""One shard, start to finish: admission → lease → read and validate the shard object → score
its tiles through the micro-batcher (verdict only; each tile safely decoded in its turn) → store
the scores and count the shard into its slide (one transaction) → the last shard publishes
`finalize`.

`process_shard` returns an Outcome like `worker.process_job`, and the push route answers the
same status codes: 204 counted / already counted / failed permanently, 429 held or no room,
503 transient (lease released).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from PIL.Image import Image

from healer_core.publisher import Publisher
from healer_core.schema import ErrorCode, JobError, JobMessage
from healer_core.schema import Shard as ShardDoc
from healer_core.slide_messages import finalize_if_due
from healer_core.slide_store import Provenance, SlideStore, StepStatus
from healer_core.topics import topic_router
from healer_media.blobs import BlobSource
from healer_media.errors import ImageRejected, ObjectGone, ShardRejected, TransientError
from healer_media.shard import OpenedShard, ShardLimits, TileRef, open_shard
from inference_service.engine.base import ModelInfo
from inference_service.tile_scoring import TileScorer
from inference_service.worker import Outcome

if TYPE_CHECKING:
    from inference_service.runtime import Runtime

log = logging.getLogger("healer.shard")


@dataclass
class ShardDeps:
    store: SlideStore
    blobs: BlobSource
    scorer: TileScorer
    publisher: Publisher  # finalize to SLIDES_TOPIC, shard republishes to JOBS_TOPIC
    info: ModelInfo
    owner: str
    lease_seconds: float
    budget_seconds: float  # per batch of tiles: a shard gets ceil(tiles / batch) of them
    batch_size: int
    limits: ShardLimits


def shard_deps(runtime: Runtime) -> ShardDeps:
    """The shard path's dependencies, from the service's runtime (after the model loaded)."""
    assert runtime.inference is not None, "the model is not loaded yet"
    s = runtime.settings
    return ShardDeps(
        store=SlideStore.of(runtime.store),
        blobs=runtime.blobs,
        scorer=TileScorer(runtime.inference, s.max_shards_in_flight, s.max_batch_size),
        publisher=topic_router(s.project_id, s.jobs_topic, s.slides_topic),
        info=runtime.inference.info,
        owner=runtime.owner,
        lease_seconds=s.lease_seconds,
        budget_seconds=s.inference_budget_seconds,
        batch_size=s.max_batch_size,
        limits=ShardLimits(),
    )


def shard_location(uri: str) -> tuple[str, str]:
    """(bucket, name) of a gs:// URI."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket or not name:
        raise ShardRejected("object", "the shard document names no object")
    return bucket, name


def read_shard(blobs: BlobSource, limits: ShardLimits, shard: ShardDoc, job_id: str) -> OpenedShard:
    """The shard's object, pinned to the generation its document records, validated by the safe
    shard reader (`open_shard`); its tiles are decoded by whoever uses them. Blocking.

    Raises ObjectGone, ShardRejected (it fails validation) or TransientError."""
    bucket, name = shard_location(shard.object)
    data = blobs.download(bucket, name, shard.generation, limits.max_bytes)
    return open_shard(data, limits, job_id, shard.n)


def _matches(opened: OpenedShard, expected: list[tuple[int, int, int, int, int]]) -> None:
    got = [(t.index, t.x, t.y, t.w, t.h) for t in opened.refs]
    if got != expected:
        raise ShardRejected("tiles_mismatch", "the shard object's tiles are not the ones its document lists")


def _image(opened: OpenedShard, ref: TileRef) -> Image:
    return opened.decode(ref).image


async def process_shard(message: JobMessage, deps: ShardDeps) -> Outcome:
    """Score and count one shard, or hand it back for a retry."""
    job_id, n = message.job_id, message.shard
    if n is None:
        log.error("shard message without a shard number acknowledged", extra={"job_id": job_id})
        return Outcome.FAILED
    async with deps.scorer.admitted() as admitted:
        if not admitted:
            return Outcome.BUSY  # before touching Firestore: cheap backpressure
        return await _leased(message, n, deps)


async def _leased(message: JobMessage, n: int, deps: ShardDeps) -> Outcome:
    job_id, store = message.job_id, deps.store
    lease = await asyncio.to_thread(store.lease_shard, job_id, n, deps.owner, deps.lease_seconds)
    if lease.status == StepStatus.MISSING:
        log.warning("shard message for no shard document acknowledged", extra={"job_id": job_id, "shard": n})
        return Outcome.ALREADY_TERMINAL
    if lease.status == StepStatus.TERMINAL:
        if lease.job is not None and not lease.job.state.terminal:
            # Counted by an earlier delivery whose finalize publish may have failed: make sure.
            await asyncio.to_thread(finalize_if_due, store, deps.publisher, job_id)
        return Outcome.ALREADY_TERMINAL
    if lease.status != StepStatus.ACQUIRED or lease.shard is None:
        return Outcome.HELD
    shard, token = lease.shard, lease.token
    log.info("shard leased", extra={"job_id": job_id, "shard": n, "attempt": shard.attempts})
    try:
        opened = await asyncio.to_thread(read_shard, deps.blobs, deps.limits, shard, job_id)
        _matches(opened, [(t.index, t.x, t.y, t.w, t.h) for t in shard.tiles])
        budget = deps.budget_seconds * max(1, math.ceil(len(opened.refs) / deps.batch_size))
        tiles = [partial(_image, opened, ref) for ref in opened.refs]
        scores, inference_ms = await asyncio.wait_for(deps.scorer.score(tiles), timeout=budget)
    except asyncio.CancelledError:
        error = JobError(code=ErrorCode.ENGINE_ERROR, message="Service shut down mid-shard.", retryable=True)
        await asyncio.shield(asyncio.to_thread(store.release_shard, job_id, n, token, error))
        raise
    except (ShardRejected, ImageRejected, ObjectGone) as exc:
        reason = exc.as_job_error().message if isinstance(exc, ShardRejected | ImageRejected) else "object gone"
        error = JobError(code=ErrorCode.BAD_SHARD, message=f"shard {n}: {reason}")
        return await _fail(deps, job_id, n, token, error)
    except TransientError as exc:
        return await _release(deps, job_id, n, token, exc.as_job_error())
    except TimeoutError:
        error = JobError(
            code=ErrorCode.ENGINE_ERROR, message=f"Shard {n} exceeded its inference budget.", retryable=True
        )
        return await _release(deps, job_id, n, token, error)
    except Exception as exc:
        log.exception("shard failed", extra={"job_id": job_id, "shard": n})
        return await _release(deps, job_id, n, token, JobError(code=ErrorCode.ENGINE_ERROR, message=type(exc).__name__))
    info = deps.info
    provenance = Provenance(info.model_id, info.model_revision, info.quantization, info.prompt_version)
    counted = await asyncio.to_thread(store.complete_shard, job_id, n, token, scores, provenance, inference_ms)
    if not counted:
        log.warning("shard scores fenced off: lease lost to another worker", extra={"job_id": job_id, "shard": n})
        return Outcome.FENCED
    log.info("shard counted", extra={"job_id": job_id, "shard": n, "tiles": len(scores), "ms": round(inference_ms)})
    try:
        if await asyncio.to_thread(finalize_if_due, store, deps.publisher, job_id):
            log.info("last shard counted: finalize published", extra={"job_id": job_id})
    except Exception as exc:
        # Counted: the redelivery finds the shard done and publishes the finalize (or the sweep does).
        log.warning("finalize publish failed", extra={"job_id": job_id, "error": type(exc).__name__})
        return Outcome.RETRY
    return Outcome.DONE


async def _fail(deps: ShardDeps, job_id: str, n: int, token: str, error: JobError) -> Outcome:
    """A shard that can never be scored fails its slide: a verdict from part of it would mislead."""
    ok = await asyncio.to_thread(deps.store.fail_shard, job_id, n, token, error)
    if ok:
        await asyncio.to_thread(deps.store.fail_unless_done, job_id, error)
    log.warning("shard failed permanently", extra={"job_id": job_id, "shard": n, "error_code": error.code})
    return Outcome.FAILED if ok else Outcome.FENCED


async def _release(deps: ShardDeps, job_id: str, n: int, token: str, error: JobError) -> Outcome:
    error = error.model_copy(update={"retryable": True})
    ok = await asyncio.to_thread(deps.store.release_shard, job_id, n, token, error)
    log.warning(
        "shard released for retry", extra={"job_id": job_id, "shard": n, "error_code": error.code, "released": ok}
    )
    return Outcome.RETRY
