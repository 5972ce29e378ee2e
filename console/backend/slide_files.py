"""A local path to a slide job's file, pinned to the job's object generation.

OpenSlide reads files, not streams. On Google Cloud the console mounts the inbox bucket with Cloud
Storage FUSE (`SLIDE_MOUNT`): random reads, no download, and nothing held in the instance's
in-memory disk. A FUSE path shows the object's *live* generation, so the job's generation is
checked against the object's metadata before the path is used.

Elsewhere (the local stack) the slide is downloaded once, generation-pinned and streamed to disk,
into a cache directory bounded in bytes (least recently used files go first). A cached file is
named by the job id, keeping the object's suffix (OpenSlide and `open_slide` need it for some
formats), never by the object name: names may carry patient identifiers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.schema import ErrorCode, Job
from healer_media.errors import ObjectGone, SlideRejected, TransientError

log = logging.getLogger("healer.console.slides")

_SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")
_PROCESS_DIR = re.compile(r"^p(\d+)$")
_STORAGE_DOWN = (gexc.ServerError, gexc.TooManyRequests, ConnectionError, TimeoutError)


def slide_suffix(name: str) -> str:
    """The object name's suffix, lower case, when it is a plausible file suffix ('' otherwise)."""
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if _SUFFIX.match(suffix) else ""


def _remove_dead_processes_files(cache_dir: Path) -> None:
    for folder in cache_dir.iterdir():
        match = _PROCESS_DIR.match(folder.name)
        if match is None or not folder.is_dir():
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


class SlideFiles:
    """Where OpenSlide can read a job's slide: a FUSE path, or a downloaded cache file."""

    def __init__(
        self,
        client: storage.Client,
        *,
        mount: str,
        cache_dir: Path,
        cache_bytes: int,
        max_slide_bytes: int,
    ) -> None:
        self._client = client
        self._mount = Path(mount).resolve() if mount else None
        # One folder per console process: several consoles on one machine (or a restarted one)
        # never delete each other's files; a dead process's folder is removed.
        self._dir = cache_dir / f"p{os.getpid()}"
        self._budget = cache_bytes
        self._max_bytes = max_slide_bytes
        self._files: OrderedDict[str, tuple[Path, int]] = OrderedDict()  # job_id → (path, size), LRU order
        self._lock = threading.Lock()
        self._job_locks: dict[str, threading.Lock] = {}
        if self._mount is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            _remove_dead_processes_files(cache_dir)

    def path_for(self, job: Job) -> Path:
        """A readable local path holding exactly the job's generation.

        Raises ObjectGone (generation replaced or deleted), SlideRejected(too_large) and
        TransientError (storage unavailable)."""
        size = self._check_generation(job)
        if self._mount is not None:
            return self._mounted(job)
        with self._job_lock(job.job_id):
            with self._lock:
                hit = self._files.get(job.job_id)
                if hit is not None and hit[0].exists():
                    self._files.move_to_end(job.job_id)
                    return hit[0]
            return self._download(job, size)

    def _check_generation(self, job: Job) -> int:
        """The pinned generation's size, after checking it is still the object's live one."""
        try:
            blob = self._client.bucket(job.bucket).get_blob(job.name)
        except _STORAGE_DOWN as exc:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from exc
        if blob is None or int(blob.generation or 0) != int(job.generation):
            raise ObjectGone("object generation not found")
        size = int(blob.size or 0)
        if size > self._max_bytes:
            raise SlideRejected(
                ErrorCode.TOO_LARGE, f"The slide is {size} bytes; the limit (MAX_SLIDE_BYTES) is {self._max_bytes}."
            )
        return size

    def _mounted(self, job: Job) -> Path:
        assert self._mount is not None
        path = (self._mount / job.name).resolve()
        if not path.is_relative_to(self._mount) or not path.is_file():
            raise ObjectGone("object not visible in the mount")
        return path

    def _job_lock(self, job_id: str) -> threading.Lock:
        with self._lock:
            return self._job_locks.setdefault(job_id, threading.Lock())

    def _download(self, job: Job, size: int) -> Path:
        if size > self._budget:
            raise SlideRejected(
                ErrorCode.TOO_LARGE,
                f"The slide is {size} bytes, more than the console's slide cache"
                f" (CONSOLE_SLIDE_CACHE_BYTES = {self._budget}); mount the bucket with SLIDE_MOUNT instead.",
            )
        self._make_room(size)
        final = self._dir / f"{job.job_id}{slide_suffix(job.name)}"
        partial = final.with_name(final.name + ".part")
        blob = self._client.bucket(job.bucket).blob(job.name, generation=job.generation)
        try:
            blob.download_to_filename(str(partial))  # streamed to disk, never held in memory
        except gexc.NotFound as exc:
            partial.unlink(missing_ok=True)
            raise ObjectGone("object generation not found") from exc
        except _STORAGE_DOWN as exc:
            partial.unlink(missing_ok=True)
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from exc
        got = partial.stat().st_size
        if got != size:  # replaced while downloading (the emulator does not honour generation pins)
            partial.unlink(missing_ok=True)
            raise ObjectGone("object changed during download")
        partial.replace(final)
        with self._lock:
            self._files[job.job_id] = (final, size)
        log.info("slide downloaded for viewing", extra={"job_id": job.job_id, "size_bytes": size})
        return final

    def _make_room(self, incoming: int) -> None:
        with self._lock:
            used = sum(size for _, size in self._files.values())
            while self._files and used + incoming > self._budget:
                # An open OpenSlide handle keeps reading an unlinked file; its space frees on close.
                _, (path, size) = self._files.popitem(last=False)
                path.unlink(missing_ok=True)
                used -= size
