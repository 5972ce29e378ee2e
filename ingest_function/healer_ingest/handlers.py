"""Thin adapters between functions-framework and the ingest logic (clients built once)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from cloudevents.http import CloudEvent
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core import logs
from healer_core.store import JobStore
from healer_ingest.clients import classifier, job_store, jobs_publisher
from healer_ingest.config import get_settings
from healer_ingest.event import MalformedEvent, parse_event
from healer_ingest.ingest import ingest_object
from healer_ingest.kinds import Classifier
from healer_ingest.publisher import Publisher
from healer_ingest.reconcile import reconcile_bucket

log = logging.getLogger("healer.ingest")


@lru_cache(maxsize=1)
def _store() -> JobStore:
    return job_store(get_settings())


@lru_cache(maxsize=1)
def _publisher() -> Publisher:
    return jobs_publisher(get_settings())


@lru_cache(maxsize=1)
def _classifier() -> Classifier:
    return classifier(get_settings())


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
        classifier=_classifier(),
    )


def handle_reconcile(request: Any) -> tuple[dict[str, object], int]:
    """Reconcile the configured bucket (or `?bucket=` / `{"bucket": ...}`; `prefix` likewise)."""
    logs.configure(get_settings().log_level)
    s = get_settings()
    body = request.get_json(silent=True) or {}
    bucket = request.args.get("bucket") or body.get("bucket") or s.bucket
    prefix = request.args.get("prefix") or body.get("prefix")
    client = storage.Client(project=s.project_id)
    counts = reconcile_bucket(
        client, bucket, prefix, store=_store(), publisher=_publisher(), settings=s, classifier=_classifier()
    )
    return {"bucket": bucket, "counts": dict(counts)}, 200
