"""Create the bucket, topics and subscriptions on the emulators, as terraform/ does in GCP."""

from __future__ import annotations

import contextlib

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage  # type: ignore[attr-defined]
from google.protobuf import duration_pb2

from healer.stack.config import StackConfig
from healer.stack.storage_events import eventarc_subscription, notification_topic


def _duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def ensure_bucket(cfg: StackConfig) -> None:
    """The inbox, and the slide path's work and results buckets."""
    client = storage.Client(project=cfg.project)
    for name in (cfg.bucket, cfg.work_bucket, cfg.results_bucket):
        with contextlib.suppress(gexc.Conflict):
            client.create_bucket(name)


def ensure_pubsub(cfg: StackConfig) -> None:
    """Topics, the jobs subscription (retry backoff, dead letter after N), the dead-letter pair.

    The two subscriptions terraform/pubsub.tf makes push subscriptions are pull subscriptions
    here with the same policies: the push stand-in (healer/stack/push.py) delivers them with
    Pub/Sub's concurrency, which the emulator's own push (2 at a time) does not have.
    Also the bucket's notification topic (its finalize events, `storage_events.py`) and the
    Eventarc stand-in's subscription to it.
    """
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    jobs = publisher.topic_path(cfg.project, cfg.jobs_topic)
    dead = publisher.topic_path(cfg.project, cfg.dead_letter_topic)
    notifications = publisher.topic_path(cfg.project, notification_topic(cfg.bucket))
    for topic in (jobs, dead, notifications):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic)
    retry = {
        "minimum_backoff": _duration(cfg.min_backoff_seconds),
        "maximum_backoff": _duration(cfg.max_backoff_seconds),
    }
    subscriptions = [
        {
            "name": subscriber.subscription_path(cfg.project, cfg.push_subscription),
            "topic": jobs,
            "ack_deadline_seconds": cfg.ack_deadline_seconds,
            "retry_policy": retry,
            "dead_letter_policy": {
                "dead_letter_topic": dead,
                "max_delivery_attempts": cfg.max_delivery_attempts,
            },
        },
        {
            "name": subscriber.subscription_path(cfg.project, cfg.dead_letter_push_subscription),
            "topic": dead,
            "ack_deadline_seconds": 60,
            "retry_policy": retry,
        },
        {
            "name": subscriber.subscription_path(cfg.project, cfg.dead_letter_pull_subscription),
            "topic": dead,
            "ack_deadline_seconds": 60,
            "message_retention_duration": _duration(7 * 24 * 3600),
        },
        {
            "name": subscriber.subscription_path(cfg.project, eventarc_subscription(cfg.bucket)),
            "topic": notifications,
            "ack_deadline_seconds": 60,
        },
    ]
    for sub in subscriptions:
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request=sub)


def ensure_slides_pubsub(cfg: StackConfig) -> None:
    """The slides topic and its subscriptions, as terraform/ makes them: `slides-push` to the slide
    service's /pubsub/push (retry backoff, dead letter after N attempts), `slides-dead-letter`
    pushed to its /pubsub/dead-letter and retained by `slides-dead-letter-hold`."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    slides = publisher.topic_path(cfg.project, cfg.slides_topic)
    dead = publisher.topic_path(cfg.project, cfg.slides_dead_letter_topic)
    for topic in (slides, dead):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic)
    retry = {
        "minimum_backoff": _duration(cfg.min_backoff_seconds),
        "maximum_backoff": _duration(cfg.max_backoff_seconds),
    }
    subscriptions = [
        {
            "name": subscriber.subscription_path(cfg.project, cfg.slides_push_subscription),
            "topic": slides,
            "push_config": {"push_endpoint": f"{cfg.slide_url}/pubsub/push"},
            "ack_deadline_seconds": cfg.ack_deadline_seconds,
            "retry_policy": retry,
            "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": cfg.max_delivery_attempts},
        },
        {
            "name": subscriber.subscription_path(cfg.project, cfg.slides_dead_letter_push_subscription),
            "topic": dead,
            "push_config": {"push_endpoint": f"{cfg.slide_url}/pubsub/dead-letter"},
            "ack_deadline_seconds": 60,
            "retry_policy": retry,
        },
        {
            "name": subscriber.subscription_path(cfg.project, cfg.slides_dead_letter_pull_subscription),
            "topic": dead,
            "ack_deadline_seconds": 60,
            "message_retention_duration": _duration(7 * 24 * 3600),
        },
    ]
    for sub in subscriptions:
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request=sub)
