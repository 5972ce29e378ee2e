"""A file the decoder cannot read is a permanent, coded failure of that job (issue 11, item 3),
through the real push route and the emulators: 204, `failed` with the decoder's code, one
attempt, no engine call — never a 503 that Pub/Sub would redeliver until it dead-letters."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from healer.stack.config import StackConfig
from healer_core.schema import ErrorCode, JobState
from healer_core.store import JobStore
from healer_media.blobs import GcsBlobSource
from inference_service.app import create_app
from inference_service.settings import Settings
from tests.fakes import FakeEngine
from tests.service_helpers import push, wait_ready
from tests.test_imaging import tiled_tiff_with_a_bad_directory
from tests.test_service import queued_job

pytestmark = pytest.mark.emulator


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(emulator_cfg: StackConfig, store: JobStore, engine: FakeEngine) -> Iterator[TestClient]:
    settings = Settings(PROJECT_ID=emulator_cfg.project, BATCH_WINDOW_MS=1, DECODE_MEMORY_MB=32)
    app = create_app(settings, engine=engine, store=store, blobs=GcsBlobSource(emulator_cfg.project))
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


def _rgba_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (side, side), (5, 6, 7, 8)).save(out, format="PNG")
    return out.getvalue()


CASES: dict[str, tuple[bytes, ErrorCode]] = {
    # Pillow raises KeyError while walking the directory chain: it used to reach the worker's
    # catch-all as an "engine error", be released (503) and redelivered until dead-lettered.
    "tiled-tiff-broken-chain": (tiled_tiff_with_a_bad_directory(), ErrorCode.TRUNCATED),
    # 3000 x 3000 RGBA needs about 80 MB to decode; the service's budget here is 32 MB.
    "over-the-decode-budget": (_rgba_png(3000), ErrorCode.DECOMPRESSION_BOMB),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_an_undecodable_upload_fails_once_with_its_code(
    client: TestClient, store: JobStore, bucket: Any, engine: FakeEngine, case: str
) -> None:
    data, code = CASES[case]
    message = queued_job(store, bucket, f"hostile/{case}.tif", data, content_type="image/tiff")
    assert push(client, message) == 204
    job = store.get(message.job_id)
    assert job is not None and job.state == JobState.FAILED and job.attempts == 1
    assert job.error is not None and job.error.code == code and not job.error.retryable
    assert push(client, message) == 204  # a redelivery changes nothing
    assert engine.calls == []
