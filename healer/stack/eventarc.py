"""A local stand-in for Eventarc: each finalized object generation in the emulated bucket becomes
the binary-mode CloudEvent Eventarc would POST to the ingest function.

It reads the bucket's Pub/Sub notifications, which the storage emulator's launcher publishes
once per generation (`storage_events.py`), as Eventarc reads Cloud Storage's: a name overwritten
twice between two looks still gives two events (a bucket listing would show only the newest).
Like Eventarc it delivers at least once and retries non-2xx answers with backoff; what is not
delivered yet stays in the subscription, so a restart loses nothing and replays nothing. Creating
the file `<home>/eventarc.paused` pauses delivery (events arrive late, as duplicates of what
reconcile did meanwhile: how tests simulate lost events).

Run: `python -m healer.stack.eventarc` (the stack does this).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from healer.stack.config import StackConfig
from healer.stack.storage_events import OBJECT_FINALIZE, eventarc_subscription
from healer_core import logs

log = logging.getLogger("healer.eventarc")
FINALIZED = "google.cloud.storage.object.v1.finalized"


def cloudevent_headers(bucket: str, name: str, event_id: str | None = None) -> dict[str, str]:
    """The binary-mode CloudEvent headers Eventarc sets for a finalize event."""
    return {
        "ce-id": event_id or uuid.uuid4().hex,
        "ce-specversion": "1.0",
        "ce-type": FINALIZED,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-subject": f"objects/{name}",
        "ce-time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "Content-Type": "application/json",
    }


def deliver(url: str, resource: dict[str, Any], event_id: str | None = None, timeout: float = 30.0) -> int:
    """POST one finalize event for `resource` (a Cloud Storage object resource). Returns the status."""
    headers = cloudevent_headers(resource["bucket"], resource["name"], event_id)
    response = requests.post(url, data=json.dumps(resource), headers=headers, timeout=timeout)
    return response.status_code


class EventarcStandIn:
    """Delivers the bucket's finalize notifications as CloudEvents, each until it is acknowledged.

    A 2xx from the ingest function acknowledges the notification; any other answer leaves it
    unacknowledged for an exponentially growing delay (its ack deadline), after which Pub/Sub
    delivers it again: Eventarc's retry, with Pub/Sub keeping what is pending across restarts.
    The CloudEvent id is the notification's message id, so a redelivery is the same event.
    """

    def __init__(self, cfg: StackConfig, subscriber: Any = None, workers: int = 8) -> None:
        self.cfg = cfg
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.subscription = self.subscriber.subscription_path(cfg.project, eventarc_subscription(cfg.bucket))
        self.pause_file = cfg.home / "eventarc.paused"
        self.failures: dict[str, int] = {}  # message id -> failed deliveries
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="eventarc")

    def _deliver(self, received: Any) -> bool:
        """Deliver one notification; True when it is done with (delivered, or not an event for us)."""
        attributes = received.message.attributes
        if attributes.get("eventType") != OBJECT_FINALIZE or attributes.get("bucketId") != self.cfg.bucket:
            return True  # the trigger's filter: finalized objects of this bucket only
        try:
            resource = json.loads(received.message.data)
        except ValueError:
            log.error("unreadable notification dropped", extra={"message_id": received.message.message_id})
            return True
        try:
            status = deliver(self.cfg.ingest_url, resource, event_id=received.message.message_id)
        except requests.RequestException:
            status = 0
        return 200 <= status < 300

    def poll_once(self) -> int:
        """Deliver what is pending. Returns how many notifications were settled."""
        if self.pause_file.exists():
            return 0
        response = self.subscriber.pull(
            request={"subscription": self.subscription, "max_messages": 100, "return_immediately": True}, timeout=30
        )
        received = list(response.received_messages)
        if not received:
            return 0
        done = list(self._pool.map(self._deliver, received))
        acks = [r.ack_id for r, ok in zip(received, done, strict=True) if ok]
        if acks:
            self.subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": acks})
        for r, ok in zip(received, done, strict=True):
            message_id = r.message.message_id
            if ok:
                self.failures.pop(message_id, None)
                continue
            attempts = self.failures[message_id] = self.failures.get(message_id, 0) + 1
            backoff = int(min(600, 2 ** min(attempts, 10)))
            self.subscriber.modify_ack_deadline(
                request={"subscription": self.subscription, "ack_ids": [r.ack_id], "ack_deadline_seconds": backoff}
            )
            log.warning("event delivery failed; will retry", extra={"attempt": attempts, "retry_in_s": backoff})
        return len(acks)

    def run_forever(self) -> None:
        log.info("eventarc stand-in started", extra={"bucket_events_for": self.cfg.ingest_url})
        while True:
            try:
                if self.poll_once():
                    continue
            except gexc.GoogleAPICallError as exc:
                log.warning("pulling notifications failed", extra={"error": type(exc).__name__})
            time.sleep(self.cfg.eventarc_poll_seconds)


def main() -> None:
    logs.configure()
    cfg = StackConfig()
    cfg.home.mkdir(parents=True, exist_ok=True)
    EventarcStandIn(cfg).run_forever()


if __name__ == "__main__":
    main()
