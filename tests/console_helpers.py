"""The console against the emulators, for in-process tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.cloud import storage  # type: ignore[attr-defined]

from console.backend.settings import ConsoleSettings
from healer.stack.config import StackConfig
from healer_core.store import JobStore


def console_settings(
    cfg: StackConfig, bucket: storage.Bucket, store: JobStore, static_dir: Path, **extra: Any
) -> ConsoleSettings:
    """The console's settings on the emulators: uploads to `bucket` (through the storage emulator),
    jobs from `store`'s collection, the web build served from `static_dir` (a folder that does not
    exist: the API alone), and `extra` environment variables on top."""
    return ConsoleSettings(
        PROJECT_ID=cfg.project,
        HEALER_BUCKET=bucket.name,
        JOBS_COLLECTION=store.collection.id,
        STORAGE_EMULATOR_HOST=cfg.storage_url,
        CONSOLE_STATIC_DIR=static_dir,
        **extra,
    )
