"""What a slide step (tile, finalize) did, and the status code Pub/Sub acts on (2xx = ack,
anything else = redeliver with backoff)."""

from __future__ import annotations

from enum import StrEnum

from healer_core.slide_store import StepStatus


class Step(StrEnum):
    DONE = "done"  # the step ran: shards out, or the verdict written (204)
    ALREADY_TERMINAL = "already_terminal"  # the job is finished (204)
    NOT_DUE = "not_due"  # the slide is past this step, or not yet at it (204)
    FAILED = "failed"  # a permanent failure recorded (204)
    FENCED = "fenced"  # our lease expired and someone else owns the step (204)
    HELD = "held"  # another worker holds the lease (429)
    RETRY = "retry"  # transient fault, lease released (503)


STATUS_FOR: dict[Step, int] = {
    Step.DONE: 204,
    Step.ALREADY_TERMINAL: 204,
    Step.NOT_DUE: 204,
    Step.FAILED: 204,
    Step.FENCED: 204,
    Step.HELD: 429,
    Step.RETRY: 503,
}


def unleased(status: StepStatus) -> Step | None:
    """What a step answers when it did not get the lease (None: it did)."""
    return {
        StepStatus.TERMINAL: Step.ALREADY_TERMINAL,
        StepStatus.HELD: Step.HELD,
        StepStatus.NOT_DUE: Step.NOT_DUE,
        StepStatus.MISSING: Step.NOT_DUE,
    }.get(status)
