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
    # Whole-slide images (slide_service/): all permanent.
    UNREADABLE_SLIDE = "unreadable_slide"
    UNSUPPORTED_SLIDE = "unsupported_slide"
    NO_TISSUE = "no_tissue"
    BAD_SHARD = "bad_shard"
    TILING_FAILED = "tiling_failed"  # retryable: a tiling process was killed or ran past its budget


ERROR_DESCRIPTIONS: dict[str, str] = {
    ErrorCode.NOT_AN_IMAGE: "The file is not an image (its content is not PNG, JPEG, TIFF or WebP).",
    ErrorCode.EMPTY: "The file is empty (zero bytes).",
    ErrorCode.TOO_LARGE: "The file is larger than the configured limit (for a slide: bytes, pixels or tissue tiles).",
    ErrorCode.DECOMPRESSION_BOMB: "The image claims more pixels than is safe to decode.",
    ErrorCode.TRUNCATED: "The image file is truncated or corrupt.",
    ErrorCode.TOO_MANY_FRAMES: "The image has more frames or pages than allowed.",
    ErrorCode.UNSUPPORTED_IMAGE: "The image uses a mode or encoding that cannot be read.",
    ErrorCode.OBJECT_GONE: "The uploaded generation no longer exists in the bucket.",
    ErrorCode.DEAD_LETTERED: "Processing failed repeatedly; the message went to the dead-letter topic.",
    ErrorCode.ENGINE_ERROR: "The model failed on this image.",
    ErrorCode.DOWNLOAD_FAILED: "The image could not be downloaded.",
    ErrorCode.BUSY: "The service was busy; the job will be retried.",
    ErrorCode.UNREADABLE_SLIDE: "The whole-slide image is truncated or corrupt: OpenSlide cannot read it.",
    ErrorCode.UNSUPPORTED_SLIDE: (
        "The file is not a whole-slide format that can be read here (unknown format, a non-tiled image,"
        " or a multi-file format such as MIRAX or DICOM that needs its companion files)."
    ),
    ErrorCode.NO_TISSUE: "No tissue was found on the slide (no tile reaches the minimum tissue fraction).",
    ErrorCode.BAD_SHARD: "A tile shard written by the slide service failed validation (an internal fault).",
    ErrorCode.TILING_FAILED: "Tiling the slide did not finish (a process was killed or timed out); it is retried.",
}


class JobKind(StrEnum):
    """What was uploaded: one image, or a whole-slide image tiled into many."""

    IMAGE = "image"
    SLIDE = "slide"


class SlideStage(StrEnum):
    """Where a running slide job is; its `state` stays running until done or failed."""

    TILING = "tiling"  # the slide service reads the slide and writes shards
    SCORING = "scoring"  # shards are out; the inference service scores their tiles
    FINALIZING = "finalizing"  # every shard counted; the slide verdict is being built
    DONE = "done"


class Task(StrEnum):
    """What a Pub/Sub message asks for (absent: `image`, the original message)."""

    IMAGE = "image"  # topic jobs: score one uploaded image
    TILE = "tile"  # topic slides: tile a slide into shards
    SHARD = "shard"  # topic jobs: score the tiles of one shard
    FINALIZE = "finalize"  # topic slides: aggregate a slide whose shards are all counted
    REPORT = "report"  # topic jobs: write the slide-level report (MedGemma 1.5)


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


class TileRef(_Model):
    """One tile of a slide: its index in the slide's tile plan and its level-0 rectangle."""

    index: int
    x: int
    y: int
    w: int
    h: int


class TileScore(TileRef):
    """A scored tile: its rectangle and P(yes)."""

    p_yes: float = Field(ge=0.0, le=1.0)


class Aggregation(_Model):
    """How tile scores became the slide's score (recorded with every slide verdict)."""

    method: str = "top_k_mean"
    top_k: int = 8


class Lease(_Model):
    """Who runs the job (or a slide's report) now; `token` fences writes of a worker whose lease expired."""

    owner: str
    token: str
    expires_at: datetime


class ReportStatus(StrEnum):
    """Where a slide's report is (`verdict.slide.report.status`)."""

    OFF = "off"  # no report: SLIDE_REPORT_PATCHES is 0 on the slide service
    PENDING = "pending"  # tiles chosen, a `report` task on its way or running
    DONE = "done"  # text written
    FAILED = "failed"  # could not be written: `error` says why (the verdict stands)


class ReportTile(TileRef):
    """A tile chosen for the report's prompt: where it is on the slide and in which shard, its p_yes,
    and whether it was chosen as a top tile (the rest are the sampled context)."""

    shard: int
    p_yes: float | None = None
    top: bool = False


class Report(_Model):
    """The slide-level report written from one multi-image prompt (MedGemma 1.5), after the verdict.

    Its own task (`report`) with its own lease and attempts, stored here: the job's `state`,
    `lease` and `verdict` answer are the verdict's and never change for the report.
    """

    status: str = ReportStatus.OFF.value  # off | pending | done | failed (ReportStatus)
    text: str = ""
    model_id: str = ""
    model_revision: str = ""
    prompt_version: str = ""
    patches: int = 0  # tiles in the prompt (len(tiles))
    tiles: list[ReportTile] = Field(default_factory=list)  # in prompt order (ascending index)
    error: str = ""  # why it failed (status failed), or the last transient fault while pending
    attempts: int = 0  # leases that reached the engine's report path
    lease: Lease | None = None
    published_at: datetime | None = None  # the `report` message acked by Pub/Sub
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    dead_letters: int = 0  # times its message ran out of delivery attempts and was put back in flight
    first_dead_letter_at: datetime | None = None
    inference_ms: float = 0.0
    new_tokens: int = 0


class SlideVerdict(_Model):
    """What a slide verdict adds to a verdict: aggregate, counts, top tiles, artifacts, report."""

    aggregation: Aggregation = Field(default_factory=Aggregation)
    tiles_scored: int = 0
    tiles_positive: int = 0
    top_tiles: list[TileScore] = Field(default_factory=list)
    heatmap_uri: str = ""
    geojson_uri: str = ""
    thumbnail_uri: str = ""
    report: Report = Field(default_factory=Report)


class Slide(_Model):
    """A slide job's geometry and progress (`jobs/{job_id}.slide`)."""

    stage: SlideStage = SlideStage.TILING
    format: str = ""
    vendor: str = ""
    width: int = 0
    height: int = 0
    mpp: float | None = None
    mpp_assumed: bool = False
    objective: float | None = None
    levels: int = 0
    tile_px: int = 0
    tile_mpp: float = 0.0
    tiles_total: int = 0
    shards_total: int = 0
    shards_done: int = 0
    tiles_scored: int = 0
    shards_published_at: datetime | None = None
    finalize_published_at: datetime | None = None
    # Recorded by the slide service when it hands the slide to scoring (docs/SLIDES.md).
    thumbnail_downsample: float = 0.0  # level-0 pixels per thumbnail pixel (the heatmap's scale)
    fetch_ms: float = 0.0  # reading the slide in (a download locally; a metadata check on a FUSE mount)
    tiling_ms: float = 0.0  # opening, tissue, tile plan, shards written


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
    slide: SlideVerdict | None = None  # slide jobs only


class HistoryEntry(_Model):
    """One step in a job's life, appended by the store (at = client clock, UTC)."""

    at: datetime
    event: str
    detail: str = ""


class Job(_Model):
    """A Firestore `jobs/{job_id}` document."""

    schema_version: int = SCHEMA_VERSION
    job_id: str
    kind: JobKind = JobKind.IMAGE
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
    slide: Slide | None = None  # slide jobs only
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


class Shard(_Model):
    """`jobs/{job_id}/shards/{n}`: up to SHARD_TILES tiles of a slide, leased and fenced like a job."""

    n: int
    state: JobState = JobState.QUEUED
    attempts: int = 0
    lease: Lease | None = None
    object: str = ""  # gs://work-bucket/... holding the tiles (healer_media.shard format)
    tiles: list[TileRef] = Field(default_factory=list)
    scores: list[float] | None = None  # p_yes per tile, in `tiles` order, once scored
    published_at: datetime | None = None
    updated_at: datetime | None = None
    error: JobError | None = None
    generation: int = 0  # the shard object's generation as written (reads are pinned to it)
    dead_letters: int = 0  # times its message ran out of delivery attempts and was published again
    first_dead_letter_at: datetime | None = None  # when that first happened
    # Who scored it: the slide verdict's provenance comes from here.
    model_id: str = ""
    model_revision: str = ""
    quantization: str = ""
    prompt_version: str = ""
    inference_ms: float = 0.0


class JobMessage(_Model):
    """The Pub/Sub message for one job: ids only, never image bytes or patient data.

    `task` says what to do (absent in messages from before slides: an image); `shard` names
    the shard of a `shard` task.
    """

    job_id: str
    bucket: str
    name: str
    generation: int
    task: Task = Task.IMAGE
    shard: int | None = None

    @classmethod
    def for_object(cls, bucket: str, name: str, generation: int) -> JobMessage:
        return cls(job_id=job_id_for(bucket, name, generation), bucket=bucket, name=name, generation=generation)

    @classmethod
    def for_job(cls, job: Job) -> JobMessage:
        """The message that starts (or restarts) `job`: score an image, or tile a slide."""
        task = Task.TILE if job.kind == JobKind.SLIDE else Task.IMAGE
        return cls(job_id=job.job_id, bucket=job.bucket, name=job.name, generation=job.generation, task=task)

    def for_shard(self, n: int) -> JobMessage:
        """The message that asks for shard `n` of this slide to be scored."""
        return self.model_copy(update={"task": Task.SHARD, "shard": n})

    def for_task(self, task: Task) -> JobMessage:
        """The same job's message for another slide step (e.g. `finalize`)."""
        return self.model_copy(update={"task": task, "shard": None})

    def to_data(self) -> bytes:
        """The message body as published (an image message keeps its original four fields)."""
        body = self.model_dump(mode="json", exclude_none=True)
        if self.task == Task.IMAGE:
            body.pop("task", None)
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_data(cls, data: bytes) -> JobMessage:
        return cls.model_validate_json(data)

    def attributes(self) -> dict[str, str]:
        attrs = {"job_id": self.job_id}
        if self.task != Task.IMAGE:
            attrs["task"] = str(self.task)
        return attrs
