"""A local stand-in for Eventarc: each new object generation in the emulated bucket becomes the
binary-mode CloudEvent Eventarc would POST to the ingest function.

Like Eventarc it delivers at least once and retries non-2xx answers with backoff. Its progress
(generations delivered) is kept in a file, so a restart does not replay the bucket. Creating
the file `<home>/eventarc.paused` pauses delivery (to simulate lost events in tests).

Run: `python -m healer.stack.eventarc` (the stack does this).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests

from healer.stack.config import StackConfig
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


def list_resources(cfg: StackConfig) -> list[dict[str, Any]]:
    """The bucket's object resources as JSON, exactly as the JSON API returns them."""
    items: list[dict[str, Any]] = []
    token = None
    while True:
        params = {"maxResults": 1000, **({"pageToken": token} if token else {})}
        r = requests.get(f"{cfg.storage_url}/storage/v1/b/{cfg.bucket}/o", params=params, timeout=10)
        r.raise_for_status()
        body = r.json()
        items.extend(body.get("items", []))
        token = body.get("nextPageToken")
        if not token:
            return items


class EventarcStandIn:
    """Polls the bucket and delivers each new generation once (retrying failures)."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.state_file = cfg.home / "eventarc-delivered.json"
        self.pause_file = cfg.home / "eventarc.paused"
        self.delivered: set[str] = self._load()
        self.failures: dict[str, tuple[int, float]] = {}  # key -> (attempts, next try)

    def _load(self) -> set[str]:
        try:
            return set(json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError):
            return set()

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self.delivered)))
        tmp.replace(self.state_file)

    def poll_once(self) -> int:
        """Deliver what is new. Returns how many events were delivered successfully."""
        if self.pause_file.exists():
            return 0
        sent = 0
        now = time.monotonic()
        for resource in list_resources(self.cfg):
            key = f"{resource['name']}#{resource['generation']}"
            if key in self.delivered:
                continue
            attempts, next_try = self.failures.get(key, (0, 0.0))
            if next_try > now:
                continue
            try:
                status = deliver(self.cfg.ingest_url, resource)
            except requests.RequestException:
                status = 0
            if 200 <= status < 300:
                self.delivered.add(key)
                self.failures.pop(key, None)
                sent += 1
            else:
                backoff = min(600.0, 2.0 ** min(attempts, 10))
                self.failures[key] = (attempts + 1, now + backoff)
                log.warning("event delivery failed; will retry", extra={"status": status, "attempt": attempts + 1})
        if sent:
            self._save()
        return sent

    def run_forever(self) -> None:
        log.info("eventarc stand-in started", extra={"bucket_events_for": self.cfg.ingest_url})
        while True:
            try:
                self.poll_once()
            except requests.RequestException as exc:
                log.warning("bucket listing failed", extra={"error": type(exc).__name__})
            time.sleep(self.cfg.eventarc_poll_seconds)


def main() -> None:
    logs.configure()
    cfg = StackConfig()
    cfg.home.mkdir(parents=True, exist_ok=True)
    EventarcStandIn(cfg).run_forever()


if __name__ == "__main__":
    main()
