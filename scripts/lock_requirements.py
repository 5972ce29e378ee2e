"""Regenerate every hash-locked requirements file from its inputs (`make lock`).

Each lock is written by `uv pip compile --generate-hashes` for the Python and platform that
installs it, from pyproject.toml (with extras) and/or a `.in` file beside the lock. LOCKS below is
the single list of them: tests/terraform/test_locks.py reads it to check, offline, that every
lock still satisfies its inputs, and every consumer installs with `--require-hashes`.

Rerunning keeps the existing pins where the inputs allow (uv reads the old lock); `--upgrade`
moves every pin to the newest allowed release. Needs the network (PyPI) and uv (`make tools`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORM = "x86_64-manylinux_2_28"  # Cloud Build, Cloud Run, Cloud Functions, CI: Linux x86_64
# Where `make lock` finds the CPU torch wheel of requirements/dev.in: the machines' wheel folder,
# else PyTorch's CPU index.
TORCH_CPU_WHEELS = os.environ.get("HEALER_TORCH_CPU_WHEELS", "/opt/wheels")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Lock:
    """One hash-locked requirements file and what it is compiled from."""

    output: str  # the lock, relative to the repository
    sources: tuple[str, ...]  # pyproject.toml and/or .in files
    python: str  # the Python version that installs it
    consumer: str  # who installs it (documentation and error messages)
    extras: tuple[str, ...] = ()  # pyproject.toml extras
    overrides: str | None = None  # uv override file (drops packages)
    no_deps: bool = False  # pin exactly the listed packages (downloads that are never installed)
    needs_torch_cpu: bool = False
    removed: tuple[str, ...] = field(default=())  # declared packages the lock leaves out on purpose


def pyproject_extras(exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """pyproject.toml's optional-dependency groups, less some: a new extra joins the venv's lock."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return tuple(sorted(set(project.get("optional-dependencies", {})) - set(exclude)))


LOCKS: tuple[Lock, ...] = (
    Lock(
        "requirements/dev.txt",
        ("pyproject.toml", "requirements/dev.in"),
        "3.11",
        "make venv (Makefile), CI, cloudbuild/test.yaml",
        # Every extra but gpu (bitsandbytes, CUDA only): a later extra (e.g. slide) is in the
        # venv as soon as `make lock` ran, and test_locks.py reports the lock stale until then.
        extras=pyproject_extras(exclude=("gpu",)),
        needs_torch_cpu=True,
    ),
    Lock(
        "requirements/inference.txt",
        ("pyproject.toml", "requirements/inference.in"),
        "3.12",
        "inference_service/Dockerfile (Ubuntu 24.04's Python 3.12)",
        extras=("model", "gpu"),
        overrides="requirements/no-torch.txt",
        removed=("torch",),
    ),
    Lock(
        "requirements/model-fetch.txt",
        ("requirements/model-fetch.in",),
        "3.12",
        "inference_service/Dockerfile, model stage (python:3.12-slim)",
    ),
    Lock(
        "requirements/slide.txt",
        ("pyproject.toml",),
        "3.11",
        "slide_service/Dockerfile (python:3.11-slim)",
        # pyproject.toml's dependencies with the slide extra (openslide-python, the openslide-bin
        # wheel with its own libopenslide, tifffile, imagecodecs): no torch, no model.
        extras=("slide",),
    ),
    Lock(
        "console/requirements.txt",
        ("console/requirements.in",),
        "3.11",
        "console/Dockerfile (python:3.11-slim)",
    ),
    Lock(
        "ingest_function/requirements.txt",
        ("ingest_function/requirements.in",),
        "3.11",
        "the function bundle (Cloud Functions python311)",
    ),
    Lock(
        "make/tools-requirements.txt",
        ("make/tools-requirements.in",),
        "3.11",
        "make tools (.venv-tools: checkov, uv, hadolint)",
    ),
    Lock(
        "make/provider-schemas.txt",
        ("make/provider-schemas.in",),
        "3.11",
        "make provider-schemas (pip download, never installed)",
        no_deps=True,
    ),
)


def uv_command(uv: str, lock: Lock, upgrade: bool) -> list[str]:
    """The `uv pip compile` invocation that writes one lock."""
    cmd = [uv, "pip", "compile", *lock.sources, "-o", lock.output, "--quiet"]
    cmd += ["--generate-hashes", "--python-version", lock.python, "--python-platform", PLATFORM]
    cmd += ["--custom-compile-command", "make lock", "--no-config"]
    for extra in lock.extras:
        cmd += ["--extra", extra]
    if lock.overrides:
        cmd += ["--override", lock.overrides]
    if lock.no_deps:
        cmd.append("--no-deps")
    if lock.needs_torch_cpu:
        if any(Path(TORCH_CPU_WHEELS).glob("torch-*+cpu-*.whl")):
            cmd += ["--find-links", TORCH_CPU_WHEELS]
        else:
            cmd += ["--extra-index-url", TORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]
    if upgrade:
        cmd.append("--upgrade")
    return cmd


def find_uv() -> str:
    """uv from the tools virtualenv (`make tools`), else from PATH."""
    local = REPO / ".venv-tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        raise SystemExit("lock_requirements: uv not found: run `make tools` first")
    return found


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: regenerate the selected (default: all) locks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest allowed release")
    parser.add_argument("only", nargs="*", help="lock files to regenerate (default: all)")
    args = parser.parse_args(argv)
    uv = find_uv()
    selected = [lock for lock in LOCKS if not args.only or lock.output in args.only]
    unknown = set(args.only) - {lock.output for lock in LOCKS}
    if unknown:
        raise SystemExit(f"lock_requirements: unknown lock(s) {sorted(unknown)}")
    for lock in selected:
        print(f"lock: {lock.output}  ({lock.consumer}, Python {lock.python})", flush=True)
        env = {**os.environ, "UV_NO_PROGRESS": "1"}
        result = subprocess.run(uv_command(uv, lock, args.upgrade), cwd=REPO, env=env)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
