"""The CLI ingests, publishes and reconciles through the ingest function's own code, with the
function's settings (the same environment variables and defaults), on the real emulators."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from healer_ingest.config import IngestSettings

from healer_core.ids import job_id_for
from healer_core.schema import ErrorCode, Job, JobMessage, JobState
from healer_core.store import JobStore
from tests import test_cli
from tests.test_cli import PNG_1PX, _published, run

pytestmark = pytest.mark.emulator

topic = test_cli.topic  # the per-test jobs topic, its check subscription and dead-letter pair

Topic = tuple[str, Any, str]


def test_eval_ingests_a_bare_object_with_the_functions_size_limit(
    store: JobStore, bucket: Any, tmp_path: Path, topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object already in the bucket with no job is admitted by the function's rules: over
    MAX_IMAGE_BYTES it fails as too_large at once (no message), with the function's TTL."""
    name, subscriber, check = topic
    monkeypatch.setenv("MAX_IMAGE_BYTES", "10")
    monkeypatch.setenv("JOB_TTL_DAYS", "1")
    blob = bucket.blob("set/big.png")
    blob.upload_from_string(PNG_1PX, content_type="image/png")
    labels = tmp_path / "labels.csv"
    labels.write_text("object,truth\nset/big.png,yes\n")
    args = ["--bucket", bucket.name, "--collection", store.collection.id, "--topic", name]

    code, out = run("eval", str(labels), "--out", str(tmp_path / "out"), "--timeout", "5", *args)
    assert code == 1 and "none of the 1 cases has a verdict" in out, out
    job = store.get(job_id_for(bucket.name, "set/big.png", int(blob.generation)))
    assert job is not None and job.state == JobState.FAILED and job.event_id == "healer-eval"
    assert job.error is not None and job.error.code == ErrorCode.TOO_LARGE
    assert "the limit is 10 bytes (MAX_IMAGE_BYTES)" in job.error.message
    assert job.expire_at is not None  # JOB_TTL_DAYS, as the function's store sets it
    assert _published(subscriber, check) == []


def test_reconcile_republishes_stale_queued_jobs_after_the_functions_setting(
    store: JobStore, bucket: Any, topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STALE_QUEUED_SECONDS reaches `healer reconcile` as it reaches the scheduled function."""
    name, subscriber, check = topic
    message = JobMessage.for_object(bucket.name, "q/lost.png", 7)
    _, job = store.create(Job.for_message(message))
    store.mark_published(job.job_id, "a-message-that-was-lost")
    args = ["--bucket", bucket.name, "--collection", store.collection.id, "--topic", name]

    code, out = run("reconcile", *args)  # the default (an hour): not stale yet
    assert code == 0 and "republished_stale" not in out, out
    assert _published(subscriber, check) == []

    time.sleep(1.5)
    monkeypatch.setenv("STALE_QUEUED_SECONDS", "1")
    code, out = run("reconcile", *args)
    assert code == 0, out
    assert "republished_stale" in out and "1 object(s) needed work" in out
    assert [m.job_id for m in _published(subscriber, check)] == [job.job_id]


def test_reconcile_grace_defaults_to_the_functions_and_refuses_a_negative_one(
    store: JobStore, bucket: Any, topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, subscriber, check = topic
    args = ["--bucket", bucket.name, "--collection", store.collection.id, "--topic", name]
    message = JobMessage.for_object(bucket.name, "q/never-published.png", 3)
    store.create(Job.for_message(message))  # created, its publish never recorded

    code, out = run("reconcile", *args)
    assert code == 0 and "republished" not in out, out  # within UNPUBLISHED_GRACE_SECONDS (120 s)
    monkeypatch.setenv("UNPUBLISHED_GRACE_SECONDS", "0")
    code, out = run("reconcile", *args)
    assert code == 0 and "republished" in out, out
    assert [m.job_id for m in _published(subscriber, check)] == [message.job_id]

    code, out = run("reconcile", "--grace", "-1", *args)
    assert code == 2 and "--grace" in out


def test_a_bad_ingest_setting_is_one_line_naming_the_variable(
    store: JobStore, bucket: Any, topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_IMAGE_BYTES", "lots")
    code, out = run("reconcile", "--bucket", bucket.name, "--collection", store.collection.id, "--topic", topic[0])
    assert code == 1
    assert out.startswith("error: invalid ingest setting in the environment: MAX_IMAGE_BYTES")
    assert len(out.strip().splitlines()) == 1


def test_replaying_a_dead_letter_without_a_job_creates_and_publishes_it(
    store: JobStore, topic: Topic, emulator_cfg: Any, unique: str
) -> None:
    name, subscriber, check = topic
    message = JobMessage.for_object(f"b-{unique}", "d/orphan.png", 11)
    publisher = pubsub_v1.PublisherClient()
    dead_topic = publisher.topic_path(emulator_cfg.project, f"{name}-dead-letter")
    publisher.publish(dead_topic, message.to_data(), **message.attributes()).result(timeout=10)

    code, out = run("dead-letters", "--replay", "--collection", store.collection.id, "--topic", name)
    assert code == 0, out
    assert "created and published" in out and "1 dead letter(s) replayed" in out
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.QUEUED and job.published_at is not None
    assert (job.bucket, job.name, job.generation) == (message.bucket, message.name, message.generation)
    assert [m.job_id for m in _published(subscriber, check)] == [message.job_id]


def test_the_cli_aims_the_functions_settings_at_its_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags pick the project, topic, collection and database; the rest is the function's."""
    from healer.cli.clients import Clients
    from healer.cli.settings import Settings

    monkeypatch.setenv("JOBS_TOPIC", "from-env")
    monkeypatch.setenv("PUBLISH_TIMEOUT_SECONDS", "7")
    settings = Settings(project="p1", bucket="b1", collection="c1", topic="t1", database="d1")
    ingest = Clients(settings).ingest
    assert (ingest.project_id, ingest.jobs_topic, ingest.jobs_collection, ingest.firestore_database) == (
        "p1",
        "t1",
        "c1",
        "d1",
    )
    assert ingest.publish_timeout_seconds == 7.0
    assert ingest.stale_queued_seconds == IngestSettings().stale_queued_seconds
