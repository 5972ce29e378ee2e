"""`healer-model.json`: which model a MODEL_DIR holds, written by download and by the tiny generator.

The engine reads it for provenance (model_id, revision stored with every verdict), so a verdict
made by the tiny random checkpoint can never pass for MedGemma's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_NAME = "healer-model.json"


def write_manifest(model_dir: str | Path, model_id: str, revision: str, source: str) -> Path:
    """Record `model_id` and `revision` in `model_dir`; returns the manifest path."""
    path = Path(model_dir) / MANIFEST_NAME
    entry = {
        "model_id": model_id,
        "revision": revision,
        "source": source,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(entry, indent=2) + "\n")
    return path


def read_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """The manifest as a dict, or None when absent or unreadable (then settings are the source)."""
    path = Path(model_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
