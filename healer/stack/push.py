"""A local stand-in for Pub/Sub push delivery, with Pub/Sub's concurrency.

The Pub/Sub emulator honours dead-letter policies, retry policies (loosely) and delivery attempts,
but its push subscriptions keep at most 2 requests outstanding (measured: 300 messages to a fast
endpoint never had a third in flight). Pub/Sub pushes up to thousands at once, so behind the
emulator an instance is never overloaded the way production overloads it, and its micro-batcher
never sees more than two images. The stack therefore creates its push subscriptions as pull
subscriptions with the same retry and dead-letter policies, and this process delivers them as
push does: each message POSTed as a push envelope (with `deliveryAttempt`), up to `concurrency`
at once; a 2xx acknowledges it; any other answer, or none within the ack deadline, is a nack, so
the emulator applies the retry policy, counts the attempt and dead-letters the message after
`max_delivery_attempts`.

Run: `python -m healer.stack.push` (the stack does this; HEALER_PUSH_CONCURRENCY sets the window).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from healer.stack.config import StackConfig
from healer_core import logs

log = logging.getLogger("healer.push")


def push_envelope(received: Any, subscription: str) -> dict[str, Any]:
    """The JSON body Pub/Sub's push delivery POSTs for one received message."""
    message = received.message
    body: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "publishTime": message.publish_time.isoformat().replace("+00:00", "Z"),
        },
        "subscription": subscription,
    }
    if received.delivery_attempt:
        body["deliveryAttempt"] = received.delivery_attempt
    return body


class PushStandIn:
    """Delivers one pull subscription to `endpoint` like a push subscription, `concurrency` at once."""

    def __init__(
        self,
        subscription: str,
        endpoint: str,
        *,
        concurrency: int = 64,
        ack_deadline_s: float = 600.0,
        idle_s: float = 0.2,
        subscriber: Any = None,
    ) -> None:
        self.subscription = subscription
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.ack_deadline_s = ack_deadline_s
        self.idle_s = idle_s
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="push")
        self._http = requests.Session()
        self._stop = threading.Event()
        self.delivered = 0  # acknowledged deliveries (for tests and logs)

    def _free_slots(self) -> int:
        taken = 0
        while taken < min(self.concurrency, 100) and self._slots.acquire(blocking=False):
            taken += 1
        return taken

    def pull_once(self) -> int:
        """Start delivering what the subscription has, up to the free window. Returns how many."""
        free = self._free_slots()
        if not free:
            time.sleep(0.01)
            return 0
        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": free, "return_immediately": True},
                timeout=30,
            )
            received = list(response.received_messages)
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            log.warning("pull failed", extra={"error": type(exc).__name__})
            received = []
        for _ in range(free - len(received)):
            self._slots.release()
        for rm in received:
            self._pool.submit(self._deliver, rm)
        return len(received)

    def _deliver(self, received: Any) -> None:
        try:
            try:
                status = self._http.post(
                    self.endpoint, json=push_envelope(received, self.subscription), timeout=self.ack_deadline_s
                ).status_code
            except requests.RequestException:
                status = 0  # unreachable or no answer in time: Pub/Sub counts it as a failed attempt
            try:
                if 200 <= status < 300:
                    self.subscriber.acknowledge(
                        request={"subscription": self.subscription, "ack_ids": [received.ack_id]}
                    )
                    self.delivered += 1
                else:
                    self.subscriber.modify_ack_deadline(
                        request={
                            "subscription": self.subscription,
                            "ack_ids": [received.ack_id],
                            "ack_deadline_seconds": 0,
                        }
                    )
            except gexc.GoogleAPICallError as exc:  # the ack deadline passes: redelivered anyway
                log.warning("ack failed", extra={"error": type(exc).__name__})
        finally:
            self._slots.release()

    def run(self) -> None:
        """Deliver until `stop()`."""
        while not self._stop.is_set():
            if not self.pull_once():
                self._stop.wait(self.idle_s)

    def start(self) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run, name=f"push-{self.subscription.rsplit('/', 1)[-1]}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=False)


def stand_ins(cfg: StackConfig) -> list[PushStandIn]:
    """The stack's two push subscriptions: jobs → /pubsub/push, dead letters → /pubsub/dead-letter."""
    subscriber = pubsub_v1.SubscriberClient()
    return [
        PushStandIn(
            subscriber.subscription_path(cfg.project, cfg.push_subscription),
            f"{cfg.service_url}/pubsub/push",
            concurrency=cfg.push_concurrency,
            ack_deadline_s=cfg.ack_deadline_seconds,
            subscriber=subscriber,
        ),
        PushStandIn(
            subscriber.subscription_path(cfg.project, cfg.dead_letter_push_subscription),
            f"{cfg.service_url}/pubsub/dead-letter",
            concurrency=cfg.push_concurrency,
            ack_deadline_s=60,
            subscriber=subscriber,
        ),
    ]


def main() -> None:
    logs.configure()
    cfg = StackConfig()
    pushers = stand_ins(cfg)
    threads = [p.start() for p in pushers]
    log.info("push stand-in started", extra={"concurrency": cfg.push_concurrency})
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
