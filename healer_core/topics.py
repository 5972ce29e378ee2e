"""Which topic a job message goes to, and a publisher that sends each message there.

    image, shard, report  → the jobs topic (JOBS_TOPIC): the inference service scores them
    tile, finalize        → the slides topic (SLIDES_TOPIC): the slide service runs them

Everything that publishes job messages (ingest, reconcile and its sweep, the CLI, the slide
service, the inference service) publishes through a `TopicRouter`, so a message can only ever
reach the service that handles its task.
"""

from __future__ import annotations

from healer_core.publisher import Publisher, PubSubPublisher
from healer_core.schema import JobMessage, Task

SLIDE_TASKS = frozenset({Task.TILE, Task.FINALIZE})


def is_slide_task(task: Task) -> bool:
    """Whether the slide service (not the inference service) handles `task`."""
    return task in SLIDE_TASKS


class TopicRouter:
    """A Publisher that sends each message to its task's topic."""

    def __init__(self, jobs: Publisher, slides: Publisher) -> None:
        self.jobs = jobs
        self.slides = slides

    def publish(self, message: JobMessage) -> str:
        """Publish to the task's topic; returns the Pub/Sub message id."""
        target = self.slides if is_slide_task(message.task) else self.jobs
        return target.publish(message)


def topic_router(project: str, jobs_topic: str, slides_topic: str, timeout_s: float = 30.0) -> TopicRouter:
    """A router over the two real topics of `project`."""
    return TopicRouter(
        PubSubPublisher(project, jobs_topic, timeout_s), PubSubPublisher(project, slides_topic, timeout_s)
    )
