"""Fetch a slide's artifacts (heatmap, GeoJSON, thumbnail) from their gs:// URIs to local files.

Through the CLI's storage client, so the same code reads the storage emulator and Cloud Storage.
A download lands in a temporary file next to the target and is renamed into place, so a failed
or interrupted fetch never leaves half a file under the name the user asked for.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from healer.cli.errors import CliError

if TYPE_CHECKING:
    from google.cloud import storage as gcs  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Fetched:
    """One artifact written to disk."""

    what: str
    uri: str
    path: Path
    size: int


class ArtifactMissing(Exception):
    """The verdict names no URI for the artifact, or the object is not in the bucket."""


def split_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/name` → (bucket, name); anything else is refused."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket or not name:
        raise CliError(f"not a gs:// object URI: {uri!r}")
    return bucket, name


def check_writable(path: Path) -> None:
    """Refuse a target whose folder does not exist or that is a folder (before anything is read)."""
    if path.is_dir():
        raise CliError(f"{path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise CliError(f"no such folder: {path.parent}")


def fetch(client: gcs.Client, what: str, uri: str, path: Path) -> Fetched:
    """Download `uri` to `path`; ArtifactMissing when there is no URI or no such object."""
    from google.api_core import exceptions as gexc

    if not uri:
        raise ArtifactMissing(f"the verdict names no {what}")
    bucket, name = split_uri(uri)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        client.bucket(bucket).blob(name).download_to_filename(tmp)
        os.replace(tmp, path)
    except gexc.NotFound as exc:
        raise ArtifactMissing(f"{uri} was not found") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Fetched(what, uri, path, path.stat().st_size)
