"""Dead letters of shard messages (the jobs topic's dead-letter subscription, shard tasks).

A shard message runs out of delivery attempts mostly without the shard being tried: refused for
room (429) while a slide's hundreds of shards queue, or while the service restarts. So
(`SlideStore.settle_dead_shard`):

    the shard or its slide is finished, or gone          → nothing to do                    204
    a live lease holds the shard                         → left to its holder               429
    leased MAX_DELIVERY_ATTEMPTS times without a count,
    or not run DEAD_LETTER_GIVE_UP_SECONDS after its
    first dead letter                                    → the shard and its slide fail
                                                           (dead_lettered, retryable)       204
    otherwise                                            → queued again, message republished 204
"""

from __future__ import annotations

import asyncio
import logging

from healer_core.schema import ErrorCode, JobError, JobMessage
from healer_core.slide_store import DeadShard
from inference_service.shard_worker import ShardDeps

log = logging.getLogger("healer.shard")


async def settle_dead_shard(message: JobMessage, deps: ShardDeps, max_attempts: int, give_up_after_s: float) -> int:
    """Settle one dead shard message; returns the status code to answer."""
    job_id, n = message.job_id, message.shard
    if n is None:
        return 204
    store = deps.store
    action = await asyncio.to_thread(
        store.settle_dead_shard, job_id, n, max_attempts=max_attempts, give_up_after_s=give_up_after_s
    )
    extra = {"job_id": job_id, "shard": n, "action": str(action)}
    if action == DeadShard.HELD:
        return 429
    if action == DeadShard.REPUBLISH:
        await asyncio.to_thread(deps.publisher.publish, message)
        await asyncio.to_thread(store.mark_shards_published, job_id, [n])
        log.warning("dead shard message put back in flight", extra=extra)
    elif action == DeadShard.FAILED:
        error = JobError(
            code=ErrorCode.DEAD_LETTERED,
            message=f"Shard {n} failed on every delivery attempt; the message went to the dead-letter topic.",
            retryable=True,
        )
        await asyncio.to_thread(store.fail_unless_done, job_id, error)
        log.warning("slide dead-lettered by its shard", extra=extra)
    return 204
