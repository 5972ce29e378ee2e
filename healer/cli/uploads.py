"""Turn files, folders and globs into bucket objects, uploaded in parallel with a progress bar.

Each upload is atomic in Cloud Storage (an object appears whole or not at all), so an interrupt
leaves every file either uploaded, with its job on the way, or absent. On Ctrl-C the uploads
in flight finish, the rest are cancelled, and the caller learns exactly which are which.
"""

from __future__ import annotations

import base64
import glob
import mimetypes
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from healer.cli.errors import CliError
from healer_core.ids import job_id_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
# Single-file whole-slide formats (Aperio, Hamamatsu, Leica, Ventana); tiled TIFFs are above.
# Ingest decides image or slide by content: the suffix only picks files out of folders.
SLIDE_SUFFIXES = {".svs", ".ndpi", ".scn", ".bif"}
UPLOAD_SUFFIXES = IMAGE_SUFFIXES | SLIDE_SUFFIXES
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Upload:
    """One local file and the object name it goes to."""

    path: Path
    name: str


@dataclass(frozen=True)
class Uploaded:
    """One object generation in the bucket, and its job id."""

    path: Path
    name: str
    generation: int
    job_id: str
    reused: bool = False  # already in the bucket with the same bytes: not uploaded again


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def collect(paths: list[str], prefix: str = "") -> list[Upload]:
    """Files as given, folders (recursively, image and slide files only) and globs, each with its object name.

    A file keeps its base name; a folder's files keep their path relative to the folder.
    Raises CliError when nothing matches or two files would land on the same object name.
    """
    found: list[Upload] = []
    for arg in paths:
        path = Path(arg).expanduser()
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in UPLOAD_SUFFIXES and not f.name.startswith("."):
                    found.append(Upload(f, _join(prefix, f.relative_to(path).as_posix())))
        elif path.is_file():
            found.append(Upload(path, _join(prefix, path.name)))
        elif GLOB_CHARS & set(arg):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True)) if Path(m).is_file()]
            if not matches:
                raise CliError(f"no files match {arg!r}")
            found.extend(Upload(m, _join(prefix, m.name)) for m in matches)
        else:
            raise CliError(f"no such file or folder: {arg}")
    if not found:
        raise CliError("no image or slide files found in " + ", ".join(paths))
    by_name: dict[str, Path] = {}
    for item in found:
        other = by_name.setdefault(item.name, item.path)
        if other != item.path:
            raise CliError(f"{other} and {item.path} would both upload to {item.name!r}: use --prefix or rename one")
    return list({u.name: u for u in found}.values())


def crc32c_b64(path: Path) -> str:
    """The file's CRC32C as Cloud Storage reports it (base64 of the big-endian value)."""
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def content_type(path: Path) -> str:
    """By extension; unknown types go as octet-stream and the service decides by content."""
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Uploader:
    """Uploads to one bucket from a pool of threads (one storage client per thread)."""

    def __init__(self, project: str, bucket: str, skip_existing: bool = False) -> None:
        self.project = project
        self.bucket_name = bucket
        self.skip_existing = skip_existing
        self._local = threading.local()

    def _bucket(self) -> Any:
        if not hasattr(self._local, "bucket"):
            from google.cloud import storage  # type: ignore[attr-defined]

            self._local.bucket = storage.Client(project=self.project).bucket(self.bucket_name)
        return self._local.bucket

    def upload(self, item: Upload) -> Uploaded:
        """Upload one file (or reuse the identical object already there, with --skip-existing)."""
        bucket = self._bucket()
        if self.skip_existing:
            existing = bucket.get_blob(item.name)
            if existing is not None and existing.crc32c == crc32c_b64(item.path):
                generation = int(existing.generation)
                job_id = job_id_for(self.bucket_name, item.name, generation)
                return Uploaded(item.path, item.name, generation, job_id, reused=True)
        blob = bucket.blob(item.name)
        blob.upload_from_filename(str(item.path), content_type=content_type(item.path))
        generation = int(blob.generation)
        return Uploaded(item.path, item.name, generation, job_id_for(self.bucket_name, item.name, generation))


@dataclass
class UploadReport:
    """What happened to each file."""

    uploaded: list[Uploaded]
    not_uploaded: list[Upload]
    interrupted: bool = False


class UploadsFiles(Protocol):
    """What `upload_all` needs: one file up, its generation and job id back (thread-safe)."""

    def upload(self, item: Upload) -> Uploaded: ...


def upload_all(
    uploader: UploadsFiles,
    items: list[Upload],
    workers: int,
    console: Any,
    on_uploaded: Callable[[Uploaded], None] = lambda _: None,
) -> UploadReport:
    """Upload in parallel with a progress bar; Ctrl-C finishes the uploads in flight, cancels the rest."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    total = sum(i.path.stat().st_size for i in items)
    done: list[Uploaded] = []
    columns = (TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), MofNCompleteColumn())
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="upload")
    futures: dict[Future[Uploaded], Upload] = {}
    interrupted = False
    with Progress(*columns, console=console, transient=True) as progress:
        bytes_task = progress.add_task("bytes", total=total)
        try:
            futures = {pool.submit(uploader.upload, item): item for item in items}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    result = future.result()
                    done.append(result)
                    progress.advance(bytes_task, result.path.stat().st_size)
                    on_uploaded(result)
        except KeyboardInterrupt:
            interrupted = True
            progress.stop()
            console.print("[yellow]interrupted: finishing the uploads in flight, cancelling the rest…[/yellow]")
            pool.shutdown(wait=True, cancel_futures=True)
            seen = {u.name for u in done}
            for future, item in futures.items():
                if item.name in seen or future.cancelled() or not future.done() or future.exception():
                    continue
                result = future.result()
                done.append(result)
                on_uploaded(result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
    names = {u.name for u in done}
    return UploadReport(done, [i for i in items if i.name not in names], interrupted)
