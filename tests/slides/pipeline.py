"""The slide pipeline in one test process, on the real emulators: per-test buckets, topics and
collection; the real ingest code; the slide service and the inference service (FakeEngine) as
in-process apps; and a `Pump` that plays Pub/Sub push — it pulls what was published to each
topic and POSTs it to the service that topic's push subscription targets, nacking anything not
answered 2xx (so it is delivered again), exactly as a push subscription would.

Deterministic where the real stack is not: tests choose when, how often and how concurrently
messages are delivered (twice, sixteen at once, never).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from fastapi.testclient import TestClient
from google.cloud import pubsub_v1, storage  # type: ignore[attr-defined]
from healer_ingest.event import object_from_blob
from healer_ingest.ingest import ingest_object
from healer_ingest.kinds import Classifier

from healer_core.schema import Job, JobMessage, Task
from healer_core.slide_store import SlideStore
from healer_core.sniff import SniffLimits
from healer_core.topics import is_slide_task, topic_router
from healer_media.blobs import GcsBlobSource
from inference_service.app import create_app as inference_app
from inference_service.settings import Settings
from slide_service.app import create_app as slide_app
from slide_service.settings import SlideSettings
from tests.fakes import FakeEngine
from tests.service_helpers import wait_ready

# Small tiles and shards: many shards from a small slide, fast on two cores.
SLIDE_ENV: dict[str, Any] = {"TILE_PX": 224, "SHARD_TILES": 4, "TILING_PROCESSES": 1, "LEASE_SECONDS": 30}


@dataclass
class Topic:
    """A per-test topic with a pull subscription standing in for its push subscription."""

    project: str
    name: str
    publisher: Any = field(default_factory=pubsub_v1.PublisherClient)
    subscriber: Any = field(default_factory=pubsub_v1.SubscriberClient)

    def __post_init__(self) -> None:
        self.path = self.publisher.topic_path(self.project, self.name)
        self.sub = self.subscriber.subscription_path(self.project, f"{self.name}-pull")
        self.publisher.create_topic(name=self.path)
        self.subscriber.create_subscription(name=self.sub, topic=self.path, ack_deadline_seconds=60)

    def pull(self, max_messages: int = 100) -> list[Any]:
        response = self.subscriber.pull(
            subscription=self.sub, max_messages=max_messages, timeout=5, return_immediately=True
        )
        return list(response.received_messages)

    def settle(self, received: Any, acked: bool) -> None:
        if acked:
            self.subscriber.acknowledge(subscription=self.sub, ack_ids=[received.ack_id])
        else:  # a push that failed: delivered again
            self.subscriber.modify_ack_deadline(
                subscription=self.sub, ack_ids=[received.ack_id], ack_deadline_seconds=0
            )

    def drain(self) -> list[JobMessage]:
        """Everything waiting, acknowledged without delivery (a message 'lost')."""
        lost: list[JobMessage] = []
        while batch := self.pull():
            for received in batch:
                lost.append(JobMessage.from_data(received.message.data))
                self.settle(received, acked=True)
        return lost

    def close(self) -> None:
        self.subscriber.delete_subscription(subscription=self.sub)
        self.publisher.delete_topic(topic=self.path)


def push_body(message: JobMessage, attempt: int = 1) -> dict[str, Any]:
    """A Pub/Sub push request body."""
    return {
        "message": {
            "data": base64.b64encode(message.to_data()).decode(),
            "attributes": message.attributes(),
            "messageId": "m",
        },
        "subscription": "projects/healer-test/subscriptions/test-push",
        "deliveryAttempt": attempt,
    }


@dataclass
class Pipeline:
    """Everything one slide test needs, wired together (see the module docstring)."""

    project: str
    store: SlideStore
    inbox: storage.Bucket
    work: storage.Bucket
    results: storage.Bucket
    jobs: Topic
    slides: Topic
    slide_settings: SlideSettings
    slide: TestClient
    inference: TestClient
    engine: FakeEngine
    statuses: list[tuple[str, int]] = field(default_factory=list)  # (task, status) of every delivery
    # Where to deliver instead of the in-process apps (a service running as its own process).
    slide_url: str = ""
    inference_url: str = ""

    def upload(self, path: Path, name: str | None = None) -> JobMessage:
        """Upload a file and ingest it with the real ingest code (as the ingest function would)."""
        blob = self.inbox.blob(name or f"lab/{path.name}")
        blob.upload_from_filename(str(path))
        blob.reload()
        classifier = Classifier(self.inbox.client, SniffLimits(), self.slide_settings.max_slide_bytes)
        publisher = topic_router(self.project, self.jobs.name, self.slides.name)
        result = ingest_object(
            object_from_blob(blob),
            event_id="test",
            store=self.store,
            publisher=publisher,
            max_image_bytes=50 * 1024 * 1024,
            classifier=classifier,
        )
        return JobMessage.for_job(self.job(result.job_id))

    def job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        assert job is not None
        return job

    def deliver(self, message: JobMessage, route: str = "push") -> int:
        """POST one message to the service its task belongs to (0: no answer at all)."""
        slide_task = is_slide_task(message.task)
        url = self.slide_url if slide_task else self.inference_url
        body = json.dumps(push_body(message))
        if url:
            try:
                status = requests.post(f"{url}/pubsub/{route}", data=body, timeout=60).status_code
            except requests.RequestException:
                status = 0  # refused or cut: Pub/Sub counts it as a failed delivery
        else:
            client = self.slide if slide_task else self.inference
            status = client.post(f"/pubsub/{route}", content=body).status_code
        self.statuses.append((str(message.task), status))
        return status

    def pump_once(self, concurrency: int = 1) -> int:
        """Deliver what is waiting on both topics; returns how many messages were delivered."""
        delivered = 0
        for topic in (self.slides, self.jobs):
            batch = topic.pull()
            if not batch:
                continue
            messages = [JobMessage.from_data(r.message.data) for r in batch]
            with ThreadPoolExecutor(concurrency) as pool:
                statuses = list(pool.map(self.deliver, messages))
            for received, status in zip(batch, statuses, strict=True):
                topic.settle(received, acked=200 <= status < 300)
            delivered += len(batch)
        return delivered

    def run(self, job_id: str, timeout_s: float = 120.0, concurrency: int = 1) -> Job:
        """Pump until the job is terminal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.pump_once(concurrency):
                time.sleep(0.1)
            job = self.job(job_id)
            if job.state.terminal:
                return job
        raise AssertionError(f"job {job_id} not terminal after {timeout_s}s: {self.job(job_id).slide}")

    def tasks_waiting(self) -> list[Task]:
        return [m.task for m in self.jobs.drain() + self.slides.drain()]


@contextmanager
def pipeline(
    project: str,
    store: Any,
    unique: str,
    engine: FakeEngine | None = None,
    inference_env: dict[str, Any] | None = None,
    **slide_env: Any,
) -> Iterator[Pipeline]:
    """Buckets, topics and both services for one test; torn down afterwards. `slide_env` and
    `inference_env` override the services' settings (environment variable names)."""
    client = storage.Client(project=project)
    inbox, work, results = (client.create_bucket(f"{kind}-{unique}") for kind in ("inbox", "work", "results"))
    jobs, slides = Topic(project, f"jobs-{unique}"), Topic(project, f"slides-{unique}")
    engine = engine or FakeEngine()
    env = {**SLIDE_ENV, **slide_env}
    slide_settings = SlideSettings(
        PROJECT_ID=project,
        JOBS_COLLECTION=store.collection.id,
        JOBS_TOPIC=jobs.name,
        SLIDES_TOPIC=slides.name,
        WORK_BUCKET=work.name,
        RESULTS_BUCKET=results.name,
        **env,
    )
    defaults = {"JOBS_TOPIC": jobs.name, "SLIDES_TOPIC": slides.name, "BATCH_WINDOW_MS": 1, "MAX_BATCH_SIZE": 4}
    settings = Settings(PROJECT_ID=project, **{**defaults, **(inference_env or {})})
    slides_store = SlideStore.of(store)
    with ExitStack() as stack:
        stack.callback(jobs.close)
        stack.callback(slides.close)
        slide = stack.enter_context(TestClient(slide_app(slide_settings, store=slides_store, storage_client=client)))
        app = inference_app(settings, engine=engine, store=slides_store, blobs=GcsBlobSource(project))
        inference = stack.enter_context(TestClient(app))
        wait_ready(inference)
        yield Pipeline(
            project, slides_store, inbox, work, results, jobs, slides, slide_settings, slide, inference, engine
        )


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll until `predicate()` is truthy; its value, or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
