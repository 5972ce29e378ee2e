"""Where the slide service reads a slide from, pinned to the job's object generation.

- On Cloud Run, through the Cloud Storage FUSE volume of the inbox mounted at SLIDE_MOUNT
  (random reads, no download): the object's metadata is read first, pinned to the generation,
  and the mounted file must be that generation (same size), or the job fails as `object_gone`.
  FUSE shows the live object, so the generation is checked again after tiling (`still_current`).
- Locally (SLIDE_MOUNT empty), downloaded to a temporary file that keeps the object's suffix
  (multi-file formats are recognised by it), streamed to disk, removed afterwards.

Errors: the generation gone → ObjectGone; over MAX_SLIDE_BYTES → SlideRejected(too_large); any
storage or transport error → TransientError(download_failed), reported by type only (messages
carry the object's URL, and names may carry patient identifiers).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.schema import ErrorCode, Job
from healer_media.errors import ObjectGone, SlideRejected, TransientError
from slide_service.settings import SlideSettings

TIMEOUT_S = 60.0
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def _metadata(client: storage.Client, job: Job) -> storage.Blob:
    try:
        blob = client.bucket(job.bucket).get_blob(job.name, generation=job.generation, timeout=TIMEOUT_S)
    except (gexc.NotFound, gexc.PreconditionFailed):
        raise ObjectGone("object generation not found") from None
    except Exception as exc:
        raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from None
    if blob is None or int(blob.generation or 0) != job.generation:
        raise ObjectGone("object generation not found")
    return blob


def _check_size(size: int, settings: SlideSettings) -> None:
    if size > settings.max_slide_bytes:
        raise SlideRejected(
            ErrorCode.TOO_LARGE,
            f"The slide is {size} bytes; the limit (MAX_SLIDE_BYTES) is {settings.max_slide_bytes}.",
        )


def mounted_path(mount: Path, name: str) -> Path:
    """The object's path under the FUSE mount; a name that would leave the mount is refused."""
    # Segments "", "." and ".." (a leading or doubled "/", "./", "../") have no file on a FUSE mount,
    # and ".." would leave it.
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SlideRejected(ErrorCode.UNSUPPORTED_SLIDE, "The object's name cannot be read through the slide mount.")
    return mount.joinpath(*parts)


@contextmanager
def slide_file(client: storage.Client, job: Job, settings: SlideSettings) -> Iterator[Path]:
    """A local path holding the job's slide for as long as the block runs (see the module docstring)."""
    blob = _metadata(client, job)
    size = int(blob.size or 0)
    _check_size(size, settings)
    if settings.slide_mount:
        path = mounted_path(Path(settings.slide_mount), job.name)
        try:
            mounted_size = path.stat().st_size
        except FileNotFoundError:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, "the slide is not visible on the mount yet") from None
        if mounted_size != size:
            raise ObjectGone("the mounted object is another generation")
        yield path
        return
    suffix = PurePosixPath(job.name).suffix
    folder = Path(tempfile.mkdtemp(prefix="slide-", dir=settings.slide_tmp_dir or None))
    try:
        path = folder / ("slide" + (suffix if _SUFFIX.match(suffix) else ""))
        pinned = client.bucket(job.bucket).blob(job.name, generation=job.generation)
        try:
            pinned.download_to_filename(str(path), timeout=TIMEOUT_S, checksum=None)
        except (gexc.NotFound, gexc.PreconditionFailed):
            raise ObjectGone("object generation not found") from None
        except Exception as exc:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from None
        if path.stat().st_size != size:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, "storage error: incomplete download")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def still_current(client: storage.Client, job: Job, settings: SlideSettings) -> None:
    """On a FUSE mount, the object must still be the job's generation after it was read
    (ObjectGone if it was overwritten meanwhile); a downloaded copy needs no check."""
    if not settings.slide_mount:
        return
    try:
        live = client.bucket(job.bucket).get_blob(job.name, timeout=TIMEOUT_S)
    except Exception as exc:
        raise TransientError(ErrorCode.DOWNLOAD_FAILED, f"storage error: {type(exc).__name__}") from None
    if live is None or int(live.generation or 0) != job.generation:
        raise ObjectGone("the object was overwritten while it was read")
