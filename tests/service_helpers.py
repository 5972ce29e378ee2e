"""Helpers for driving the service in-process: push envelopes, images, a ready TestClient."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from healer_core.schema import JobMessage


def envelope(message: JobMessage, attempt: int | None = None, message_id: str = "m-1") -> dict[str, Any]:
    """A Pub/Sub push request body for one job message."""
    body: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(message.to_data()).decode(),
            "attributes": message.attributes(),
            "messageId": message_id,
            "publishTime": "2026-11-29T10:00:00Z",
        },
        "subscription": "projects/healer-test/subscriptions/jobs-push",
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return body


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 80, 160)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def wait_ready(client: TestClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        if response.json().get("status") == "failed":
            raise AssertionError(f"service failed to start: {response.json()}")
        time.sleep(0.05)
    raise AssertionError("service not ready in time")


def push(client: TestClient, message: JobMessage, **kw: Any) -> int:
    return client.post("/pubsub/push", content=json.dumps(envelope(message, **kw))).status_code


@contextlib.contextmanager
def serve_json(body: dict[str, Any], path: str) -> Iterator[str]:
    """Serve `body` as JSON on a local port (a stand-in for Google's key endpoints); yields its URL."""
    payload = json.dumps(body).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
