"""The service's exception hierarchy, drawn once.

    HealerError
    ├── CodedError(code, message)  recorded on the job as its `error`
    │   ├── ImageRejected          permanent: the bytes are not a usable image → job failed, 2xx
    │   ├── SlideRejected          permanent: not a usable whole-slide image    → job failed, 2xx
    │   ├── ShardRejected(reason)  permanent: a tile shard failed validation (code bad_shard)
    │   └── TransientError         retry: storage 5xx, timeouts, engine faults → lease released, 503
    ├── ObjectGone                 permanent: the generation no longer exists  → job failed, 2xx
    └── Busy                       backpressure: batcher full                   → 429

Route handlers never catch broadly; `worker.process_job` maps these to outcomes and the app's
error boundary maps anything unexpected to 503 (a retry), never to a silent ack.
"""

from __future__ import annotations

from healer_core.schema import ErrorCode, JobError


class HealerError(Exception):
    """Base of the service's own errors."""


class CodedError(HealerError):
    """An error that becomes the job's recorded error: a stable code and a human message."""

    retryable = False

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_job_error(self) -> JobError:
        return JobError(code=self.code, message=self.message, retryable=self.retryable)

    def __reduce__(self) -> tuple[type[CodedError], tuple[object, ...]]:
        # Raised in the slide service's worker processes and re-raised in the service: it must pickle.
        return (type(self), (self.code, self.message))


class ImageRejected(CodedError):
    """The uploaded bytes cannot become a model input. Never retried."""


class SlideRejected(CodedError):
    """The uploaded file cannot become a slide verdict (unreadable_slide, unsupported_slide,
    no_tissue, too_large). Never retried: the same bytes fail the same way."""


class ShardRejected(CodedError):
    """A shard object failed validation. `reason` says which check (e.g. `not_a_tar`,
    `manifest`, `tile_count`, `bad_tile`); the job error code is always `bad_shard`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(ErrorCode.BAD_SHARD, f"{reason}: {message}")
        self.reason = reason
        self.detail = message

    def __reduce__(self) -> tuple[type[CodedError], tuple[object, ...]]:
        return (type(self), (self.reason, self.detail))


class ObjectGone(HealerError):
    """The object generation named by the job is not in the bucket any more."""


class TransientError(CodedError):
    """A fault that a later attempt may not meet (storage 5xx, timeout, CUDA OOM)."""

    retryable = True


class Busy(HealerError):
    """Too much work queued already; the caller should come back later."""
