"""Storage and transport errors (issue 11, item 5): each one coded, none of them logging a name.

The log scan of tests/test_reliability.py, extended with every fault a Cloud Storage read can
meet: the real client reads through `FaultyStorage` (tests/storage_faults.py), a proxy in front of
the storage emulator that answers 401/403/400/429/503/404, resets or stalls the connection, cuts
the body short, sends garbage instead of the JSON API, or corrupts the bytes (checksum mismatch),
on the metadata read or on the media read. Every push must end coded — 503 with the job released
as `download_failed` (retryable) or 204 with `failed/object_gone` — and every log record the
service and the console write, formatted as the JSON line Cloud Logging receives (tracebacks
included), must be free of the object's name and of the image's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.backend.app import create_app as create_console
from healer.stack.config import StackConfig
from healer_core.schema import ErrorCode, Job, JobState
from healer_core.store import JobStore
from healer_media.blobs import GcsBlobSource
from healer_media.errors import ImageRejected, ObjectGone, TransientError
from inference_service.app import create_app
from inference_service.settings import Settings
from tests.console_helpers import console_settings
from tests.fakes import FakeEngine
from tests.log_privacy import PATIENT, assert_no_name_or_bytes, captured_logs, marked_png
from tests.service_helpers import push, wait_ready
from tests.storage_faults import FAULTS, FaultyStorage
from tests.test_service import queued_job

pytestmark = pytest.mark.emulator

# Faults that mean "this generation is not there": permanent. Everything else is retried.
GONE = {("gone", "meta"), ("gone", "media")}
# (fault, stage) pairs: every fault on the media read; on the metadata read all but the payload
# corruption ones that only make sense for media bytes.
CASES = [(fault, "media") for fault in FAULTS] + [(f, "meta") for f in FAULTS if f not in ("checksum", "short")]


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every record logged meanwhile, as the JSON line Cloud Logging would receive."""
    with captured_logs() as capture:
        yield capture.lines


@pytest.fixture(scope="module")
def faulty(emulator_cfg: StackConfig) -> Iterator[FaultyStorage]:
    with FaultyStorage(emulator_cfg.storage_url, hang_s=2.0).running() as proxy:
        yield proxy


def faulty_blobs(project: str, proxy: FaultyStorage) -> GcsBlobSource:
    # Short bounds so that each retried fault gives up in about a second (production: 60 s / 120 s).
    return GcsBlobSource.at_endpoint(project, proxy.url, timeout_s=0.5, retry_deadline_s=1.0)


@pytest.fixture
def service(emulator_cfg: StackConfig, store: JobStore, faulty: FaultyStorage) -> Iterator[TestClient]:
    settings = Settings(PROJECT_ID=emulator_cfg.project, BATCH_WINDOW_MS=1)
    app = create_app(settings, engine=FakeEngine(), store=store, blobs=faulty_blobs(emulator_cfg.project, faulty))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def test_the_proxy_is_transparent_without_a_fault(
    service: TestClient, store: JobStore, bucket: Any, unique: str, log_lines: list[str]
) -> None:
    message = queued_job(store, bucket, f"{PATIENT}/{unique}/no-fault.png", marked_png())
    assert push(service, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.DONE
    assert_no_name_or_bytes(log_lines)


@pytest.mark.parametrize(("fault", "stage"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_every_storage_fault_is_coded_and_logs_only_its_type(
    service: TestClient,
    store: JobStore,
    bucket: Any,
    faulty: FaultyStorage,
    unique: str,
    log_lines: list[str],
    fault: str,
    stage: str,
) -> None:
    message = queued_job(store, bucket, f"{PATIENT}/{unique}/fault-{fault}-{stage}.png", marked_png())
    status = push(service, message)
    assert (fault, stage) in faulty.injected, "the proxy never served the fault"
    job = store.get(message.job_id)
    assert job is not None and job.error is not None
    if (fault, stage) in GONE:
        assert status == 204 and job.state == JobState.FAILED and job.error.code == ErrorCode.OBJECT_GONE
    else:
        assert status == 503, "a storage fault is a retry, never an ack"
        assert job.state == JobState.QUEUED and job.lease is None
        assert job.error.code == ErrorCode.DOWNLOAD_FAILED and job.error.retryable
        assert job.error.message.startswith("storage error: ") and PATIENT not in job.error.message
    assert_no_name_or_bytes(log_lines)
    assert any(message.job_id in line for line in log_lines), "the job's outcome was not logged by job id"
    assert not any('"exception"' in line for line in log_lines), "a storage fault fell to a generic handler"


@pytest.mark.parametrize(
    ("fault", "stage", "expected"),
    [
        ("forbidden", "meta", TransientError),
        ("reset", "media", TransientError),
        ("checksum", "media", TransientError),
        ("short", "media", TransientError),
        ("gone", "media", ObjectGone),
    ],
)
def test_the_blob_source_raises_only_coded_errors(
    emulator_cfg: StackConfig, bucket: Any, faulty: FaultyStorage, unique: str, fault: str, stage: str, expected: type
) -> None:
    name = f"{PATIENT}/{unique}/fault-{fault}-{stage}.png"
    blob = bucket.blob(name)
    blob.upload_from_string(marked_png(), content_type="image/png")
    with pytest.raises(expected) as info:
        faulty_blobs(emulator_cfg.project, faulty).download(bucket.name, name, int(blob.generation), 1_000_000)
    error = info.value
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert chained is None, f"the library's {type(chained).__name__} (and the URL in it) would ride along"
    assert PATIENT not in str(info.value)


def test_an_empty_object_is_rejected_not_retried(emulator_cfg: StackConfig, bucket: Any, unique: str) -> None:
    blob = bucket.blob(f"{PATIENT}/{unique}/empty.png")
    blob.upload_from_string(b"", content_type="image/png")
    source = GcsBlobSource(emulator_cfg.project)
    with pytest.raises(ImageRejected) as info:
        source.download(bucket.name, blob.name, int(blob.generation), 1000)
    assert info.value.code == ErrorCode.EMPTY


@pytest.mark.parametrize(
    ("fault", "stage", "status"),
    [("forbidden", "meta", 503), ("unavailable", "media", 503), ("reset", "media", 503), ("gone", "media", 404)],
)
def test_console_previews_map_storage_faults_too(
    emulator_cfg: StackConfig,
    store: JobStore,
    bucket: Any,
    faulty: FaultyStorage,
    unique: str,
    tmp_path: Path,
    log_lines: list[str],
    fault: str,
    stage: str,
    status: int,
) -> None:
    name = f"{PATIENT}/{unique}/fault-{fault}-{stage}.png"
    blob = bucket.blob(name)
    blob.upload_from_string(marked_png(), content_type="image/png")
    job_id = f"preview{unique}{fault}{stage}"
    store.create(Job(job_id=job_id, bucket=bucket.name, name=name, generation=int(blob.generation)))
    settings = console_settings(emulator_cfg, bucket, store, tmp_path / "no-dist")
    app = create_console(settings, store=store, blobs=faulty_blobs(emulator_cfg.project, faulty))
    with TestClient(app) as client:
        response = client.get(f"/api/jobs/{job_id}/preview.png")
    assert response.status_code == status
    assert PATIENT not in response.text
    assert_no_name_or_bytes(log_lines)
