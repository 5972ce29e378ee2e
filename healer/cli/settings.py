"""Where the CLI points: flags, then the environment, then `.healer/local.env`.

With no `--project`, the local stack's env file (written by `healer up`) fills in whatever the
environment does not set, so `healer` talks to the local stack by default. With `--project`,
the env file is ignored and the official clients use Application Default Credentials.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from healer.cli.errors import CliError

REPO = Path(__file__).resolve().parents[2]
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")
NOT_RUNNING = "the local stack is not running: run `make up` (or `healer up`)"


def parse_env_file(path: Path) -> dict[str, str]:
    """`export K=V` (or `K=V`) lines; blank lines and `#` comments are skipped; quotes stripped."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def find_env_file() -> Path | None:
    """`$HEALER_HOME/local.env`, else `./.healer/local.env`, else the checkout's `.healer/local.env`."""
    home = os.environ.get("HEALER_HOME")
    candidates = [Path(home) / "local.env"] if home else [Path(".healer") / "local.env", REPO / ".healer" / "local.env"]
    return next((p for p in candidates if p.is_file()), None)


@dataclass(frozen=True)
class Settings:
    """The project, bucket, collection and topic one command works on."""

    project: str
    bucket: str
    collection: str = "jobs"
    topic: str = "jobs"
    database: str = "(default)"
    env_file: Path | None = None
    emulators: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        """True when the official clients talk to emulators."""
        return bool(self.emulators)

    @property
    def dead_letter_subscription(self) -> str:
        """The pull subscription that retains dead letters (mirrors terraform/pubsub.tf)."""
        return f"{self.topic}-dead-letter-hold"

    def describe(self) -> str:
        where = f"local stack ({self.env_file})" if self.env_file else ("emulators" if self.local else "GCP")
        return f"project {self.project}, bucket {self.bucket}, collection {self.collection} on {where}"


def _adc_project() -> str | None:
    import google.auth

    _, project = google.auth.default()  # raises DefaultCredentialsError: the boundary explains it
    return project


def resolve(
    project: str | None = None,
    bucket: str | None = None,
    collection: str | None = None,
    topic: str | None = None,
    *,
    database: str | None = None,
    need_bucket: bool = True,
    check_reachable: bool = True,
) -> Settings:
    """Settings from flags > environment > `.healer/local.env`, applied to this process's environment.

    The official clients read their emulator hosts from the environment, so values taken from
    the env file are exported here (never overriding what the environment already sets).
    """
    env_file = None if project else find_env_file()
    if env_file is not None:
        for key, value in parse_env_file(env_file).items():
            os.environ.setdefault(key, value)
    project = project or os.environ.get("HEALER_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    emulators = {k: os.environ[k] for k in EMULATOR_VARS if os.environ.get(k)}
    if not project and not emulators:
        project = _adc_project()
    if not project:
        raise CliError("no Google Cloud project: pass --project (or run `make up` for the local stack)")
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", project)
    bucket = bucket or os.environ.get("HEALER_BUCKET") or ""
    if need_bucket and not bucket:
        raise CliError("no bucket: pass --bucket (terraform output inbox_bucket) or set HEALER_BUCKET")
    settings = Settings(
        project=project,
        bucket=bucket,
        collection=collection or os.environ.get("JOBS_COLLECTION") or "jobs",
        topic=topic or os.environ.get("JOBS_TOPIC") or "jobs",
        database=database or os.environ.get("FIRESTORE_DATABASE") or "(default)",
        env_file=env_file,
        emulators=emulators,
    )
    if check_reachable:
        ensure_emulators_reachable(settings)
    return settings


def _host_port(value: str) -> tuple[str, int]:
    parts = urlsplit(value if "://" in value else f"//{value}")
    return parts.hostname or "127.0.0.1", parts.port or 80


def ensure_emulators_reachable(settings: Settings, timeout_s: float = 1.0) -> None:
    """Fail fast, in one line, when an emulator is configured but nothing listens there.

    The clients would otherwise retry a refused connection for minutes before giving up.
    """
    for value in settings.emulators.values():
        host, port = _host_port(value)
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as exc:
            raise CliError(NOT_RUNNING) from exc


def ingest_importable() -> None:
    """Make `healer_ingest` importable for the installed CLI (pytest puts it on the path itself)."""
    try:
        import healer_ingest  # noqa: F401
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO / "ingest_function"))
