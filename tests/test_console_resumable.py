"""Resumable uploads through the console on the local stack: chunks relayed to the storage emulator,
size bound into the session, interrupted uploads resumed, tampering refused."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import httpx  # the HTTP client package this Starlette's TestClient uses

from console.backend.app import create_app
from console.backend.resumable import SLIDE_SUFFIXES, size_limit
from console.backend.slide_settings import SlideViewerSettings
from healer_core.store import JobStore
from tests.console_helpers import console_settings

pytestmark = pytest.mark.emulator
CHUNK = 256 * 1024


@pytest.fixture
def client(bucket: Any, store: JobStore, emulator_cfg: Any, tmp_path: Path) -> Iterator[TestClient]:
    settings = console_settings(emulator_cfg, bucket, store, tmp_path / "no-dist", MAX_IMAGE_BYTES=CHUNK)
    slides = SlideViewerSettings(
        CONSOLE_UPLOAD_CHUNK_BYTES=CHUNK, MAX_SLIDE_BYTES=64 * CHUNK, CONSOLE_SLIDE_CACHE_DIR=tmp_path / "cache"
    )
    with TestClient(create_app(settings, store=store, slide_settings=slides)) as test_client:
        yield test_client


def _start(client: TestClient, name: str, size: int, **extra: Any) -> httpx.Response:
    return client.post(
        "/api/uploads/resumable", json={"name": name, "size": size, "content_type": "image/tiff", **extra}
    )


def _put(client: TestClient, url: str, data: bytes, start: int, total: int) -> httpx.Response:
    content_range = f"bytes {start}-{start + len(data) - 1}/{total}" if data else f"bytes */{total}"
    return client.put(url, content=data, headers={"Content-Range": content_range})


def _persisted(response: httpx.Response) -> int:
    """Bytes the session holds, from a 308's Range header (none yet: no header)."""
    match = re.fullmatch(r"bytes=0-(\d+)", response.headers.get("range", ""))
    return int(match[1]) + 1 if match else 0


def test_info_tells_the_page_how_to_send_large_files(client: TestClient) -> None:
    info = client.get("/api/uploads/resumable").json()
    assert info["chunk_bytes"] == CHUNK and info["max_slide_bytes"] == 64 * CHUNK
    assert ".svs" in info["slide_suffixes"] and ".ndpi" in info["slide_suffixes"]


def test_a_slide_arrives_in_chunks_and_resumes_after_an_interruption(client: TestClient, bucket: Any) -> None:
    data = os.urandom(5 * CHUNK + 1234)
    total = len(data)
    session = _start(client, "case 20/big slide.svs", total, prefix="lab b").json()
    assert session["object_name"].startswith("console/lab b/") and session["object_name"].endswith("/big slide.svs")
    assert session["chunk_bytes"] == CHUNK and session["size"] == total
    url = session["session_url"]

    # Nothing sent yet: a status query says so (no Range), as Cloud Storage does.
    status = _put(client, url, b"", 0, total)
    assert status.status_code == 308 and _persisted(status) == 0
    first = _put(client, url, data[:CHUNK], 0, total)
    assert first.status_code == 308 and _persisted(first) == CHUNK
    second = _put(client, url, data[CHUNK : 2 * CHUNK], CHUNK, total)
    assert _persisted(second) == 2 * CHUNK

    # The connection drops mid-upload: the page asks where the session stands and goes on from there.
    status = _put(client, url, b"", 0, total)
    assert status.status_code == 308 and _persisted(status) == 2 * CHUNK
    # A chunk sent again from an old offset is not taken twice.
    assert _put(client, url, data[:CHUNK], 0, total).status_code == 409
    offset = _persisted(status)
    final: httpx.Response | None = None
    while offset < total:
        final = _put(client, url, data[offset : offset + CHUNK], offset, total)
        offset = _persisted(final) if final.status_code == 308 else total
    assert final is not None and final.status_code in (200, 201), final.text
    assert final.json()["name"] == session["object_name"] and int(final.json()["size"]) == total
    stored = bucket.get_blob(session["object_name"])
    assert stored is not None and stored.download_as_bytes() == data


def test_sessions_are_bound_and_refuse_tampering(client: TestClient) -> None:
    size = 3 * CHUNK
    url = _start(client, "slide.svs", size).json()["session_url"]
    chunk = b"x" * CHUNK
    # Another total than the session's, a range that does not match the body, an oversize chunk.
    assert _put(client, url, chunk, 0, size + 1).status_code == 400
    assert client.put(url, content=chunk, headers={"Content-Range": f"bytes 0-9/{size}"}).status_code == 400
    assert (
        client.put(url, content=chunk + b"y", headers={"Content-Range": f"bytes 0-{CHUNK}/{size}"}).status_code == 413
    )
    # A forged or altered token.
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert _put(client, forged, chunk, 0, size).status_code == 403
    token = url.rsplit("/", 1)[1]
    payload = token.split(".")[0]
    assert _put(client, url.replace(payload, payload[:-2] + "AA"), chunk, 0, size).status_code == 403


def test_size_limits_follow_the_kind_of_file(client: TestClient) -> None:
    # Slide formats get MAX_SLIDE_BYTES; anything else the image limit (MAX_IMAGE_BYTES).
    assert _start(client, "scan.ndpi", 64 * CHUNK).status_code == 200
    assert _start(client, "scan.ndpi", 64 * CHUNK + 1).status_code == 413
    too_big = _start(client, "photo.png", CHUNK + 1)
    assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]
    assert _start(client, "photo.png", 10, content_type="not a type").status_code == 422
    assert size_limit("A.SVS", 1, 2) == 2 and size_limit("a.jpeg", 1, 2) == 1
    assert all(s.startswith(".") and s == s.lower() for s in SLIDE_SUFFIXES)
