"""Publishing job messages to Pub/Sub (ingest and reconcile publish them; the service republishes
dead letters that still deserve a run)."""

from __future__ import annotations

from typing import Protocol

from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from healer_core.schema import Job, JobMessage
from healer_core.store import JobStore


class Publisher(Protocol):
    """Sends a job message; returns the Pub/Sub message id."""

    def publish(self, message: JobMessage) -> str: ...


class PubSubPublisher:
    """Publishes to one topic and waits for the server's ack (so 'published' is true)."""

    def __init__(self, project: str, topic: str, timeout_s: float = 30.0) -> None:
        self._client = pubsub_v1.PublisherClient()
        self._topic = self._client.topic_path(project, topic)
        self._timeout = timeout_s

    def publish(self, message: JobMessage) -> str:
        future = self._client.publish(self._topic, message.to_data(), **message.attributes())
        return str(future.result(timeout=self._timeout))


def publish_job(store: JobStore, publisher: Publisher, job: Job) -> str:
    """Publish `job`'s message, then record the publish on the job. Returns the message id.

    The one way a job's message goes out: ingest, reconcile, the sweep and the CLI's requeue and
    dead-letter replay all call it, so "published_at is set" always means "the server acked it".
    A slide job's message is its `tile` task (`JobMessage.for_job`): with a `TopicRouter` it
    goes to the slides topic.
    """
    message_id = publisher.publish(JobMessage.for_job(job))
    store.mark_published(job.job_id, message_id)
    return message_id
