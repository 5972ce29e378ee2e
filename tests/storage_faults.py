"""A fault-injecting HTTP proxy in front of the Cloud Storage emulator, for tests.

The real client talks to it unchanged (`GcsBlobSource.at_endpoint(project, proxy.url)`); every
request is forwarded to the emulator, except that an object whose name contains
`fault-<kind>-<stage>` gets fault `<kind>` on its metadata read (`meta`) or its media read
(`media`). Answers that name the object do so the way Cloud Storage does (its 403 message names
`bucket/object`), so a test can check that no name reaches a log line.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

# kind → (HTTP status, reason) for the faults that are plain error answers.
STATUS_FAULTS: dict[str, tuple[int, str]] = {
    "forbidden": (403, "Forbidden"),
    "unauthorized": (401, "Unauthorized"),
    "badrequest": (400, "Bad Request"),
    "throttled": (429, "Too Many Requests"),
    "unavailable": (503, "Service Unavailable"),
    "gone": (404, "Not Found"),
}
# Faults of the transport or the payload rather than an HTTP status.
OTHER_FAULTS = ("reset", "hang", "short", "garbage", "checksum")
FAULTS = tuple(STATUS_FAULTS) + OTHER_FAULTS
_MARKER = re.compile(r"fault-([a-z]+)-(meta|media)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class FaultyStorage:
    """The proxy: `url` is its endpoint; `hang_s` how long a `hang` fault stalls."""

    def __init__(self, emulator_url: str, hang_s: float = 5.0) -> None:
        self.emulator_url = emulator_url.rstrip("/")
        self.hang_s = hang_s
        self.injected: list[tuple[str, str]] = []  # (kind, stage) of every fault served
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FaultyStorage]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        media = "alt=media" in parts.query or path.startswith("/download/")
        match = _MARKER.search(path)
        fault = match.group(1) if match and match.group(2) == ("media" if media else "meta") else None
        if fault is not None:
            self.injected.append((fault, "media" if media else "meta"))
        if fault in STATUS_FAULTS:
            status, reason = STATUS_FAULTS[fault]
            # Cloud Storage's own wording names the object, e.g. "… does not have storage.objects.get
            # access to the Google Cloud Storage object. Permission … denied on resource (or it may
            # not exist)." with the bucket/object path in the message.
            name = path.split("/o/", 1)[-1]
            error = {"error": {"code": status, "message": f"{reason}: {name}", "errors": [{"reason": fault}]}}
            self._answer(handler, status, json.dumps(error).encode(), {"Content-Type": "application/json"})
            return
        if fault == "reset":
            self._reset(handler)
            return
        if fault == "hang":
            time.sleep(self.hang_s)
            self._reset(handler)
            return
        forwarded = {key: value for key in ("Range",) if (value := handler.headers.get(key))}
        upstream = requests.get(f"{self.emulator_url}{handler.path}", headers=forwarded, timeout=30)
        body = upstream.content
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if fault == "garbage":
            self._answer(handler, 200, b"<html>not the JSON API</html>", {"Content-Type": "application/json"})
        elif fault == "checksum":
            corrupted = bytes([body[0] ^ 0xFF]) + body[1:] if body else body
            self._answer(handler, upstream.status_code, corrupted, headers)
        elif fault == "short":
            handler.send_response(upstream.status_code)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            self._reset(handler)
        else:
            self._answer(handler, upstream.status_code, body, headers)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        """Drop the connection without (the rest of) an answer."""
        handler.close_connection = True
        with suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)
