"""A local stand-in for Cloud Scheduler: POSTs to the reconcile function on a fixed interval,
as terraform/reconcile.tf's scheduler job does in GCP (every 15 minutes by default).

The first call comes one interval after start. `HEALER_RECONCILE_EVERY_SECONDS=0` disables it.
Run: `python -m healer.stack.scheduler` (the stack does this).
"""

from __future__ import annotations

import logging
import time

import requests

from healer.stack.config import StackConfig
from healer_core import logs

log = logging.getLogger("healer.scheduler")


def run_forever(cfg: StackConfig) -> None:
    every = cfg.reconcile_every_seconds
    if every <= 0:
        log.info("scheduler disabled (HEALER_RECONCILE_EVERY_SECONDS=0)")
        while True:
            time.sleep(3600)
    log.info("scheduler started", extra={"every_seconds": every})
    while True:
        time.sleep(every)
        try:
            response = requests.post(cfg.reconcile_url, json={}, timeout=600)
            log.info("reconcile run", extra={"status": response.status_code, "counts": response.json().get("counts")})
        except (requests.RequestException, ValueError) as exc:
            log.warning("reconcile call failed; next run as scheduled", extra={"error": type(exc).__name__})


def main() -> None:
    logs.configure()
    run_forever(StackConfig())


if __name__ == "__main__":
    main()
