"""Serving the built frontend (console/web/dist): files by path, index.html for app routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Healer console</title>
<body style="font-family:sans-serif;margin:3rem"><h1>Healer console</h1>
<p>The frontend is not built. Run <code>make console-build</code>, then reload.</p>
<p>The API is up: <a href="/api/jobs">/api/jobs</a>.</p></body>"""


def mount_frontend(app: FastAPI, dist: Path) -> None:
    """Serve `dist` at `/`; any unknown non-API path gets index.html (client-side routing)."""
    root = dist.resolve()

    @app.get("/{path:path}", include_in_schema=False)
    def frontend(path: str) -> Response:
        if path.startswith("api/") or path == "api":
            raise HTTPException(status_code=404, detail="Not found.")
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT)
        candidate = (root / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(root):
            # Vite fingerprints everything under assets/: cache it for good.
            immutable = candidate.parent.name == "assets"
            headers = {"Cache-Control": "public, max-age=31536000, immutable"} if immutable else {}
            return FileResponse(candidate, headers=headers)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
