"""Assemble the Cloud Functions deploy directory (`make function-bundle`).

build/function/ = ingest_function/ (main.py, requirements.txt, healer_ingest/) + a copy of
healer_core/, so the deployed archive is self-contained: Cloud Functions installs only its
requirements.txt and imports main.py, with no access to the rest of the repository.

requirements.txt is the hash-locked list `make lock` writes from requirements.in (which stays
out of the bundle): with a hash on every line pip runs in hash-checking mode, so the function
installs exactly the locked files. Standard library only: `make function-bundle` and Cloud
Build's deploy step run it with any Python 3.11+, no virtualenv needed.

Every file gets a fixed modification time and mode, so the zip Terraform builds from it — and
the content hash in its object name — changes only when the code does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = {
    REPO / "ingest_function": ".",  # contents at the bundle root
    REPO / "healer_core": "healer_core",
}
REQUIRED = ("main.py", "requirements.txt", "healer_core/__init__.py")
IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache", "tests", "*.egg-info", "requirements.in"
)
FIXED_MTIME = 315532800  # 1980-01-01, the earliest time a zip entry can carry


def build(out: Path) -> Path:
    """(Re)create the bundle in `out`; return it. Raises SystemExit on a missing source."""
    for src in SOURCES:
        if not src.is_dir():
            raise SystemExit(f"bundle_function: {src.relative_to(REPO)}/ is missing")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for src, dest in SOURCES.items():
        shutil.copytree(src, out / dest, ignore=IGNORE, dirs_exist_ok=True)
    missing = [name for name in REQUIRED if not (out / name).is_file()]
    if missing:
        raise SystemExit(f"bundle_function: the bundle lacks {', '.join(missing)}")
    unhashed = unhashed_requirements(out / "requirements.txt")
    if unhashed:
        raise SystemExit(
            f"bundle_function: requirements.txt is not hash-locked ({', '.join(unhashed)}): run `make lock`"
        )
    for path in sorted(out.rglob("*"), reverse=True):
        path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    os.utime(out, (FIXED_MTIME, FIXED_MTIME))
    return out


def unhashed_requirements(path: Path) -> list[str]:
    """Requirements of a requirements file that carry no --hash (pip would refuse them all)."""
    text = path.read_text().replace("\\\n", " ")
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [ln.split()[0] for ln in lines if ln and not ln.startswith("-") and "--hash=" not in ln]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "function", help="bundle directory")
    args = parser.parse_args(argv)
    out = build(args.out.resolve())
    files = sum(1 for p in out.rglob("*") if p.is_file())
    sys.stderr.write(f"function bundle: {out} ({files} files)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
