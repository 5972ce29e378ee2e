"""Hash-locked dependencies: every lock satisfies its inputs, and everything installs from a lock.

The locks (scripts/lock_requirements.py, LOCKS) are written by `make lock` with uv. These tests
need no network: they compare what pyproject.toml and the *.in files declare with what each lock
pins (a dependency added, removed or moved out of its pinned version's range is drift: run
`make lock`), and read every installer (Makefile, Dockerfiles, Cloud Build, the function bundle)
for --require-hashes.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tfhelpers import REPO

ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


LOCKING = _load("lock_requirements", REPO / "scripts" / "lock_requirements.py")
BUNDLER = _load("bundle_function", REPO / "scripts" / "bundle_function.py")


@dataclass
class Entry:
    """One pinned package of a lock."""

    version: str
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Entry]:
    """{canonical name: Entry} of a uv-generated lock (split annotation style)."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    in_via = False
    for line in text.splitlines():
        if match := ENTRY.match(line):
            current = entries.setdefault(canonicalize_name(match.group(1)), Entry(match.group(2)))
            in_via = False
        elif current is not None and (h := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            current.hashes.append(h.group(1))
        elif current is not None and (v := re.match(r"\s+# via(?: (.+))?$", line)):
            in_via = True
            if v.group(1):
                current.via.add(v.group(1).strip())
        elif current is not None and in_via and (v := re.match(r"\s+#\s{3}(.+)$", line)):
            current.via.add(v.group(1).strip())
    return entries


def _marker_env(python: str) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def declared(lock: Any, extra_lines: tuple[str, ...] = ()) -> dict[str, tuple[Requirement, str]]:
    """{canonical name: (requirement, the lock's `via` label of its source)} a lock is compiled from."""
    out: dict[str, tuple[Requirement, str]] = {}
    lines: list[tuple[str, str]] = []
    for source in lock.sources:
        path = REPO / source
        if path.name == "pyproject.toml":
            project = tomllib.loads(path.read_text())["project"]
            label = f"{project['name']} (pyproject.toml)"
            reqs = list(project["dependencies"])
            for extra in lock.extras:
                reqs += project["optional-dependencies"][extra]
            lines += [(r, label) for r in reqs]
        else:
            label = f"-r {source}"
            for raw in path.read_text().splitlines():
                text = raw.split("#", 1)[0].strip()
                if text and not text.startswith("-"):
                    lines.append((text, label))
    lines += [(text, "extra") for text in extra_lines]
    env = _marker_env(lock.python)
    for text, label in lines:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out[canonicalize_name(req.name)] = (req, label)
    for name in lock.removed:
        out.pop(canonicalize_name(name), None)
    return out


def drift(lock: Any, wanted: dict[str, tuple[Requirement, str]], entries: dict[str, Entry]) -> list[str]:
    """Why a lock no longer matches its inputs (empty when it does)."""
    problems = []
    for name, (req, _) in wanted.items():
        entry = entries.get(name)
        if entry is None:
            problems.append(f"{req} is declared but not locked")
        elif not req.specifier.contains(entry.version, prereleases=True):
            problems.append(f"{req} is declared but {name}=={entry.version} is locked")
    labels = {label for _, label in wanted.values()} | {f"-r {s}" for s in lock.sources}
    labels |= {label for label in (e for entry in entries.values() for e in entry.via) if "(pyproject.toml)" in label}
    for name, entry in entries.items():
        if entry.via & labels and name not in wanted:
            problems.append(f"{name} is locked as a direct requirement but no longer declared")
    for name in lock.removed:
        if canonicalize_name(name) in entries:
            problems.append(f"{name} must stay out of this lock")
    return problems


@pytest.mark.parametrize("lock", LOCKING.LOCKS, ids=lambda lock: lock.output)
def test_lock_is_complete_pinned_and_hashed(lock: Any) -> None:
    text = (REPO / lock.output).read_text()
    assert text.startswith("# This file was autogenerated by uv via the following command:\n#    make lock\n")
    entries = parse_lock(text)
    assert entries, f"{lock.output} pins nothing"
    unhashed = [name for name, entry in entries.items() if not entry.hashes]
    assert not unhashed, f"{lock.output}: no hash for {unhashed}"
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(requirement_lines) == len(entries), "every requirement line is an exact == pin"


@pytest.mark.parametrize("lock", LOCKING.LOCKS, ids=lambda lock: lock.output)
def test_lock_satisfies_its_inputs(lock: Any) -> None:
    entries = parse_lock((REPO / lock.output).read_text())
    problems = drift(lock, declared(lock), entries)
    assert not problems, f"{lock.output} is out of date with {', '.join(lock.sources)}: run `make lock`\n" + "\n".join(
        problems
    )


def test_drift_is_detected() -> None:
    # The comparison above on inputs that moved: a new dependency, a dependency dropped, a range
    # that excludes the locked version. Each must be reported.
    lock = next(lk for lk in LOCKING.LOCKS if lk.output == "requirements/dev.txt")
    entries = parse_lock((REPO / lock.output).read_text())
    added = drift(lock, declared(lock, ("healer-not-yet-locked>=1.3",)), entries)
    assert added == ["healer-not-yet-locked>=1.3 is declared but not locked"]
    wanted = declared(lock)
    pillow = wanted["pillow"][0]
    wanted["pillow"] = (Requirement(f"pillow<{entries['pillow'].version}"), wanted["pillow"][1])
    assert any("pillow<" in p for p in drift(lock, wanted, entries)), pillow
    wanted = declared(lock)
    del wanted["typer"]
    assert drift(lock, wanted, entries) == ["typer is locked as a direct requirement but no longer declared"]
    inference = next(lk for lk in LOCKING.LOCKS if lk.output == "requirements/inference.txt")
    assert "torch" not in parse_lock((REPO / inference.output).read_text()), "the image's CUDA torch is not locked"


# ── Every installer uses a lock ──────────────────────────────────────────────────────────────


def _pip_installs(text: str) -> list[str]:
    """Each `pip install` command in a file (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.group(0) for m in re.finditer(r"pip(?:\)|\s)[^\n;&|]*?\binstall\b[^\n;&|]*", joined)]


def test_every_installer_requires_hashes() -> None:
    torch_line = re.compile(r'"torch==\$\{TORCH_VERSION\}" "torchvision==\$\{TORCHVISION_VERSION\}" --index-url')
    project_line = re.compile(r"--no-deps --no-build-isolation (-e )?\.")
    files = [
        REPO / "Makefile",
        *sorted((REPO / "make").glob("*.mk")),
        REPO / "inference_service" / "Dockerfile",
        REPO / "console" / "Dockerfile",
        REPO / "slide_service" / "Dockerfile",
        *sorted((REPO / "cloudbuild").glob("*.yaml")),
    ]
    seen = 0
    for path in files:
        for cmd in _pip_installs(path.read_text()):
            seen += 1
            ok = "--require-hashes" in cmd or project_line.search(cmd) or torch_line.search(cmd)
            assert ok, f"{path.relative_to(REPO)}: unhashed install: {cmd}"
    assert seen >= 8, f"only {seen} pip installs found: the scan no longer matches the files"
    makefile = (REPO / "Makefile").read_text()
    assert "LOCK := requirements/dev.txt" in makefile
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    dockerfile = (REPO / "inference_service" / "Dockerfile").read_text()
    assert "COPY requirements/inference.txt" in dockerfile and "COPY requirements/model-fetch.txt" in dockerfile
    assert "COPY console/requirements.txt" in (REPO / "console" / "Dockerfile").read_text()
    assert "COPY requirements/slide.txt" in (REPO / "slide_service" / "Dockerfile").read_text()
    assert "-r requirements/dev.txt" in (REPO / "cloudbuild" / "test.yaml").read_text()
    assert "--require-hashes" in (REPO / "make" / "supply-chain.mk").read_text()
    assert BUNDLER.unhashed_requirements(REPO / "ingest_function" / "requirements.txt") == []


def test_each_lock_targets_the_python_that_installs_it() -> None:
    pythons = {lk.output: lk.python for lk in LOCKING.LOCKS}
    dockerfile = (REPO / "inference_service" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:[^\s]*ubuntu24\.04@sha256:", dockerfile, re.MULTILINE)
    assert "sys.version_info[:2] == (3, 12)" in dockerfile and pythons["requirements/inference.txt"] == "3.12"
    assert re.search(r"^FROM python:3\.12-slim@sha256:", dockerfile, re.MULTILINE)
    assert pythons["requirements/model-fetch.txt"] == "3.12"
    assert re.search(r"^FROM python:3\.11-slim@sha256:", (REPO / "console/Dockerfile").read_text(), re.MULTILINE)
    assert pythons["console/requirements.txt"] == "3.11"
    slide = (REPO / "slide_service" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim@sha256:", slide, re.MULTILINE)
    assert pythons["requirements/slide.txt"] == "3.11"
    assert 'runtime         = "python311"' in (REPO / "terraform" / "function.tf").read_text()
    assert pythons["ingest_function/requirements.txt"] == "3.11"


def test_the_slide_lock_carries_openslide_and_no_torch() -> None:
    # openslide-bin is the wheel with libopenslide inside: without it the image has no OpenSlide.
    entries = parse_lock((REPO / "requirements" / "slide.txt").read_text())
    assert {"openslide-python", "openslide-bin", "tifffile", "imagecodecs"} <= set(entries)
    assert not {"torch", "transformers", "bitsandbytes"} & set(entries), "the slide service runs no model"
    # The image runs the versions the tests run.
    dev = parse_lock((REPO / "requirements" / "dev.txt").read_text())
    differ = {n: (e.version, dev[n].version) for n, e in entries.items() if n in dev and dev[n].version != e.version}
    assert not differ, f"requirements/slide.txt and requirements/dev.txt pin different versions: {differ}"


def test_the_tests_cpu_torch_and_the_images_cuda_torch_are_one_version() -> None:
    dev = parse_lock((REPO / "requirements" / "dev.txt").read_text())
    cpu = dev["torch"].version
    assert cpu.endswith("+cpu"), "CI runs the CPU build"
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", (REPO / "inference_service" / "Dockerfile").read_text(), re.MULTILINE))
    subs = yaml.safe_load((REPO / "cloudbuild" / "images.yaml").read_text())["substitutions"]
    assert cpu.removesuffix("+cpu") == args["TORCH_VERSION"] == str(subs["_TORCH_VERSION"])
    assert args["TORCHVISION_VERSION"] == str(subs["_TORCHVISION_VERSION"])
    assert args["TORCH_INDEX_URL"] == subs["_TORCH_INDEX_URL"]
