"""Publishing job messages to Pub/Sub (ingest and reconcile publish them; the service republishes
dead letters that still deserve a run)."""

from __future__ import annotations

from typing import Protocol

from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from healer_core.schema import JobMessage


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
