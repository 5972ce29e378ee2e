"""Model files on disk: download MedGemma, generate the tiny test checkpoint, describe a MODEL_DIR.

Plain functions; the `healer model ...` CLI wraps them. Every MODEL_DIR written here gets a
`healer-model.json` manifest, which the engine stores as provenance with each verdict.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from inference_service.engine.manifest import read_manifest, write_manifest

TOKEN_ENV_VARS = ("HF_TOKEN", "MY_HF_TOKEN")  # MY_HF_TOKEN is the seed's name

# The default model (README, "Which MedGemma"); google/medgemma-4b-it works the same way.
DEFAULT_MODEL_ID = "google/medgemma-1.5-4b-it"
# What the engine loads: Gemma 3 image-text checkpoints (MedGemma 4B and 1.5 4B are both one).
IMAGE_TEXT_ARCHITECTURES = ("Gemma3ForConditionalGeneration",)
# The files AutoProcessor needs besides config.json and the weights: the tokenizer's, and the image
# processor's (preprocessor_config.json in MedGemma's repositories, inside processor_config.json as
# transformers 5 saves it).
PROCESSOR_FILES = (("tokenizer_config.json",), ("preprocessor_config.json", "processor_config.json"))


class ModelDownloadError(RuntimeError):
    """A download that cannot succeed as configured; the message is one line saying what to do."""


def resolve_token(token: str | None = None) -> str | None:
    """The token given, else HF_TOKEN, else the seed's MY_HF_TOKEN (empty values ignored)."""
    if token:
        return token
    for name in TOKEN_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def download(model_id: str, model_dir: str | Path, token: str | None, revision: str | None = None) -> Path:
    """Fetch `model_id` (at `revision`, default main) into `model_dir` and record the exact commit.

    Raises ModelDownloadError with a one-line fix when the token is missing, invalid or not granted.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    token = resolve_token(token)
    page = f"https://huggingface.co/{model_id}"
    if not token:
        raise ModelDownloadError(
            f"No Hugging Face token: set HF_TOKEN (or MY_HF_TOKEN) to a token of an account that has "
            f"accepted the terms of {model_id} at {page}"
        )
    out = Path(model_dir)
    try:
        # Pin the commit first so the files and the manifest name the same revision.
        sha = HfApi().model_info(model_id, revision=revision, token=token).sha or revision or "main"
        snapshot_download(model_id, revision=sha, local_dir=out, token=token)
    except GatedRepoError as exc:
        raise ModelDownloadError(
            f"The token's account has not been granted {model_id}: accept its terms at {page} "
            "(same account as the token), wait for approval, then retry."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelDownloadError(
            f"{model_id} not found or the token is invalid: check MODEL_ID and create a read token at "
            "https://huggingface.co/settings/tokens"
        ) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise ModelDownloadError(
                "Hugging Face rejected the token (401): create a read token at "
                "https://huggingface.co/settings/tokens and set HF_TOKEN"
            ) from exc
        if status == 403:
            raise ModelDownloadError(
                f"The token is not allowed to read {model_id} (403): accept its terms at {page} and use a "
                "token with read access to gated repos"
            ) from exc
        raise ModelDownloadError(f"Download of {model_id} failed ({status or type(exc).__name__}): {exc}") from exc
    verify_model_dir(out, model_id)
    write_manifest(out, model_id=model_id, revision=sha, source="huggingface")
    return out


def verify_model_dir(model_dir: str | Path, model_id: str = "") -> None:
    """Raise ModelDownloadError unless `model_dir` holds an image-text Gemma 3 the engine can load.

    Catches a MODEL_ID that names a text-only or other model (e.g. MedGemma 27B text) at download
    time, rather than when the service starts.
    """
    root = Path(model_dir)
    name = model_id or str(root)
    try:
        config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelDownloadError(f"{name}: no readable config.json in {root}") from exc
    architectures = config.get("architectures") or []
    if not set(architectures) & set(IMAGE_TEXT_ARCHITECTURES):
        raise ModelDownloadError(
            f"{name} is {', '.join(architectures) or 'an unknown architecture'}, not an image-text Gemma 3 "
            f"({', '.join(IMAGE_TEXT_ARCHITECTURES)}): set MODEL_ID to google/medgemma-1.5-4b-it or "
            "google/medgemma-4b-it"
        )
    missing = [" or ".join(names) for names in PROCESSOR_FILES if not any((root / n).is_file() for n in names)]
    if missing:
        raise ModelDownloadError(f"{name}: the processor's files are missing from {root}: {', '.join(missing)}")


def make_tiny(out_dir: str | Path) -> Path:
    """Generate the tiny random Gemma 3 checkpoint (offline, seconds) into `out_dir`."""
    from inference_service.engine.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(out_dir)


def info(model_dir: str | Path) -> dict[str, Any]:
    """What a MODEL_DIR holds: model id, revision, source, size on disk, dtype and architecture."""
    root = Path(model_dir)
    manifest = read_manifest(root) or {}
    config: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((root / "config.json").read_text())
    text_config = config.get("text_config") or {}
    vision_config = config.get("vision_config") or {}
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return {
        "model_dir": str(root),
        "present": bool(config),
        "model_id": manifest.get("model_id", ""),
        "revision": manifest.get("revision", ""),
        "source": manifest.get("source", ""),
        "size_bytes": size,
        "size": _human(size),
        "dtype": config.get("dtype") or config.get("torch_dtype") or text_config.get("dtype") or "",
        "architectures": config.get("architectures", []),
        "quantization": (config.get("quantization_config") or {}).get("quant_method", "none"),
        "image_size": vision_config.get("image_size", ""),
        "image_tokens": config.get("mm_tokens_per_image", ""),
    }


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
