"""The storage emulator's launcher publishes one finalize notification per generation (issue 11,
item 6), by every write path, on the session's emulators (the official Python client uploads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1, storage  # type: ignore[attr-defined]

from healer.stack.config import StackConfig
from healer.stack.storage_events import OBJECT_FINALIZE, notification_topic


class Notifications:
    """The bucket's notification topic (which turns its notifications on) and a pull subscription."""

    def __init__(self, project: str, bucket: str) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.topic = self.publisher.topic_path(project, notification_topic(bucket))
        self.sub = self.subscriber.subscription_path(project, f"{notification_topic(bucket)}-test")
        self.publisher.create_topic(name=self.topic)
        self.subscriber.create_subscription(request={"name": self.sub, "topic": self.topic})

    def pull(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """(attributes, object resource) of every notification so far, in publish order."""
        found: list[Any] = []
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.sub, "max_messages": 100, "return_immediately": True}, timeout=10
            )
            if not response.received_messages:
                break
            found += response.received_messages
            ack_ids = [r.ack_id for r in response.received_messages]
            self.subscriber.acknowledge(request={"subscription": self.sub, "ack_ids": ack_ids})
        found.sort(key=lambda r: r.message.publish_time)
        return [(dict(r.message.attributes), json.loads(r.message.data)) for r in found]

    def close(self) -> None:
        self.subscriber.delete_subscription(subscription=self.sub)
        self.publisher.delete_topic(topic=self.topic)


@pytest.fixture
def notifications(emulator_cfg: StackConfig, bucket: storage.Bucket) -> Iterator[Notifications]:
    n = Notifications(emulator_cfg.project, bucket.name)
    yield n
    n.close()


def generations(events: list[tuple[dict[str, str], dict[str, Any]]], name: str) -> list[int]:
    return [int(a["objectGeneration"]) for a, _ in events if a["objectId"] == name]


def test_a_burst_of_overwrites_gives_one_notification_per_generation(
    bucket: storage.Bucket, notifications: Notifications
) -> None:
    blob = bucket.blob("lab-a/same-name.png")
    uploaded = []
    for i in range(8):
        blob.upload_from_string(f"version {i}".encode(), content_type="image/png")
        uploaded.append(int(blob.generation))
    events = notifications.pull()
    assert generations(events, blob.name) == uploaded
    for (attributes, resource), generation in zip(events, uploaded, strict=True):
        assert attributes["eventType"] == OBJECT_FINALIZE and attributes["payloadFormat"] == "JSON_API_V1"
        assert attributes["bucketId"] == bucket.name and resource["bucket"] == bucket.name
        assert int(resource["generation"]) == generation and resource["name"] == blob.name
        assert resource["size"] == str(len("version 0")) and resource["contentType"] == "image/png"
    overwrote = [a.get("overwroteGeneration") for a, _ in events]
    assert overwrote == [None] + [str(g) for g in uploaded[:-1]]


def test_every_write_path_notifies_once(bucket: storage.Bucket, notifications: Notifications) -> None:
    """Multipart and resumable uploads, copy, rewrite and compose each finalize one generation."""
    small = bucket.blob("paths/small.png")
    small.upload_from_string(b"small", content_type="image/png")
    large = bucket.blob("paths/resumable.png", chunk_size=256 * 1024)  # a chunk size forces resumable
    large.upload_from_string(os.urandom(600 * 1024), content_type="image/png")
    copied = bucket.copy_blob(small, bucket, "paths/copied.png")
    rewritten = bucket.blob("paths/rewritten.png")
    rewritten.rewrite(small)
    composed = bucket.blob("paths/composed.png")
    composed.compose([small, copied])
    events = notifications.pull()
    expected = {b.name: int(b.generation) for b in (small, large, copied, composed)}
    rewritten.reload()
    expected[rewritten.name] = int(rewritten.generation)
    assert sorted((r["name"], int(r["generation"])) for _, r in events) == sorted(expected.items())
    by_name = {r["name"]: r for _, r in events}
    assert by_name[large.name]["size"] == str(600 * 1024)


def test_the_google_cloud_cli_upload_notifies(
    emulator_cfg: StackConfig, bucket: storage.Bucket, notifications: Notifications, tmp_path: Path
) -> None:
    """`gcloud storage cp` (the launcher's other fixes) goes through the same write path."""
    if shutil.which("gcloud") is None:
        pytest.fail("the Google Cloud CLI is required (it also runs the Pub/Sub and Firestore emulators)")
    source = tmp_path / "tile.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(1000))
    env = os.environ | emulator_cfg.client_env() | emulator_cfg.gcloud_env() | {"CLOUDSDK_CONFIG": str(tmp_path)}
    target = f"gs://{bucket.name}/cli/tile.png"
    subprocess.run(["gcloud", "storage", "cp", str(source), target], env=env, check=True, timeout=180)
    blob = bucket.get_blob("cli/tile.png")
    assert blob is not None
    assert generations(notifications.pull(), "cli/tile.png") == [int(blob.generation)]


def test_a_bucket_without_a_notification_topic_still_takes_uploads(bucket: storage.Bucket) -> None:
    """No topic, no notification configured (as on Cloud Storage): the upload is unaffected."""
    blob = bucket.blob("quiet.png")
    blob.upload_from_string(b"data", content_type="image/png")
    assert bucket.get_blob("quiet.png") is not None and blob.download_as_bytes() == b"data"
