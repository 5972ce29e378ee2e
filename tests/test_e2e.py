"""End to end on the real emulators: upload with google-cloud-storage, read verdicts with
google-cloud-firestore — nothing of this project's code on the client side."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore, storage  # type: ignore[attr-defined]

from healer.stack.config import StackConfig
from healer.stack.eventarc import deliver


def wait_terminal(
    db: firestore.Client, collection: str, bucket: str, name: str, generation: int, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Poll Firestore (official client) for the job of one generation until it is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        docs = [
            d.to_dict()
            for d in db.collection(collection)
            .where(filter=firestore.FieldFilter("bucket", "==", bucket))
            .where(filter=firestore.FieldFilter("name", "==", name))
            .stream()
        ]
        mine = [d for d in docs if d["generation"] == generation]
        if mine and mine[0]["state"] in ("done", "failed"):
            return mine[0]
        time.sleep(0.3)
    raise AssertionError(f"no terminal job for {name}#{generation} within {timeout_s}s")


def jobs_for(db: firestore.Client, collection: str, bucket: str, name: str) -> list[dict[str, Any]]:
    q = db.collection(collection).where(filter=firestore.FieldFilter("name", "==", name))
    return [d.to_dict() for d in q.stream() if d.to_dict()["bucket"] == bucket]


@pytest.fixture
def gcs(stack_cfg: StackConfig) -> storage.Bucket:
    return storage.Client(project=stack_cfg.project).bucket(stack_cfg.bucket)


@pytest.fixture
def db(stack_cfg: StackConfig) -> firestore.Client:
    return firestore.Client(project=stack_cfg.project)


def test_samples_become_verdicts(stack_cfg: StackConfig, gcs, db, sample_paths: list[Path]) -> None:
    uploaded = []
    for path in sample_paths[:4]:
        blob = gcs.blob(f"e2e/{path.name}")
        blob.upload_from_filename(str(path))
        uploaded.append((blob.name, int(blob.generation)))
    for name, generation in uploaded:
        job = wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, name, generation)
        assert job["state"] == "done", job.get("error")
        verdict = job["verdict"]
        assert verdict["answer"] in ("yes", "no", "indeterminate")
        assert 0.0 <= verdict["p_yes"] <= 1.0
        assert verdict["explanation"]
        assert "tiny" in verdict["model_id"] and verdict["prompt_version"]
        assert job["schema_version"] == 1 and job["attempts"] == 1 and job["lease"] is None
        assert set(verdict["timings_ms"]) == {"download", "decode", "queue", "inference", "total"}


def test_a_non_image_becomes_a_failed_job_with_a_reason(stack_cfg: StackConfig, gcs, db) -> None:
    pdf = gcs.blob("e2e/report.png")  # a PDF renamed .png, declared as an image
    pdf.upload_from_string(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", content_type="image/png")
    text = gcs.blob("e2e/notes.txt")
    text.upload_from_string(b"patient notes", content_type="text/plain")
    job = wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, pdf.name, int(pdf.generation))
    assert job["state"] == "failed" and job["error"]["code"] == "not_an_image" and "PDF" in job["error"]["message"]
    job = wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, text.name, int(text.generation))
    assert job["state"] == "failed" and job["error"]["code"] == "not_an_image"


def test_duplicate_event_makes_one_job(stack_cfg: StackConfig, gcs, db, sample_paths: list[Path]) -> None:
    blob = gcs.blob("e2e/duplicated.tif")
    blob.upload_from_filename(str(sample_paths[0]))
    first = wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, blob.name, int(blob.generation))
    blob.reload()
    for _ in range(3):  # Eventarc delivers at least once: replay the same finalize event
        assert deliver(stack_cfg.ingest_url, blob._properties) == 200
    time.sleep(1.0)
    jobs = jobs_for(db, stack_cfg.jobs_collection, stack_cfg.bucket, blob.name)
    assert len(jobs) == 1
    assert jobs[0]["attempts"] == 1 and jobs[0]["verdict"] == first["verdict"]


def test_second_upload_of_the_same_name_is_a_second_job(stack_cfg: StackConfig, gcs, db, sample_paths) -> None:
    blob = gcs.blob("e2e/reuploaded.tif")
    blob.upload_from_filename(str(sample_paths[0]))
    g1 = int(blob.generation)
    wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, blob.name, g1)
    blob.upload_from_filename(str(sample_paths[-1]))
    g2 = int(blob.generation)
    wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, blob.name, g2)
    jobs = jobs_for(db, stack_cfg.jobs_collection, stack_cfg.bucket, blob.name)
    assert sorted(j["generation"] for j in jobs) == sorted([g1, g2])
    assert all(j["state"] == "done" for j in jobs)


@pytest.mark.parametrize("size", ["small", "large"])
def test_gcloud_cli_upload_reaches_a_verdict(stack_cfg: StackConfig, db, sample_paths, tmp_path, size) -> None:
    """The Google Cloud CLI, configured only by the variables in `.healer/local.env`: a small file
    (multipart upload) and a 12 MB one (resumable upload, gcloud's path for files over 8 MiB)."""
    import json
    import os
    import shutil
    import subprocess

    from PIL import Image

    if shutil.which("gcloud") is None:  # it runs the Pub/Sub and Firestore emulators too: never optional
        pytest.fail("the Google Cloud CLI is not installed")
    source = sample_paths[0]
    if size == "large":
        source = tmp_path / "large-tile.tif"
        Image.open(sample_paths[0]).convert("RGB").resize((2000, 2000)).save(source)  # uncompressed: 12 MB
    env = os.environ | stack_cfg.client_env() | stack_cfg.gcloud_env() | {"CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    name = f"gcloud/{size}-{source.name}"
    target = f"gs://{stack_cfg.bucket}/{name}"
    subprocess.run(["gcloud", "storage", "cp", str(source), target], env=env, check=True, timeout=180)
    listing = subprocess.run(
        ["gcloud", "storage", "ls", "--json", target], env=env, check=True, timeout=60, capture_output=True, text=True
    )
    metadata = json.loads(listing.stdout)[0]["metadata"]
    assert int(metadata["size"]) == source.stat().st_size
    job = wait_terminal(db, stack_cfg.jobs_collection, stack_cfg.bucket, name, int(metadata["generation"]))
    assert job["state"] == "done" and job["verdict"]["answer"] in ("yes", "no", "indeterminate")


def test_scheduler_stand_in_calls_reconcile_on_its_interval(stack_cfg: StackConfig, tmp_path) -> None:
    """The local Cloud Scheduler stand-in POSTs to the reconcile function every interval."""
    import json
    import os
    import subprocess
    import sys

    env = os.environ | stack_cfg.stack_env() | {"HEALER_RECONCILE_EVERY_SECONDS": "0.5", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "healer.stack.scheduler"], env=env, stderr=log_file)
    try:
        deadline = time.monotonic() + 30
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(runs) < 2:
            time.sleep(0.5)
            lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
            runs = [line for line in lines if line["message"] == "reconcile run"]
    finally:
        proc.terminate()
        proc.wait(10)
    assert len(runs) >= 2 and all(run["status"] == 200 for run in runs)
    assert "ok" in runs[-1]["counts"] or runs[-1]["counts"] == {}
