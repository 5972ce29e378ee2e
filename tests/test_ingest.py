"""The ingest function, through functions-framework's own test client, on the real emulators."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from healer_core.ids import job_id_for
from healer_core.schema import JobMessage, JobState

SOURCE = "ingest_function/main.py"


def storage_object(bucket: str, name: str, generation: int = 1700000000000001, **over: Any) -> dict[str, Any]:
    """An object resource as Cloud Storage puts it in a finalize event (numbers as strings)."""
    obj = {
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "generation": str(generation),
        "metageneration": "1",
        "contentType": "image/png",
        "size": "1234",
        "crc32c": "AAAAAA==",
        "timeCreated": "2026-11-29T10:00:00.000Z",
    }
    obj.update(over)
    return obj


def finalize_event(obj: dict[str, Any], event_id: str = "evt-1") -> CloudEvent:
    return CloudEvent(
        {
            "id": event_id,
            "type": "google.cloud.storage.object.v1.finalized",
            "source": f"//storage.googleapis.com/projects/_/buckets/{obj.get('bucket', 'x')}",
            "subject": f"objects/{obj.get('name', 'x')}",
        },
        obj,
    )


class Topic:
    """A per-test jobs topic with a pull subscription to read what ingest published."""

    def __init__(self, project: str, name: str) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.topic = self.publisher.topic_path(project, name)
        self.sub = self.subscriber.subscription_path(project, f"{name}-pull")
        self.publisher.create_topic(name=self.topic)
        self.subscriber.create_subscription(name=self.sub, topic=self.topic)

    def drain(self) -> list[JobMessage]:
        """Every message published so far (acked as read)."""
        messages: list[JobMessage] = []
        while True:
            resp = self.subscriber.pull(subscription=self.sub, max_messages=100, timeout=5, return_immediately=True)
            if not resp.received_messages:
                return messages
            for received in resp.received_messages:
                msg = JobMessage.from_data(received.message.data)
                assert received.message.attributes["job_id"] == msg.job_id
                messages.append(msg)
            self.subscriber.acknowledge(subscription=self.sub, ack_ids=[r.ack_id for r in resp.received_messages])


@pytest.fixture
def topic(emulator_cfg, unique: str) -> Topic:
    return Topic(emulator_cfg.project, f"jobs-{unique}")


@pytest.fixture
def client(emulator_cfg, unique: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """functions-framework's test client for the `ingest` target, wired to per-test names."""
    from healer_ingest import config, handlers

    monkeypatch.setenv("JOBS_TOPIC", f"jobs-{unique}")
    monkeypatch.setenv("JOBS_COLLECTION", f"jobs-{unique}")
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1000000")
    for cached in (config.get_settings, handlers._store, handlers._publisher):
        cached.cache_clear()
    yield create_app("ingest", SOURCE, "cloudevent").test_client()
    for cached in (config.get_settings, handlers._store, handlers._publisher):
        cached.cache_clear()


def post_binary(client: Any, event: CloudEvent) -> Any:
    headers, body = to_binary(event)
    return client.post("/", headers=headers, data=body)


def post_structured(client: Any, event: CloudEvent) -> Any:
    headers, body = to_structured(event)
    return client.post("/", headers=headers, data=body)


def test_binary_event_creates_queued_job_and_publishes_once(client, store, topic) -> None:
    obj = storage_object("inbox", "lab-a/slide-17.png")
    assert post_binary(client, finalize_event(obj)).status_code == 200

    job_id = job_id_for("inbox", "lab-a/slide-17.png", 1700000000000001)
    job = store.get(job_id)
    assert job is not None
    assert (job.state, job.generation, job.size_bytes, job.content_type) == (
        JobState.QUEUED,
        1700000000000001,
        1234,
        "image/png",
    )
    assert job.published_at is not None and job.created_at is not None
    assert [m.job_id for m in topic.drain()] == [job_id]


def test_structured_event_is_accepted_too(client, store, topic) -> None:
    obj = storage_object("inbox", "b.tif", generation=42, contentType="image/tiff")
    assert post_structured(client, finalize_event(obj)).status_code == 200
    assert store.get(job_id_for("inbox", "b.tif", 42)).state == JobState.QUEUED
    assert len(topic.drain()) == 1


def test_duplicate_events_make_one_job_and_one_message(client, store, topic) -> None:
    obj = storage_object("inbox", "dup.png")
    for i in range(5):
        assert post_binary(client, finalize_event(obj, event_id=f"evt-{i}")).status_code == 200
    assert len(list(store.iter_jobs())) == 1
    assert len(topic.drain()) == 1


def test_new_generation_is_a_new_job(client, store, topic) -> None:
    post_binary(client, finalize_event(storage_object("inbox", "same.png", generation=1)))
    post_binary(client, finalize_event(storage_object("inbox", "same.png", generation=2)))
    assert {j.generation for j in store.iter_jobs()} == {1, 2}
    assert store.latest_for("inbox", "same.png").generation == 2
    assert len(topic.drain()) == 2


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"contentType": "application/pdf"}, "not_an_image"),
        ({"contentType": "text/html; charset=utf-8"}, "not_an_image"),
        ({"size": "0"}, "empty"),
        ({"size": "1000001"}, "too_large"),
    ],
)
def test_rejected_objects_become_failed_jobs_without_a_message(client, store, topic, over, code) -> None:
    obj = storage_object("inbox", "bad.bin", **over)
    assert post_binary(client, finalize_event(obj)).status_code == 200
    job = store.get(job_id_for("inbox", "bad.bin", 1700000000000001))
    assert job.state == JobState.FAILED
    assert job.error.code == code and job.error.message and not job.error.retryable
    assert job.finished_at is not None
    assert topic.drain() == []


def test_untyped_upload_is_queued_for_the_service_to_sniff(client, store, topic) -> None:
    post_binary(client, finalize_event(storage_object("inbox", "scan", contentType="application/octet-stream")))
    assert store.get(job_id_for("inbox", "scan", 1700000000000001)).state == JobState.QUEUED


def test_folder_marker_is_acked_without_a_job(client, store, topic) -> None:
    obj = storage_object("inbox", "lab-a/", size="0", contentType="application/x-www-form-urlencoded")
    assert post_binary(client, finalize_event(obj)).status_code == 200
    assert list(store.iter_jobs()) == []
    assert topic.drain() == []


def test_malformed_event_is_rejected_with_a_clear_error(client, store, topic, caplog) -> None:
    obj = storage_object("inbox", "x.png")
    del obj["generation"]
    with caplog.at_level(logging.ERROR, logger="healer.ingest"):
        assert post_binary(client, finalize_event(obj)).status_code == 200
    assert list(store.iter_jobs()) == []
    assert any("generation" in getattr(r, "reason", "") for r in caplog.records)


def test_wrong_event_type_is_rejected(client, store) -> None:
    event = finalize_event(storage_object("inbox", "x.png"))
    event["type"] = "google.cloud.storage.object.v1.deleted"
    assert post_binary(client, event).status_code == 200
    assert list(store.iter_jobs()) == []


def test_crash_between_create_and_publish_publishes_exactly_once_on_redelivery(client, store, topic) -> None:
    from healer_ingest import handlers

    real = handlers._publisher()

    class CrashingOnce:
        crashed = False

        def publish(self, message: JobMessage) -> str:
            if not self.crashed:
                self.crashed = True
                raise ConnectionError("simulated crash before publish")
            return real.publish(message)

    crashing = CrashingOnce()
    original = handlers._publisher
    handlers._publisher = lambda: crashing  # type: ignore[assignment]
    try:
        obj = storage_object("inbox", "crash.png")
        assert post_binary(client, finalize_event(obj)).status_code == 500  # raised: Eventarc retries
        job = store.get(job_id_for("inbox", "crash.png", 1700000000000001))
        assert job.state == JobState.QUEUED and job.published_at is None
        for _ in range(3):  # the retry, then more duplicates
            assert post_binary(client, finalize_event(obj)).status_code == 200
    finally:
        handlers._publisher = original
    assert len(topic.drain()) == 1
    assert store.get(job_id_for("inbox", "crash.png", 1700000000000001)).published_at is not None


def test_message_carries_ids_only(client, topic) -> None:
    post_binary(client, finalize_event(storage_object("inbox", "ids.png")))
    (msg,) = topic.drain()
    assert set(json.loads(msg.to_data())) == {"job_id", "bucket", "name", "generation"}
