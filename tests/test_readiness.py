"""`/readyz` touches the device: the engine's probe runs on every check, under a timeout.

In-process with a FakeEngine whose probe can fail or hang (no emulator needed: readiness reads no
job), and the real probe on the tiny checkpoint (CPU) and, where one is visible, on a CUDA GPU.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inference_service.app import create_app
from inference_service.engine.prompt import PROMPT_VERSION
from inference_service.settings import Settings
from tests.fakes import FakeEngine
from tests.service_helpers import wait_ready


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.unwedge()  # never leave a probe thread hanging after the test


def _client(engine: FakeEngine, probe_timeout_s: float | None = None) -> TestClient:
    app = create_app(Settings(WARMUP=False), engine=engine)
    if probe_timeout_s is not None:
        app.state.runtime.probe_timeout_s = probe_timeout_s
    return TestClient(app)


def test_ready_probes_the_device_on_every_check(engine: FakeEngine) -> None:
    with _client(engine) as client:
        wait_ready(client)
        before = engine.probes
        for _ in range(3):
            response = client.get("/readyz")
            assert response.status_code == 200
            assert response.json() == {"status": "ready", "model_id": "fake/engine", "prompt_version": PROMPT_VERSION}
        assert engine.probes == before + 3


def test_a_device_that_fails_its_probe_is_not_ready_until_it_passes_again(engine: FakeEngine) -> None:
    with _client(engine) as client:
        wait_ready(client)
        engine.probe_error = RuntimeError("CUDA error: an illegal memory access was encountered")
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unhealthy",
            "detail": "the device probe failed: RuntimeError: CUDA error: an illegal memory access was encountered",
        }
        assert client.get("/healthz").status_code == 200  # alive: Cloud Run restarts on liveness, not this

        engine.probe_error = None
        assert client.get("/readyz").status_code == 200


def test_a_wedged_device_is_not_ready_and_its_stuck_probe_is_not_repeated(engine: FakeEngine) -> None:
    with _client(engine, probe_timeout_s=0.2) as client:
        wait_ready(client)
        engine.wedge()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unhealthy",
            "detail": "the device probe did not answer within 0.2 s (device wedged?)",
        }
        stuck = engine.probes
        for _ in range(3):  # the first probe still hangs: no new thread, an answer at once
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["detail"].startswith("the device probe has not answered for ")
        assert engine.probes == stuck

        engine.unwedge()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "still not ready after the device answered again"
            time.sleep(0.05)
        assert engine.probes > stuck


def test_the_real_probe_passes_on_the_tiny_model(tiny_model_dir: Path) -> None:
    pytest.importorskip("transformers")
    from inference_service.engine.loader import load_engine

    engine = load_engine(Settings(MODEL_DIR=str(tiny_model_dir), DEVICE="cpu"))
    engine.probe()  # returns: the CPU computed the sum
    with TestClient(create_app(Settings(WARMUP=False), engine=engine)) as client:
        wait_ready(client)
        assert client.get("/readyz").json()["status"] == "ready"


def test_the_probe_refuses_a_wrong_answer() -> None:
    import torch

    from inference_service.engine.base import DeviceProbeError
    from inference_service.engine.medgemma import DeviceProbe

    probe = DeviceProbe(torch.device("cpu"))
    probe.run()
    probe._input[3] = 1000.0  # a device that computes garbage
    with pytest.raises(DeviceProbeError, match=re.escape("the sum of 0..15 came back 1117.0")):
        probe.run()


@pytest.mark.gpu
def test_the_cuda_probe_does_not_wait_behind_a_running_batch() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from inference_service.engine.medgemma import DeviceProbe

    device = torch.device("cuda")
    probe = DeviceProbe(device)
    probe.run()
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    busy = torch.cuda.current_stream(device)
    for _ in range(200):  # queued on the default stream, as a batch's kernels are: a second or more of work
        a = a @ a.T / 8192.0
    probe.run()
    assert not busy.query(), "the probe returned only after the default stream drained"
    torch.cuda.synchronize(device)
