"""Request bodies read with a cap: reading stops as soon as a body is longer than it may be, so
an oversized upload never sits whole in the console's memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import HTTPException


async def read_capped(stream: AsyncIterator[bytes], limit: int, too_long: str) -> bytes:
    """The whole body of `stream`; HTTP 413 with `too_long` as soon as it passes `limit` bytes."""
    body = bytearray()
    async for part in stream:
        body += part
        if len(body) > limit:
            raise HTTPException(status_code=413, detail=too_long)
    return bytes(body)
