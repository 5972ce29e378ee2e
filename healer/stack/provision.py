"""Create the bucket, topics and subscriptions on the emulators, as terraform/ does in GCP."""

from __future__ import annotations

import contextlib
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage  # type: ignore[attr-defined]
from google.protobuf import duration_pb2

from healer.stack.config import StackConfig
from healer.stack.storage_events import eventarc_subscription, notification_topic

# How long the dead-letter hold subscriptions keep a message (Pub/Sub's maximum: a week).
RETAIN_S = 7 * 24 * 3600


def _duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def ensure_bucket(cfg: StackConfig) -> None:
    """The inbox, and the slide path's work and results buckets."""
    client = storage.Client(project=cfg.project)
    for name in (cfg.bucket, cfg.work_bucket, cfg.results_bucket):
        with contextlib.suppress(gexc.Conflict):
            client.create_bucket(name)


def _create(topics: list[str], subscriptions: list[dict[str, Any]]) -> None:
    """Create each topic and subscription that does not exist yet."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    for topic in topics:
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic)
    for sub in subscriptions:
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request=sub)


def _work_queue(
    cfg: StackConfig, topic: str, dead: str, names: tuple[str, str, str], endpoint: str = ""
) -> list[dict[str, Any]]:
    """A work topic's three subscriptions as terraform/pubsub.tf makes them: `names` = the work
    subscription (retry backoff, dead letter after MAX_DELIVERY_ATTEMPTS), the dead-letter topic's
    push subscription (retry backoff) and its hold subscription (kept a week). With `endpoint`
    the first two push to its /pubsub/push and /pubsub/dead-letter; without, they are pull
    subscriptions the push stand-in delivers."""
    work, dead_push, hold = (pubsub_v1.SubscriberClient.subscription_path(cfg.project, name) for name in names)

    def pushed_to(path: str) -> dict[str, Any]:
        return {"push_config": {"push_endpoint": f"{endpoint}{path}"}} if endpoint else {}

    retry = {
        "minimum_backoff": _duration(cfg.min_backoff_seconds),
        "maximum_backoff": _duration(cfg.max_backoff_seconds),
    }
    return [
        {
            "name": work,
            "topic": topic,
            **pushed_to("/pubsub/push"),
            "ack_deadline_seconds": cfg.ack_deadline_seconds,
            "retry_policy": retry,
            "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": cfg.max_delivery_attempts},
        },
        {
            "name": dead_push,
            "topic": dead,
            **pushed_to("/pubsub/dead-letter"),
            "ack_deadline_seconds": 60,
            "retry_policy": retry,
        },
        {"name": hold, "topic": dead, "ack_deadline_seconds": 60, "message_retention_duration": _duration(RETAIN_S)},
    ]


def ensure_pubsub(cfg: StackConfig) -> None:
    """Topics, the jobs subscription (retry backoff, dead letter after N), the dead-letter pair.

    The two subscriptions terraform/pubsub.tf makes push subscriptions are pull subscriptions
    here with the same policies: the push stand-in (healer/stack/push.py) delivers them with
    Pub/Sub's concurrency, which the emulator's own push (2 at a time) does not have.
    Also the bucket's notification topic (its finalize events, `storage_events.py`) and the
    Eventarc stand-in's subscription to it.
    """
    jobs = pubsub_v1.PublisherClient.topic_path(cfg.project, cfg.jobs_topic)
    dead = pubsub_v1.PublisherClient.topic_path(cfg.project, cfg.dead_letter_topic)
    notifications = pubsub_v1.PublisherClient.topic_path(cfg.project, notification_topic(cfg.bucket))
    names = (cfg.push_subscription, cfg.dead_letter_push_subscription, cfg.dead_letter_pull_subscription)
    eventarc = {
        "name": pubsub_v1.SubscriberClient.subscription_path(cfg.project, eventarc_subscription(cfg.bucket)),
        "topic": notifications,
        "ack_deadline_seconds": 60,
    }
    _create([jobs, dead, notifications], [*_work_queue(cfg, jobs, dead, names), eventarc])


def ensure_slides_pubsub(cfg: StackConfig) -> None:
    """The slides topic and its subscriptions, as terraform/ makes them: `slides-push` to the slide
    service's /pubsub/push (retry backoff, dead letter after N attempts), `slides-dead-letter`
    pushed to its /pubsub/dead-letter and retained by `slides-dead-letter-hold`."""
    slides = pubsub_v1.PublisherClient.topic_path(cfg.project, cfg.slides_topic)
    dead = pubsub_v1.PublisherClient.topic_path(cfg.project, cfg.slides_dead_letter_topic)
    names = (
        cfg.slides_push_subscription,
        cfg.slides_dead_letter_push_subscription,
        cfg.slides_dead_letter_pull_subscription,
    )
    _create([slides, dead], _work_queue(cfg, slides, dead, names, cfg.slide_url))
