"""What the browser tests need: Debian's Chromium, playwright-core and the built console page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "console" / "web"
# Where the browser tests save what they saw: .healer/screenshots (a test run never rewrites the
# docs); `make screenshots` runs them alone, on their own stack, into docs/screenshots.
SCREENSHOTS = Path(os.environ.get("HEALER_SCREENSHOTS") or REPO / ".healer" / "screenshots").resolve()
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def ensure_chromium() -> Path:
    """Debian's chromium, installed if missing (as `make console-e2e-deps` does); skip if impossible."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["update", "-qq"], ["install", "-y", "-qq", "chromium"]):
            subprocess.run([apt, *args], check=False, timeout=900, env=env, capture_output=True)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent and could not be installed with apt-get (make console-e2e-deps)")
    return CHROMIUM


def ensure_frontend() -> None:
    """playwright-core and the built page (what `make console-build console-e2e-deps` provide)."""
    npm = shutil.which("npm")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        assert npm, "npm is needed to install playwright-core (console/web)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True, timeout=600)
    if not (WEB / "dist" / "index.html").is_file():
        assert npm, "npm is needed to build the console frontend"
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True, timeout=600)


def node() -> str:
    """The node binary, or skip."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    return found


def run_e2e(script: str, *args: str, timeout_s: float = 420) -> dict[str, Any]:
    """Run console/web/e2e/`script` with node from the repository root; the JSON line it printed
    last (what it saw). Fails the test with its output when it exits non-zero or prints none."""
    proc = subprocess.run(
        [node(), str(WEB / "e2e" / script), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    seen: dict[str, Any] = json.loads(lines[-1])
    return seen
