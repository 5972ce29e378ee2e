"""Job identity: one job per uploaded object generation."""

from __future__ import annotations

import hashlib

JOB_ID_LENGTH = 32


def job_id_for(bucket: str, name: str, generation: int) -> str:
    """Return the stable, Firestore-safe job id of `gs://bucket/name#generation`.

    Hex sha256 (first 32 chars) of `bucket/name#generation`: the same upload always maps to the
    same job, a new generation of the same name to a new one, and the id reveals nothing of
    the object name (which may carry patient identifiers).
    """
    key = f"{bucket}/{name}#{int(generation)}".encode()
    return hashlib.sha256(key).hexdigest()[:JOB_ID_LENGTH]
