"""Waiting for jobs on the whole local stack (`stack_cfg`), read with google-cloud-firestore only:
a job's terminal document, and a slide's report once it is no longer pending."""

from __future__ import annotations

import time
from typing import Any

from google.cloud import firestore, storage  # type: ignore[attr-defined]

from healer.stack.config import StackConfig


def terminal(db: firestore.Client, cfg: StackConfig, blob: storage.Blob, timeout_s: float = 300) -> dict[str, Any]:
    """The job document of the uploaded `blob` (its generation) once it is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        query = db.collection(cfg.jobs_collection).where(filter=firestore.FieldFilter("name", "==", blob.name))
        docs = [d.to_dict() for d in query.stream()]
        mine = [d for d in docs if d["generation"] == int(blob.generation) and d["bucket"] == blob.bucket.name]
        if mine and mine[0]["state"] in ("done", "failed"):
            return mine[0]
        time.sleep(0.5)
    raise AssertionError(f"no terminal job for {blob.name} in {timeout_s}s")


def reported(db: firestore.Client, cfg: StackConfig, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
    """The slide's report (`verdict.slide.report`) once it is no longer pending."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = db.collection(cfg.jobs_collection).document(job_id).get().to_dict() or {}
        report: dict[str, Any] = doc["verdict"]["slide"]["report"]
        if report["status"] != "pending":
            return report
        time.sleep(0.5)
    raise AssertionError(f"the report of {job_id} still pending after {timeout_s}s")
