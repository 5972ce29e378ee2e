"""Shared fixtures: the official emulators (started once per test session), isolated names,
and the tiny Gemma 3 checkpoint.

The emulators run on their own ports under a temporary HEALER_HOME, so a developer's
`make up` stack is never touched. Tests isolate themselves by bucket and collection names.

Marks follow the fixtures: a test that uses `emulator_cfg`, directly or through any fixture built
on it (`store`, `bucket`, `stack_cfg`, ...), is marked `emulator`, and one on the whole stack also
`stack`, at collection; nobody has to remember a mark. `make test-fast` (-m "not emulator") thus
starts nothing, and with HEALER_TEST_FAST=1 (which it sets) starting the emulators fails loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from healer.stack.config import StackConfig

if TYPE_CHECKING:
    from google.cloud import firestore, storage  # type: ignore[attr-defined]

    from healer_core.store import JobStore
    from tests.processes import UvicornProcess

# Test ports sit at HEALER_TEST_PORT_BASE + the stack's usual last two digits (default 18000),
# so two test sessions on one machine can run side by side with different bases.
_BASE = int(os.environ.get("HEALER_TEST_PORT_BASE", "18000"))
TEST_PORTS: dict[str, Any] = {
    "HEALER_STORAGE_PORT": str(_BASE + 23),
    "HEALER_PUBSUB_PORT": str(_BASE + 85),
    "HEALER_FIRESTORE_PORT": str(_BASE + 86),
    "HEALER_INGEST_PORT": str(_BASE + 81),
    "HEALER_RECONCILE_PORT": str(_BASE + 82),
    "HEALER_SERVICE_PORT": str(_BASE + 80),
    "HEALER_CONSOLE_PORT": str(_BASE + 90),
    "HEALER_SLIDE_PORT": str(_BASE + 83),
}
# The stack's slide service in tests: small shards and one tiling process (small slides, 2 cores),
# a short lease so that a killed slide service's work is retaken within seconds.
SLIDE_SERVICE_TEST_ENV = {"SHARD_TILES": "2", "TILING_PROCESSES": "1", "LEASE_SECONDS": "8"}
REPO = Path(__file__).resolve().parents[1]
# The fixtures that start processes: everything on the emulators goes through the first.
STARTS_EMULATORS = "emulator_cfg"
STARTS_STACK = "stack_cfg"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what its fixtures (their whole closure) start."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if STARTS_EMULATORS in fixtures:
            item.add_marker(pytest.mark.emulator)
        if STARTS_STACK in fixtures:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Gemma 3 checkpoint, built once per session (deterministic, ~4 s on CPU)."""
    from inference_service.engine.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def emulator_cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    """The three emulators, up for the whole session; their client env vars set."""
    from healer.stack import control

    if os.environ.get("HEALER_TEST_FAST") == "1":
        pytest.fail("make test-fast starts nothing, but a test selected by it asked for the emulators")
    home = tmp_path_factory.mktemp("healer-home")
    cfg = StackConfig(HEALER_HOME=home, HEALER_PROJECT="healer-test", HEALER_BUCKET="healer-test-inbox", **TEST_PORTS)
    saved = dict(os.environ)
    os.environ.update(cfg.client_env())
    os.environ["PROJECT_ID"] = cfg.project
    try:
        for comp in control.emulator_components(cfg):
            control.start(cfg, comp)
        yield cfg
    finally:
        for name in ("firestore", "pubsub", "storage"):
            control.stop_component(cfg, name)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def stack_cfg(emulator_cfg: StackConfig, tiny_model_dir: Path) -> Iterator[StackConfig]:
    """The whole pipeline on test ports: emulators, topics and subscriptions, the ingest and
    reconcile functions, the service on the tiny model, the Eventarc stand-in (and the console
    when it exists), as real subprocesses. Logs under `<home>/logs/`."""
    from healer.stack import control
    from healer.stack.provision import ensure_bucket, ensure_pubsub, ensure_slides_pubsub

    cfg = emulator_cfg.model_copy(update={"model_dir": str(tiny_model_dir)})
    ensure_bucket(cfg)
    ensure_pubsub(cfg)
    ensure_slides_pubsub(cfg)
    started: list[str] = []
    try:
        for comp in control.app_components(cfg):
            if comp.name == "slide":
                comp.env.update(SLIDE_SERVICE_TEST_ENV)
            control.start(cfg, comp)
            started.append(comp.name)
        control.write_env_file(cfg)
        yield cfg
    finally:
        for name in reversed(started):
            control.stop_component(cfg, name)


@pytest.fixture
def processes() -> Iterator[list[UvicornProcess]]:
    """Service processes a test started go here; whatever is still running is killed at the end."""
    started: list[UvicornProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for per-test bucket, collection and topic names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def firestore_client(emulator_cfg: StackConfig) -> firestore.Client:
    from google.cloud import firestore

    return firestore.Client(project=emulator_cfg.project)


@pytest.fixture
def store(firestore_client: firestore.Client, unique: str) -> JobStore:
    from healer_core.store import JobStore

    return JobStore(firestore_client, f"jobs-{unique}")


@pytest.fixture
def bucket(emulator_cfg: StackConfig, unique: str) -> storage.Bucket:
    from google.cloud import storage  # type: ignore[attr-defined]

    client = storage.Client(project=emulator_cfg.project)
    return client.create_bucket(f"inbox-{unique}")


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    """The real H&E tiles the project ships (samples/, with their sources and licence)."""
    return sorted(p for p in (REPO / "samples").iterdir() if p.suffix in (".tif", ".png"))
