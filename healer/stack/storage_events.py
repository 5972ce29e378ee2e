"""Cloud Storage's Pub/Sub notifications, for the local stack: one message per finalized generation.

On Google Cloud each finalized generation is its own event (Eventarc reads the bucket's
notifications), even when one name is overwritten several times in a millisecond. The storage
emulator's launcher (`storage_emulator.py`) calls `Notifier.finalized` from the one place every
write path goes through (simple, multipart and resumable uploads, copy, rewrite, compose,
restore), after the object is stored and before the client gets its answer, so an upload that
returned has its event. The message is what Cloud Storage publishes (payload format
JSON_API_V1: the object resource as data; `eventType`, `bucketId`, `objectId`,
`objectGeneration`, `overwroteGeneration` attributes), on the bucket's notification topic;
the Eventarc stand-in consumes it. A bucket whose topic does not exist has no notification
configured, as on Cloud Storage: nothing is published.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from healer_core.ids import job_id_for

log = logging.getLogger("healer.storage_events")
OBJECT_FINALIZE = "OBJECT_FINALIZE"
PUBLISH_TIMEOUT_S = 10.0


def notification_topic(bucket: str) -> str:
    """The topic the stack configures for the bucket's notifications (a topic id may not start
    with a digit, a bucket name may)."""
    return f"storage-{bucket}"


def eventarc_subscription(bucket: str) -> str:
    """The Eventarc stand-in's subscription to the bucket's notifications."""
    return f"{notification_topic(bucket)}-eventarc"


def finalize_attributes(resource: dict[str, Any], overwrote: str | None) -> dict[str, str]:
    """The attributes Cloud Storage sets on an OBJECT_FINALIZE notification."""
    attributes = {
        "notificationConfig": f"projects/_/buckets/{resource['bucket']}/notificationConfigs/1",
        "eventType": OBJECT_FINALIZE,
        "payloadFormat": "JSON_API_V1",
        "bucketId": resource["bucket"],
        "objectId": resource["name"],
        "objectGeneration": str(resource["generation"]),
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if overwrote:
        attributes["overwroteGeneration"] = str(overwrote)
    return attributes


class Notifier:
    """Publishes the finalize notifications of one project's buckets (thread-safe)."""

    def __init__(self, project: str) -> None:
        self.project = project
        # One message per batch: the upload waits for its notification, so batching only delays it.
        self._client = pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_messages=1))

    def finalized(self, resource: dict[str, Any], overwrote: str | None = None) -> bool:
        """Publish the notification for one stored generation. Returns whether one was published."""
        topic = self._client.topic_path(self.project, notification_topic(resource["bucket"]))
        data = json.dumps(resource, default=str).encode()
        try:
            self._client.publish(topic, data, **finalize_attributes(resource, overwrote)).result(
                timeout=PUBLISH_TIMEOUT_S
            )
        except gexc.NotFound:
            return False  # no notification configured for this bucket
        except Exception as exc:
            # Lost: the reconcile sweep still finds the object while it is the live generation.
            job_id = job_id_for(resource["bucket"], resource["name"], int(resource["generation"]))
            log.error("finalize notification not published", extra={"job_id": job_id, "error": type(exc).__name__})
            return False
        return True
