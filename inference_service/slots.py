"""Waiting a bounded time for one of a few places (a semaphore), for the push paths whose work is
too large to queue without limit: shards (MAX_SHARDS_IN_FLIGHT) and slide reports (one at a time)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def held(places: asyncio.Semaphore, wait_s: float) -> AsyncIterator[bool]:
    """`async with held(places, wait_s) as ok:` ok is True while a place is held (given back on
    exit), False when none came free within `wait_s` (the caller answers 429)."""
    try:
        await asyncio.wait_for(places.acquire(), timeout=wait_s)
    except TimeoutError:
        yield False
        return
    try:
        yield True
    finally:
        places.release()
