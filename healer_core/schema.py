"""The job document, the Pub/Sub job message and the verdict: defined once, used everywhere.

Firestore `jobs/{job_id}` (see ARCHITECTURE.md). Timestamps are written by the store as server
timestamps; models here accept the datetimes Firestore returns.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from healer_core.answer import Answer
from healer_core.ids import job_id_for

SCHEMA_VERSION = 1


class JobState(StrEnum):
    """Lifecycle of a job. `done` and `failed` are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED)


class ErrorCode(StrEnum):
    """Why a job failed. Permanent unless the error says `retryable`."""

    NOT_AN_IMAGE = "not_an_image"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TRUNCATED = "truncated"
    TOO_MANY_FRAMES = "too_many_frames"
    UNSUPPORTED_IMAGE = "unsupported_image"
    OBJECT_GONE = "object_gone"
    DEAD_LETTERED = "dead_lettered"
    ENGINE_ERROR = "engine_error"
    DOWNLOAD_FAILED = "download_failed"
    BUSY = "busy"


ERROR_DESCRIPTIONS: dict[str, str] = {
    ErrorCode.NOT_AN_IMAGE: "The file is not an image (its content is not PNG, JPEG, TIFF or WebP).",
    ErrorCode.EMPTY: "The file is empty (zero bytes).",
    ErrorCode.TOO_LARGE: "The file is larger than the configured limit.",
    ErrorCode.DECOMPRESSION_BOMB: "The image claims more pixels than is safe to decode.",
    ErrorCode.TRUNCATED: "The image file is truncated or corrupt.",
    ErrorCode.TOO_MANY_FRAMES: "The image has more frames or pages than allowed.",
    ErrorCode.UNSUPPORTED_IMAGE: "The image uses a mode or encoding that cannot be read.",
    ErrorCode.OBJECT_GONE: "The uploaded generation no longer exists in the bucket.",
    ErrorCode.DEAD_LETTERED: "Processing failed repeatedly; the message went to the dead-letter topic.",
    ErrorCode.ENGINE_ERROR: "The model failed on this image.",
    ErrorCode.DOWNLOAD_FAILED: "The image could not be downloaded.",
    ErrorCode.BUSY: "The service was busy; the job will be retried.",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class JobError(_Model):
    """Why a job failed: a stable code, a human message, and whether a retry can help."""

    code: str
    message: str
    retryable: bool = False


class Timings(_Model):
    """Milliseconds spent in each stage of one verdict."""

    download: float = 0.0
    decode: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    total: float = 0.0


class Verdict(_Model):
    """The answer to "does this image show colorectal cancer?" with its provenance."""

    answer: Answer
    p_yes: float | None = Field(default=None, ge=0.0, le=1.0)
    explanation: str = ""
    model_id: str
    model_revision: str = ""
    quantization: str = "none"
    prompt_version: str
    timings_ms: Timings = Field(default_factory=Timings)


class Lease(_Model):
    """Who runs the job now; `token` fences writes of a worker whose lease expired."""

    owner: str
    token: str
    expires_at: datetime


class HistoryEntry(_Model):
    """One step in a job's life, appended by the store (at = client clock, UTC)."""

    at: datetime
    event: str
    detail: str = ""


class Job(_Model):
    """A Firestore `jobs/{job_id}` document."""

    schema_version: int = SCHEMA_VERSION
    job_id: str
    bucket: str
    name: str
    generation: int
    content_type: str = ""
    size_bytes: int = 0
    crc32c: str = ""
    event_id: str = ""
    state: JobState = JobState.QUEUED
    attempts: int = 0  # leases that ran the job (a lease handed back as "busy" is not counted)
    dead_letters: int = 0  # times its message ran out of delivery attempts and was put back in flight
    first_dead_letter_at: datetime | None = None  # when that first happened
    lease: Lease | None = None
    published_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    expire_at: datetime | None = None  # set on finished jobs when a TTL is configured (JOB_TTL_DAYS)
    error: JobError | None = None
    verdict: Verdict | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @classmethod
    def for_message(cls, message: JobMessage, **fields: Any) -> Job:
        """A job document for a message that arrived without one (replayed or dead-lettered)."""
        return cls(
            job_id=message.job_id, bucket=message.bucket, name=message.name, generation=message.generation, **fields
        )

    @classmethod
    def from_doc(cls, data: dict[str, Any] | None) -> Job:
        """Build from a Firestore snapshot's `to_dict()` (None only for a missing document)."""
        if data is None:
            raise ValueError("no job document")
        return cls.model_validate(data)


class JobMessage(_Model):
    """The Pub/Sub message for one job: ids only, never image bytes or patient data."""

    job_id: str
    bucket: str
    name: str
    generation: int

    @classmethod
    def for_object(cls, bucket: str, name: str, generation: int) -> JobMessage:
        return cls(job_id=job_id_for(bucket, name, generation), bucket=bucket, name=name, generation=generation)

    def to_data(self) -> bytes:
        """The message body as published."""
        return json.dumps(self.model_dump(), separators=(",", ":")).encode()

    @classmethod
    def from_data(cls, data: bytes) -> JobMessage:
        return cls.model_validate_json(data)

    def attributes(self) -> dict[str, str]:
        return {"job_id": self.job_id}
