"""Resumable uploads: large files (whole slides, up to MAX_SLIDE_BYTES) sent in chunks with progress.

The browser speaks Cloud Storage's resumable protocol to a *session URL*: each chunk is a PUT with
`Content-Range: bytes START-END/TOTAL`; `308` with `Range: bytes=0-LAST` means "go on from
LAST + 1"; `200`/`201` ends the upload; a PUT with `Content-Range: bytes */TOTAL` and no body asks
where the upload stands, which is how an interrupted upload resumes.

On Google Cloud the console starts the session itself (`GcsSessionStarter`), with the object's
size bound (`X-Upload-Content-Length`), `ifGenerationMatch=0` (never replaces an object) and the
page's origin (Cloud Storage then answers the browser's cross-origin chunks). The session URL is
the only credential the browser gets, for that one object.

On the local stack the storage emulator answers no CORS preflight, so the session URL is a console
URL carrying an HMAC-signed token (`LocalSessionRelay`): the token names the emulator's session,
the size and an expiry; the console checks each chunk against them and relays it to the emulator's
own resumable upload. Only one chunk is in memory at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

import httpx
from google.cloud import storage  # type: ignore[attr-defined]
from pydantic import BaseModel, Field

LOCAL_SESSION_PATH = "/api/uploads/resumable/local"
# Suffixes of the whole-slide formats (issue 12); such files may be up to MAX_SLIDE_BYTES. Plain
# images keep MAX_IMAGE_BYTES. The pipeline decides from the bytes; this only sizes the gate.
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".svslide", ".mrxs", ".vms", ".vmu", ".czi")
_CONTENT_RANGE = re.compile(r"^bytes (?:(?P<start>\d+)-(?P<end>\d+)|\*)/(?P<total>\d+)$")


class ResumableRequest(BaseModel):
    """One large file the browser wants to upload in chunks."""

    name: str = Field(min_length=1, max_length=512, description="the file's name on the user's machine")
    content_type: str = Field(default="", max_length=200)
    size: int = Field(ge=1, description="bytes; bound into the session")
    prefix: str = Field(default="", max_length=256)


class ResumableSession(BaseModel):
    """Where to send the chunks of one file."""

    file_name: str
    bucket: str
    object_name: str
    session_url: str
    size: int
    chunk_bytes: int
    expires_at: datetime


class ResumableInfo(BaseModel):
    """What the page needs to choose and drive a resumable upload."""

    chunk_bytes: int
    max_slide_bytes: int
    max_image_bytes: int
    slide_suffixes: list[str]


class SessionStarter(Protocol):
    """Starts a resumable session for exactly `size` bytes of `name`; returns the session URL."""

    def start(self, bucket: str, name: str, content_type: str, size: int, origin: str | None) -> str: ...


def size_limit(file_name: str, max_image_bytes: int, max_slide_bytes: int) -> int:
    """The largest file the console accepts under this name: slide formats get the slide budget."""
    return max_slide_bytes if PurePosixPath(file_name.lower()).suffix in SLIDE_SUFFIXES else max_image_bytes


class GcsSessionStarter:
    """Cloud Storage resumable sessions, started with the console's own credentials."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def start(self, bucket: str, name: str, content_type: str, size: int, origin: str | None) -> str:
        blob = self._client.bucket(bucket).blob(name)
        url: str = blob.create_resumable_upload_session(
            content_type=content_type, size=size, origin=origin, if_generation_match=0
        )
        return url


@dataclass(frozen=True)
class RelayAnswer:
    """What the relay hands back to the browser."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None = None


class RelayRefused(Exception):
    """A chunk the relay will not forward; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LocalSessionRelay:
    """Resumable sessions on the storage emulator, behind console URLs (the local stack)."""

    def __init__(
        self, client: storage.Client, emulator_url: str, max_chunk_bytes: int, secret: bytes | None = None
    ) -> None:
        self._client = client
        self._emulator = emulator_url.rstrip("/")
        self.max_chunk_bytes = max_chunk_bytes
        self._secret = secret or secrets.token_bytes(32)
        self.ttl_seconds = 24 * 3600
        # httpx logs every request URL at INFO, and the emulator's session URL names the object
        # (patient identifiers): keep httpx to warnings in this process.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    def start(self, bucket: str, name: str, content_type: str, size: int, origin: str | None) -> str:
        location = GcsSessionStarter(self._client).start(bucket, name, content_type, size, None)
        claims = {"u": location, "n": size, "e": int(time.time() + self.ttl_seconds)}
        payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{LOCAL_SESSION_PATH}/{payload}.{self._mac(payload)}"

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims, when it was issued here and has not expired."""
        payload, _, sig = token.partition(".")
        if not sig or not hmac.compare_digest(self._mac(payload), sig):
            raise RelayRefused(403, "The upload session URL is invalid.")
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if claims["e"] < time.time():
            raise RelayRefused(403, "The upload session has expired; start the upload again.")
        if not str(claims["u"]).startswith(self._emulator + "/"):
            raise RelayRefused(403, "The upload session URL is invalid.")
        return claims

    def check_range(self, content_range: str, size: int, body_len: int) -> None:
        """Refuse a chunk whose Content-Range does not fit the session's size or the body."""
        match = _CONTENT_RANGE.match(content_range.strip())
        if match is None:
            raise RelayRefused(400, "Content-Range must be 'bytes START-END/TOTAL' or 'bytes */TOTAL'.")
        if int(match["total"]) != size:
            raise RelayRefused(400, f"This upload session is for {size} bytes.")
        if match["start"] is None:
            if body_len:
                raise RelayRefused(400, "A status query carries no body.")
            return
        start, end = int(match["start"]), int(match["end"])
        if not start <= end < size or end - start + 1 != body_len:
            raise RelayRefused(400, "The chunk does not match its Content-Range.")

    async def relay(self, token: str, content_range: str, chunk: bytes) -> RelayAnswer:
        """Forward one chunk (or a status query) to the emulator's session."""
        claims = self.claims(token)
        self.check_range(content_range, int(claims["n"]), len(chunk))
        async with httpx.AsyncClient(timeout=120.0) as client:
            response = await client.put(str(claims["u"]), content=chunk, headers={"Content-Range": content_range})
        if response.status_code == 308:
            headers = {"Range": response.headers["Range"]} if "Range" in response.headers else {}
            return RelayAnswer(308, headers)
        if response.status_code in (200, 201):
            resource = response.json()
            body = {key: resource.get(key) for key in ("bucket", "name", "generation", "size")}
            return RelayAnswer(response.status_code, {}, body)
        # e.g. a chunk that starts where the emulator does not expect it: the page asks for the
        # status and resumes from there.
        return RelayAnswer(409 if response.status_code == 400 else 502, {}, {"detail": "The chunk was not accepted."})
