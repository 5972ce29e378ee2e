"""Find the job a user names: a job id, an object name or `gs://bucket/name` (latest generation)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from healer.cli.errors import CliError

if TYPE_CHECKING:
    from healer_core.schema import Job
    from healer_core.store import JobStore

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def split_object(obj: str, default_bucket: str | None) -> tuple[str | None, str]:
    """`gs://bucket/name` → (bucket, name); a bare name → (default_bucket, name)."""
    if obj.startswith("gs://"):
        bucket, _, name = obj[5:].partition("/")
        return bucket, name
    return default_bucket, obj


def find_job(store: JobStore, ref: str, default_bucket: str | None) -> Job:
    """The job `ref` names: by id, else the newest generation's job of that object (CliError if none)."""
    job = store.get(ref) if JOB_ID.match(ref) else None
    if job is not None:
        return job
    bucket, name = split_object(ref, default_bucket)
    if not bucket:
        raise CliError("no bucket: pass --bucket, set HEALER_BUCKET or give gs://bucket/name")
    job = store.latest_for(bucket, name)
    if job is None:
        raise CliError(
            f"no job for gs://{bucket}/{name}: not uploaded, or its event was lost (`healer reconcile` ingests it)"
        )
    return job
