"""Thin adapters between functions-framework and the ingest logic (clients built once)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from cloudevents.http import CloudEvent
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core import logs
from healer_core.store import JobStore, new_client
from healer_ingest.config import get_settings
from healer_ingest.event import MalformedEvent, parse_event
from healer_ingest.ingest import ingest_object
from healer_ingest.publisher import PubSubPublisher
from healer_ingest.reconcile import list_objects, reconcile

log = logging.getLogger("healer.ingest")


@lru_cache(maxsize=1)
def _store() -> JobStore:
    s = get_settings()
    return JobStore(new_client(s.project_id, s.firestore_database), s.jobs_collection, s.job_ttl_days)


@lru_cache(maxsize=1)
def _publisher() -> PubSubPublisher:
    s = get_settings()
    return PubSubPublisher(s.project_id, s.jobs_topic, s.publish_timeout_seconds)


def handle_event(event: CloudEvent) -> None:
    """Ingest one finalize event.

    A malformed event is rejected with an ERROR log naming what is wrong, and acknowledged:
    a retry cannot fix it, and raising would make Eventarc redeliver it for 24 hours.
    Infrastructure errors (Firestore, Pub/Sub) propagate, so the trigger retries.
    """
    logs.configure(get_settings().log_level)
    try:
        event_id, obj = parse_event(event)
    except MalformedEvent as exc:
        log.error("malformed event rejected", extra={"event_id": event.get("id"), "reason": str(exc)})
        return
    ingest_object(
        obj,
        event_id=event_id,
        store=_store(),
        publisher=_publisher(),
        max_image_bytes=get_settings().max_image_bytes,
    )


def handle_reconcile(request: Any) -> tuple[dict[str, object], int]:
    """Reconcile the configured bucket (or `?bucket=` / `{"bucket": ...}`; `prefix` likewise)."""
    logs.configure(get_settings().log_level)
    s = get_settings()
    body = request.get_json(silent=True) or {}
    bucket = request.args.get("bucket") or body.get("bucket") or s.bucket
    prefix = request.args.get("prefix") or body.get("prefix")
    client = storage.Client(project=s.project_id)
    counts = reconcile(
        list_objects(client, bucket, prefix),
        store=_store(),
        publisher=_publisher(),
        max_image_bytes=s.max_image_bytes,
        unpublished_grace_s=s.unpublished_grace_seconds,
        stale_queued_s=s.stale_queued_seconds,
    )
    return {"bucket": bucket, "counts": dict(counts)}, 200
