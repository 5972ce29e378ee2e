"""Real processes and real Pub/Sub plumbing for the reliability tests: the service under uvicorn
(with a FakeEngine), per-test topics with push subscriptions (optionally with the dead-letter
policy Terraform gives the jobs subscription) and pull taps on topics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.protobuf import duration_pb2

from healer.stack.push import PushStandIn
from healer_core.schema import JobMessage
from tests.service_helpers import envelope

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UvicornProcess:
    """`uvicorn --factory <factory>` in its own process group, with the environment of this process
    plus `env`; ready once its /readyz answers 200 (within `ready_timeout_s`)."""

    def __init__(
        self,
        factory: str,
        log_path: Path,
        port: int | None = None,
        *,
        ready_timeout_s: float = 90.0,
        server_args: tuple[str, ...] = (),
        **env: Any,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        child_env = dict(os.environ)
        child_env.update({"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "ingest_function")])})
        child_env.update({"PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}})
        argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(self.port)]
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [*argv, *server_args, "--no-access-log"],
                cwd=REPO,
                env=child_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, ready_timeout_s, f"{factory} on port {self.port} (log: {log_path})", every_s=0.2)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited: {self.log_path.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """SIGKILL the whole process group (the service and its child processes), and reap it."""
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)


class ServiceProcess(UvicornProcess):
    """The inference service under uvicorn (the stack's flags) with a slow FakeEngine
    (tests/reliability_app.py), on the jobs `collection`."""

    def __init__(self, port: int, collection: str, log_path: Path, **env: Any) -> None:
        super().__init__(
            "tests.reliability_app:create_app",
            log_path,
            port,
            ready_timeout_s=60,
            server_args=("--timeout-graceful-shutdown", "8"),
            **{"JOBS_COLLECTION": collection, "BATCH_WINDOW_MS": 1, **env},
        )

    def push(self, message: JobMessage, timeout: float = 30.0) -> int:
        """Status of one push, or 0 when the connection is refused or cut (no answer at all)."""
        try:
            return requests.post(f"{self.url}/pubsub/push", json=envelope(message), timeout=timeout).status_code
        except requests.RequestException:
            return 0


def _duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds))


def _retry_policy(backoff: tuple[float, float] | None) -> dict[str, Any] | None:
    if backoff is None:
        return None
    return {"minimum_backoff": _duration(backoff[0]), "maximum_backoff": _duration(backoff[1])}


class PushSubscription:
    """A per-test jobs topic whose push subscription delivers to `endpoint`.

    With `dead_letter_endpoint`, it is wired as terraform/pubsub.tf wires the jobs subscription:
    after `max_delivery_attempts` deliveries a message goes to a dead-letter topic, whose own push
    subscription delivers it to `dead_letter_endpoint`. `backoff` = (min, max) seconds of the jobs
    subscription's retry policy (None: no retry policy, Pub/Sub then redelivers at once);
    `dead_letter_backoff` the dead-letter subscription's (default: the same).

    Delivered by the emulator's own push (at most 2 requests in flight), or, with `concurrency`,
    by the stack's push stand-in (pull subscriptions with the same policies, that many at once:
    how Pub/Sub loads an endpoint).
    """

    def __init__(
        self,
        project: str,
        name: str,
        endpoint: str,
        *,
        dead_letter_endpoint: str | None = None,
        max_delivery_attempts: int = 5,
        backoff: tuple[float, float] | None = None,
        dead_letter_backoff: tuple[float, float] | None = None,
        ack_deadline_s: int = 10,
        concurrency: int | None = None,
    ) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.name = name
        self.topic = self.publisher.topic_path(project, name)
        self.sub = self.subscriber.subscription_path(project, f"{name}-push")
        self.topics = [self.topic]
        self.subs = [self.sub]
        retry = _retry_policy(backoff)
        dead_letter_retry = _retry_policy(dead_letter_backoff or backoff)
        self.publisher.create_topic(name=self.topic)
        request: dict[str, Any] = {
            "name": self.sub,
            "topic": self.topic,
            "ack_deadline_seconds": ack_deadline_s,
        }
        if concurrency is None:
            request["push_config"] = {"push_endpoint": endpoint}
        self.pushers: list[PushStandIn] = []
        if concurrency is not None:
            self.pushers.append(PushStandIn(self.sub, endpoint, concurrency=concurrency, ack_deadline_s=ack_deadline_s))
        if retry:
            request["retry_policy"] = retry
        if dead_letter_endpoint:
            dead = self.publisher.topic_path(project, f"{name}-dead-letter")
            self.publisher.create_topic(name=dead)
            self.topics.append(dead)
            request["dead_letter_policy"] = {"dead_letter_topic": dead, "max_delivery_attempts": max_delivery_attempts}
            dead_sub = self.subscriber.subscription_path(project, f"{name}-dead-letter-push")
            dead_request: dict[str, Any] = {
                "name": dead_sub,
                "topic": dead,
                "ack_deadline_seconds": ack_deadline_s,
            }
            if concurrency is None:
                dead_request["push_config"] = {"push_endpoint": dead_letter_endpoint}
            else:
                self.pushers.append(
                    PushStandIn(dead_sub, dead_letter_endpoint, concurrency=concurrency, ack_deadline_s=ack_deadline_s)
                )
            if dead_letter_retry:
                dead_request["retry_policy"] = dead_letter_retry
            self.subscriber.create_subscription(request=dead_request)
            self.subs.append(dead_sub)
        self.subscriber.create_subscription(request=request)
        for pusher in self.pushers:
            pusher.start()

    def publish(self, message: JobMessage) -> None:
        self.publisher.publish(self.topic, message.to_data(), **message.attributes()).result(timeout=10)

    def close(self) -> None:
        for pusher in self.pushers:
            pusher.stop()
        for sub in self.subs:
            self.subscriber.delete_subscription(subscription=sub)
        for topic in self.topics:
            self.publisher.delete_topic(topic=topic)


class TopicTap:
    """A topic with a pull subscription: what was published to it, as job messages."""

    def __init__(self, project: str, name: str) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.name = name
        self.topic = self.publisher.topic_path(project, name)
        self.sub = self.subscriber.subscription_path(project, f"{name}-tap")
        self.publisher.create_topic(name=self.topic)
        self.subscriber.create_subscription(request={"name": self.sub, "topic": self.topic})

    def pull(self) -> list[JobMessage]:
        """Every message published so far (acknowledged, so each is returned once)."""
        messages: list[JobMessage] = []
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.sub, "max_messages": 100, "return_immediately": True}, timeout=10
            )
            if not response.received_messages:
                return messages
            messages += [JobMessage.from_data(r.message.data) for r in response.received_messages]
            ack_ids = [r.ack_id for r in response.received_messages]
            self.subscriber.acknowledge(request={"subscription": self.sub, "ack_ids": ack_ids})

    def close(self) -> None:
        self.subscriber.delete_subscription(subscription=self.sub)
        self.publisher.delete_topic(topic=self.topic)
