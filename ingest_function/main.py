"""Cloud Functions gen2 entry points of the ingest bundle.

`ingest`: Eventarc's `google.cloud.storage.object.v1.finalized` CloudEvent → a job in Firestore
and a message on the jobs topic. Raising means "retry" (the trigger retries on failure).
`reconcile`: HTTP, for Cloud Scheduler: finds uploads whose event was lost and ingests them.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent
from flask import Request
from healer_ingest import handlers


@functions_framework.cloud_event
def ingest(event: CloudEvent) -> None:
    """Turn one finalized object into one job."""
    handlers.handle_event(event)


@functions_framework.http
def reconcile(request: Request) -> tuple[dict[str, object], int]:
    """Ingest every object in the inbox bucket that has no job yet."""
    return handlers.handle_reconcile(request)
