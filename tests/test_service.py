"""The inference service's HTTP contract, in-process, with a FakeEngine and the real emulators."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from healer_core.schema import ErrorCode, JobMessage, JobState
from healer_core.store import JobStore
from healer_media.blobs import GcsBlobSource
from healer_media.errors import TransientError
from inference_service.app import create_app
from inference_service.settings import Settings
from tests.fakes import FakeEngine
from tests.service_helpers import jpeg_bytes, png_bytes, push, wait_ready


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims billions of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def settings(emulator_cfg) -> Settings:
    return Settings(PROJECT_ID=emulator_cfg.project, MAX_IMAGE_BYTES=200_000, BATCH_WINDOW_MS=1, MAX_BATCH_SIZE=4)


@pytest.fixture
def client(settings: Settings, engine: FakeEngine, store: JobStore, emulator_cfg) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine, store=store, blobs=GcsBlobSource(emulator_cfg.project))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def queued_job(store: JobStore, bucket: Any, name: str, data: bytes, content_type: str = "image/png") -> JobMessage:
    """Upload `data` and create its queued job, as ingest would."""
    from healer_core.schema import Job

    blob = bucket.blob(name)
    blob.upload_from_string(data, content_type=content_type)
    message = JobMessage.for_object(bucket.name, name, int(blob.generation))
    store.create(
        Job(
            job_id=message.job_id,
            bucket=bucket.name,
            name=name,
            generation=message.generation,
            size_bytes=len(data),
            content_type=content_type,
        )
    )
    return message


def test_health_routes(client: TestClient) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["model_id"] == "fake/engine"


def test_push_writes_a_verdict_with_provenance(client, store, bucket, engine) -> None:
    message = queued_job(store, bucket, "case-1/tile.png", png_bytes())
    assert push(client, message) == 204
    job = store.get(message.job_id)
    assert job.state == JobState.DONE and job.attempts == 1 and job.lease is None
    v = job.verdict
    assert v.answer in ("yes", "no", "indeterminate") and 0.0 <= v.p_yes <= 1.0
    assert v.explanation and v.model_id == "fake/engine" and v.prompt_version
    assert v.timings_ms.total >= v.timings_ms.inference >= 0
    assert [e.event for e in job.history] == ["created", "leased", "done"]
    assert len(engine.calls) == 1


def test_redelivery_of_a_done_job_is_acked_without_running_again(client, store, bucket, engine) -> None:
    message = queued_job(store, bucket, "again.png", png_bytes())
    assert [push(client, message) for _ in range(3)] == [204, 204, 204]
    assert len(engine.calls) == 1
    assert store.get(message.job_id).attempts == 1


def test_names_with_spaces_unicode_and_hash_signs(client, store, bucket) -> None:
    message = queued_job(store, bucket, "lab 3/Pätient Ünïcode slide #1?.png", png_bytes())
    assert push(client, message) == 204
    assert store.get(message.job_id).state == JobState.DONE


def test_jpeg_and_untyped_uploads_are_decided_by_content(client, store, bucket) -> None:
    message = queued_job(store, bucket, "scan-without-extension", jpeg_bytes(), content_type="application/octet-stream")
    assert push(client, message) == 204
    assert store.get(message.job_id).state == JobState.DONE


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nendobj\n", ErrorCode.NOT_AN_IMAGE),
        (b"<!DOCTYPE html><html><body>hi</body></html>", ErrorCode.NOT_AN_IMAGE),
        (png_bytes((256, 256))[:200], ErrorCode.TRUNCATED),
        (jpeg_bytes((256, 256))[:300], ErrorCode.TRUNCATED),
        (bomb_png(), ErrorCode.DECOMPRESSION_BOMB),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000, ErrorCode.TOO_LARGE),
    ],
    ids=["pdf-as-png", "html-as-png", "truncated-png", "truncated-jpeg", "bomb", "oversize"],
)
def test_hostile_bytes_fail_permanently_without_the_engine(client, store, bucket, engine, data, code) -> None:
    message = queued_job(store, bucket, "hostile.png", data)
    assert push(client, message) == 204
    job = store.get(message.job_id)
    assert job.state == JobState.FAILED
    assert job.error.code == code and not job.error.retryable
    assert engine.calls == []


def test_the_configured_pixel_limit_is_the_one_in_force(settings, engine, store, bucket, emulator_cfg) -> None:
    """MAX_IMAGE_PIXELS, set far below Pillow's own limit: an image of exactly that many pixels is
    screened; one row more fails as decompression_bomb without reaching the engine."""
    limited = settings.model_copy(update={"max_image_pixels": 250_000})
    at_limit = queued_job(store, bucket, "at-limit.png", png_bytes((500, 500)))
    over = queued_job(store, bucket, "over-limit.png", png_bytes((500, 501)))
    app = create_app(limited, engine=engine, store=store, blobs=GcsBlobSource(emulator_cfg.project))
    with TestClient(app) as c:
        wait_ready(c)
        assert push(c, at_limit) == 204 and push(c, over) == 204
    assert store.get(at_limit.job_id).state == JobState.DONE
    job = store.get(over.job_id)
    assert job.state == JobState.FAILED and job.error.code == ErrorCode.DECOMPRESSION_BOMB
    assert [c.batch_size for c in engine.calls] == [1]


def test_overwritten_generation_fails_as_object_gone(client, store, bucket) -> None:
    old = queued_job(store, bucket, "same-name.png", png_bytes())
    new = queued_job(store, bucket, "same-name.png", png_bytes(color=(1, 2, 3)))
    assert push(client, old) == 204
    assert store.get(old.job_id).error.code == ErrorCode.OBJECT_GONE
    assert push(client, new) == 204
    assert store.get(new.job_id).state == JobState.DONE
    assert store.latest_for(bucket.name, "same-name.png").job_id == new.job_id


def test_lease_held_elsewhere_answers_429(client, store, bucket, engine) -> None:
    message = queued_job(store, bucket, "held.png", png_bytes())
    store.lease(message.job_id, "other-worker", 300)
    assert push(client, message) == 429
    assert engine.calls == []


def test_transient_storage_error_releases_the_lease_and_answers_503(settings, engine, store, bucket) -> None:
    class FlakyBlobs:
        def download(self, bucket: str, name: str, generation: int, max_bytes: int) -> bytes:
            raise TransientError(ErrorCode.DOWNLOAD_FAILED, "storage error: ServiceUnavailable")

    app = create_app(settings, engine=engine, store=store, blobs=FlakyBlobs())
    with TestClient(app) as c:
        wait_ready(c)
        message = queued_job(store, bucket, "flaky.png", png_bytes())
        assert push(c, message) == 503
    job = store.get(message.job_id)
    assert job.state == JobState.QUEUED and job.lease is None
    assert job.error.code == ErrorCode.DOWNLOAD_FAILED and job.error.retryable


def test_engine_error_is_a_retry(settings, store, bucket) -> None:
    failing = FakeEngine(fail_on=lambda image: True)
    from healer_media.blobs import GcsBlobSource

    app = create_app(settings, engine=failing, store=store, blobs=GcsBlobSource(settings.project_id))
    with TestClient(app) as c:
        wait_ready(c)
        message = queued_job(store, bucket, "crash.png", png_bytes())
        assert push(c, message) == 503
    job = store.get(message.job_id)
    assert job.state == JobState.QUEUED and job.error.code == ErrorCode.ENGINE_ERROR


def test_bad_envelope_is_400(client) -> None:
    assert client.post("/pubsub/push", content=b"not json").status_code == 400
    assert client.post("/pubsub/push", json={"message": {"data": "bm90IGpzb24="}}).status_code == 400


def test_predict_keeps_the_seed_api(client) -> None:
    response = client.post("/predict", files={"image_file": ("tile.png", png_bytes(), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert body["answer"] in ("yes", "no", "indeterminate") and body["model_id"] == "fake/engine"
    assert body["diagnosis"].lower().startswith(body["answer"])


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"hello, not an image", 415),
        (png_bytes((200, 200))[:120], 422),
        (b"\xff\xd8\xff" + b"\0" * 300_000, 413),
    ],
    ids=["text", "truncated", "too-large"],
)
def test_predict_rejects_bad_images_with_specific_status(client, data, status) -> None:
    response = client.post("/predict", files={"image_file": ("x.png", data, "image/png")})
    assert response.status_code == status
    assert response.json()["detail"]


def test_readyz_reports_a_model_that_cannot_load(tmp_path) -> None:
    settings = Settings(MODEL_DIR=str(tmp_path / "nothing-here"), WARMUP=False)
    with TestClient(create_app(settings)) as c:
        # Loading imports torch and transformers first: seconds on a busy machine, so no tight bound.
        deadline = time.monotonic() + 120
        while (body := c.get("/readyz").json())["status"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/readyz").status_code == 503
        assert body["status"] == "failed" and body["detail"]
        assert c.get("/healthz").status_code == 200
        assert c.post("/predict", files={"image_file": ("x.png", png_bytes(), "image/png")}).status_code == 503
