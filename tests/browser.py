"""What the browser tests need: Debian's Chromium, playwright-core and the built console page."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "console" / "web"
SCREENSHOTS = REPO / "docs" / "screenshots"
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
