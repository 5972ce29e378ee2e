"""The service's exception hierarchy, drawn once.

    HealerError
    ├── ImageRejected(code)      permanent: the bytes are not a usable image → job failed, 2xx
    ├── SlideRejected(code)      permanent: the file is not a usable whole-slide image → job failed
    ├── ShardRejected(reason)    permanent: a tile shard failed validation (code bad_shard)
    ├── ObjectGone               permanent: the generation no longer exists  → job failed, 2xx
    ├── TransientError           retry: storage 5xx, timeouts, engine faults → lease released, 503
    └── Busy                     backpressure: batcher full                   → 429

Route handlers never catch broadly; `worker.process_job` maps these to outcomes and the app's
error boundary maps anything unexpected to 503 (a retry), never to a silent ack.
"""

from __future__ import annotations

from healer_core.schema import ErrorCode, JobError


class HealerError(Exception):
    """Base of the service's own errors."""


class ImageRejected(HealerError):
    """The uploaded bytes cannot become a model input. Never retried."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_job_error(self) -> JobError:
        return JobError(code=self.code, message=self.message, retryable=False)


class SlideRejected(HealerError):
    """The uploaded file cannot become a slide verdict (unreadable_slide, unsupported_slide,
    no_tissue, too_large). Never retried: the same bytes fail the same way."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[SlideRejected], tuple[ErrorCode, str]]:
        # Raised in the slide service's worker processes and re-raised in the service: it must pickle.
        return (SlideRejected, (self.code, self.message))

    def as_job_error(self) -> JobError:
        return JobError(code=self.code, message=self.message, retryable=False)


class ShardRejected(HealerError):
    """A shard object failed validation. `reason` says which check (e.g. `not_a_tar`,
    `manifest`, `tile_count`, `bad_tile`); the job error code is always `bad_shard`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.code = ErrorCode.BAD_SHARD
        self.reason = reason
        self.message = message

    def as_job_error(self) -> JobError:
        return JobError(code=self.code, message=f"{self.reason}: {self.message}", retryable=False)


class ObjectGone(HealerError):
    """The object generation named by the job is not in the bucket any more."""


class TransientError(HealerError):
    """A fault that a later attempt may not meet (storage 5xx, timeout, CUDA OOM)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_job_error(self) -> JobError:
        return JobError(code=self.code, message=self.message, retryable=True)


class Busy(HealerError):
    """Too much work queued already; the caller should come back later."""
