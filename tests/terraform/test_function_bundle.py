"""The function bundle is self-contained: built by scripts/bundle_function.py, it installs into a
fresh virtualenv from its own requirements.txt alone and exposes both entry points — exactly what
Cloud Functions does with the zip Terraform uploads."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from tfhelpers import REPO

BUNDLER = REPO / "scripts" / "bundle_function.py"

LOAD_ENTRY_POINTS = """
import pathlib, sys
import functions_framework
import healer_core, main
bundle = pathlib.Path.cwd().resolve()
for module in (main, healer_core):
    assert pathlib.Path(module.__file__).resolve().is_relative_to(bundle), module.__file__
# The same loader Cloud Functions runs: target + signature type, from the bundle's main.py.
functions_framework.create_app("ingest", "main.py", "cloudevent")
functions_framework.create_app("reconcile", "main.py", "http")
print("entry points ok")
"""


def test_bundle_installs_in_a_fresh_venv_and_exposes_entry_points(tmp_path: Path) -> None:
    if not (REPO / "ingest_function" / "main.py").exists():
        pytest.skip("ingest_function/main.py does not exist yet")
    bundle = tmp_path / "function"
    subprocess.run([sys.executable, str(BUNDLER), "--out", str(bundle)], check=True, timeout=60)
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"main.py", "requirements.txt", "healer_core/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "requirements.in" not in names, "the bundle carries the lock, not its input"
    # Hash-locked: with a hash on every requirement pip installs in hash-checking mode, as
    # Cloud Functions' build will.
    requirements = (bundle / "requirements.txt").read_text()
    assert requirements == (REPO / "ingest_function" / "requirements.txt").read_text()
    assert "--hash=sha256:" in requirements

    # A venv without the project's site-packages; pip's cache keeps reruns quick.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", "requirements.txt"],
        cwd=bundle, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, f"bundle requirements do not install:\n{install.stderr[-3000:]}"

    load = subprocess.run(
        [str(python), "-s", "-c", LOAD_ENTRY_POINTS], cwd=bundle, env=env, capture_output=True, text=True, timeout=120
    )
    assert load.returncode == 0, f"bundle does not import on its own:\n{load.stdout}\n{load.stderr[-3000:]}"
    assert "entry points ok" in load.stdout
