"""Local stack defaults (ARCHITECTURE.md), each overridable from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference_service.engine.manifest import read_manifest
from inference_service.engine.tiny import TINY_MODEL_ID

# The local stack's SLIDE_REPORT_PATCHES when unset (StackConfig.report_patches).
TINY_REPORT_PATCHES = 125
LOCAL_REPORT_PATCHES = 8


class StackConfig(BaseSettings):
    """Where each local component listens, and where the stack keeps its state."""

    # No populate_by_name: field names like `home` or `host` must not read $HOME or $HOST.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    project: str = Field(
        default="healer-local", validation_alias=AliasChoices("HEALER_PROJECT", "GOOGLE_CLOUD_PROJECT")
    )
    bucket: str = Field(default="healer-inbox", validation_alias="HEALER_BUCKET")
    host: str = Field(default="127.0.0.1", validation_alias="HEALER_HOST")
    storage_port: int = Field(default=9023, validation_alias="HEALER_STORAGE_PORT")
    pubsub_port: int = Field(default=8085, validation_alias="HEALER_PUBSUB_PORT")
    firestore_port: int = Field(default=8086, validation_alias="HEALER_FIRESTORE_PORT")
    ingest_port: int = Field(default=8081, validation_alias="HEALER_INGEST_PORT")
    reconcile_port: int = Field(default=8082, validation_alias="HEALER_RECONCILE_PORT")
    service_port: int = Field(default=8080, validation_alias="HEALER_SERVICE_PORT")
    console_port: int = Field(default=8090, validation_alias="HEALER_CONSOLE_PORT")
    slide_port: int = Field(default=8083, validation_alias="HEALER_SLIDE_PORT")
    home: Path = Field(default=Path(".healer"), validation_alias="HEALER_HOME")
    model_dir: str = Field(default="", validation_alias="MODEL_DIR")
    jobs_topic: str = Field(default="jobs", validation_alias="JOBS_TOPIC")
    jobs_collection: str = Field(default="jobs", validation_alias="JOBS_COLLECTION")
    # Whole-slide images: their topic (tile, finalize → the slide service) and buckets.
    slides_topic: str = Field(default="slides", validation_alias="SLIDES_TOPIC")
    work_bucket: str = Field(default="healer-work", validation_alias="WORK_BUCKET")
    results_bucket: str = Field(default="healer-results", validation_alias="RESULTS_BUCKET")
    max_delivery_attempts: int = Field(default=5, ge=5, le=100, validation_alias="MAX_DELIVERY_ATTEMPTS")
    ack_deadline_seconds: int = Field(default=600, ge=10, le=600, validation_alias="ACK_DEADLINE_SECONDS")
    # The push subscriptions' retry backoff (terraform/pubsub.tf: 10–600 s); the soak shortens it.
    min_backoff_seconds: int = Field(default=10, ge=0, le=600, validation_alias="PUBSUB_MIN_BACKOFF_SECONDS")
    max_backoff_seconds: int = Field(default=600, ge=0, le=600, validation_alias="PUBSUB_MAX_BACKOFF_SECONDS")
    # How many deliveries the push stand-in (healer/stack/push.py) keeps in flight per subscription:
    # Pub/Sub pushes far more than one instance takes; the emulator's own push never exceeds 2.
    push_concurrency: int = Field(default=64, ge=1, le=1000, validation_alias="HEALER_PUSH_CONCURRENCY")
    eventarc_poll_seconds: float = Field(default=0.5, gt=0, validation_alias="EVENTARC_POLL_SECONDS")
    # The slide report's tiles, given to the slide service (it chooses that many, 0 = off) and to
    # the inference service (the most it takes): one value for both, as Terraform does. Unset:
    # `default_slide_report_patches`.
    slide_report_patches: int | None = Field(default=None, ge=0, le=256, validation_alias="SLIDE_REPORT_PATCHES")
    # Cloud Scheduler's reconcile cadence in terraform/reconcile.tf; 0 disables the local stand-in.
    reconcile_every_seconds: float = Field(default=900.0, ge=0, validation_alias="HEALER_RECONCILE_EVERY_SECONDS")

    # Derived names, mirroring terraform/pubsub.tf
    @property
    def dead_letter_topic(self) -> str:
        return f"{self.jobs_topic}-dead-letter"

    @property
    def push_subscription(self) -> str:
        return f"{self.jobs_topic}-push"

    @property
    def dead_letter_push_subscription(self) -> str:
        return f"{self.dead_letter_topic}-push"

    @property
    def dead_letter_pull_subscription(self) -> str:
        return f"{self.dead_letter_topic}-hold"

    @property
    def slides_dead_letter_topic(self) -> str:
        return f"{self.slides_topic}-dead-letter"

    @property
    def slides_push_subscription(self) -> str:
        return f"{self.slides_topic}-push"

    @property
    def slides_dead_letter_push_subscription(self) -> str:
        return f"{self.slides_dead_letter_topic}-push"

    @property
    def slides_dead_letter_pull_subscription(self) -> str:
        return f"{self.slides_dead_letter_topic}-hold"

    @property
    def slide_url(self) -> str:
        return f"http://{self.host}:{self.slide_port}"

    @property
    def storage_url(self) -> str:
        return f"http://{self.host}:{self.storage_port}"

    @property
    def service_url(self) -> str:
        return f"http://{self.host}:{self.service_port}"

    @property
    def ingest_url(self) -> str:
        return f"http://{self.host}:{self.ingest_port}"

    @property
    def reconcile_url(self) -> str:
        return f"http://{self.host}:{self.reconcile_port}"

    @property
    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir) if self.model_dir else self.home / "models" / "tiny"

    @property
    def report_patches(self) -> int:
        """SLIDE_REPORT_PATCHES for both services: as set, else 125 (Google's whole-slide notebook,
        the deployed default) with the tiny model, which writes that in seconds, and 8 with a real
        model: on a CPU MedGemma's vision tower alone takes ≈ 50 s per patch (docs/BENCHMARKS.md),
        so 125 patches would be hours. Set SLIDE_REPORT_PATCHES=125 on a GPU machine."""
        if self.slide_report_patches is not None:
            return self.slide_report_patches
        manifest = read_manifest(self.resolved_model_dir) or {}
        tiny = not self.model_dir or manifest.get("model_id") == TINY_MODEL_ID
        return TINY_REPORT_PATCHES if tiny else LOCAL_REPORT_PATCHES

    def client_env(self) -> dict[str, str]:
        """What any official Google client needs to talk to this stack."""
        return {
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "PUBSUB_EMULATOR_HOST": f"{self.host}:{self.pubsub_port}",
            "FIRESTORE_EMULATOR_HOST": f"{self.host}:{self.firestore_port}",
            "GOOGLE_CLOUD_PROJECT": self.project,
            "HEALER_BUCKET": self.bucket,
        }

    def gcloud_env(self) -> dict[str, str]:
        """What the Google Cloud CLI (`gcloud storage`, `gcloud pubsub`) needs to use this stack."""
        return {
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{self.storage_url}/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{self.host}:{self.pubsub_port}/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": self.project,
        }

    def stack_env(self) -> dict[str, str]:
        """This configuration as environment variables, for the stack's child processes."""
        env = {
            "HEALER_PROJECT": self.project,
            "HEALER_HOST": self.host,
            "HEALER_STORAGE_PORT": str(self.storage_port),
            "HEALER_PUBSUB_PORT": str(self.pubsub_port),
            "HEALER_FIRESTORE_PORT": str(self.firestore_port),
            "HEALER_INGEST_PORT": str(self.ingest_port),
            "HEALER_RECONCILE_PORT": str(self.reconcile_port),
            "HEALER_SERVICE_PORT": str(self.service_port),
            "HEALER_CONSOLE_PORT": str(self.console_port),
            "HEALER_SLIDE_PORT": str(self.slide_port),
            "SLIDES_TOPIC": self.slides_topic,
            "WORK_BUCKET": self.work_bucket,
            "RESULTS_BUCKET": self.results_bucket,
            "HEALER_HOME": str(self.home.resolve()),
            "JOBS_TOPIC": self.jobs_topic,
            "JOBS_COLLECTION": self.jobs_collection,
            # The service fails a dead-lettered job only after this many leases (the subscription's limit).
            "MAX_DELIVERY_ATTEMPTS": str(self.max_delivery_attempts),
            "EVENTARC_POLL_SECONDS": str(self.eventarc_poll_seconds),
            "HEALER_PUSH_CONCURRENCY": str(self.push_concurrency),
            "ACK_DEADLINE_SECONDS": str(self.ack_deadline_seconds),
            "HEALER_RECONCILE_EVERY_SECONDS": str(self.reconcile_every_seconds),
            "SLIDE_REPORT_PATCHES": str(self.report_patches),
        }
        return self.client_env() | env

    @property
    def env_file(self) -> Path:
        return self.home / "local.env"
