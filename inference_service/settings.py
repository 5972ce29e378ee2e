"""Service configuration: one pydantic-settings class, built once and passed down."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Google's signing certificates for ID tokens, as {key id: PEM certificate}.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class Settings(BaseSettings):
    """Every knob of the inference service, read from the environment (names as documented)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True)

    # Where and what
    project_id: str = Field(default="healer-local", validation_alias=AliasChoices("PROJECT_ID", "GOOGLE_CLOUD_PROJECT"))
    jobs_collection: str = Field(default="jobs", validation_alias="JOBS_COLLECTION")
    job_ttl_days: float = Field(default=0.0, ge=0, validation_alias="JOB_TTL_DAYS")
    firestore_database: str = Field(default="(default)", validation_alias="FIRESTORE_DATABASE")

    # Model
    model_id: str = Field(default="google/medgemma-4b-it", validation_alias="MODEL_ID")
    model_dir: str = Field(default="./medgemma-model", validation_alias="MODEL_DIR")
    model_revision: str = Field(default="", validation_alias="MODEL_REVISION")
    hf_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("HF_TOKEN", "MY_HF_TOKEN"))
    device: Literal["auto", "cuda", "cpu"] = Field(default="auto", validation_alias="DEVICE")
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(default="auto", validation_alias="DTYPE")
    quantization: Literal["none", "8bit", "4bit"] = Field(default="none", validation_alias="QUANTIZATION")
    attn_implementation: str = Field(default="sdpa", validation_alias="ATTN_IMPLEMENTATION")

    # Verdict
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, validation_alias="THRESHOLD")
    indeterminate_band: float = Field(default=0.1, ge=0.0, le=0.5, validation_alias="INDETERMINATE_BAND")
    explain: bool = Field(default=True, validation_alias="EXPLAIN")
    max_new_tokens: int = Field(default=48, ge=1, le=512, validation_alias="MAX_NEW_TOKENS")

    # Batching and backpressure
    max_batch_size: int = Field(default=8, ge=1, le=256, validation_alias="MAX_BATCH_SIZE")
    batch_window_ms: float = Field(default=10.0, ge=0.0, le=1000.0, validation_alias="BATCH_WINDOW_MS")
    max_queue: int = Field(default=64, ge=1, validation_alias="MAX_QUEUE")
    # Threads that preprocess images while a batch runs; 0: the measured default (2).
    prepare_workers: int = Field(default=0, ge=0, le=64, validation_alias="PREPARE_WORKERS")
    warmup: bool = Field(default=True, validation_alias="WARMUP")

    # Whole-slide shards (inference_service/tile_scoring.py, shard_worker.py). Shards decoded at
    # once (each ~150 MB of tiles); `finalize` goes to SLIDES_TOPIC, republished shards to
    # JOBS_TOPIC. A shard's dead letter fails it (and its slide) only once it was leased
    # MAX_DELIVERY_ATTEMPTS times (the push subscription's own limit), else it is republished, at
    # most MAX_DEAD_LETTER_REPUBLISHES times.
    max_shards_in_flight: int = Field(default=2, ge=1, le=64, validation_alias="MAX_SHARDS_IN_FLIGHT")
    jobs_topic: str = Field(default="jobs", validation_alias="JOBS_TOPIC")
    slides_topic: str = Field(default="slides", validation_alias="SLIDES_TOPIC")
    max_delivery_attempts: int = Field(default=5, ge=1, le=100, validation_alias="MAX_DELIVERY_ATTEMPTS")
    max_dead_letter_republishes: int = Field(default=10, ge=0, validation_alias="MAX_DEAD_LETTER_REPUBLISHES")

    # Input limits
    max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1, validation_alias="MAX_IMAGE_BYTES")
    max_image_pixels: int = Field(default=178_956_970, ge=1, validation_alias="MAX_IMAGE_PIXELS")
    max_frames: int = Field(default=16, ge=1, validation_alias="MAX_FRAMES")

    # Timing chain (ARCHITECTURE.md): ack deadline >= request timeout > inference budget
    lease_seconds: float = Field(default=300.0, gt=0, validation_alias="LEASE_SECONDS")
    inference_budget_seconds: float = Field(default=120.0, gt=0, validation_alias="INFERENCE_BUDGET_SECONDS")
    # On SIGTERM, batches already accepted may finish for this long; whatever is left is released
    # (503). Keep it under the server's graceful-shutdown timeout (8 s) and Cloud Run's 10 s.
    shutdown_grace_seconds: float = Field(default=6.0, ge=0, validation_alias="SHUTDOWN_GRACE_SECONDS")

    # Push authentication (OIDC). Empty audience = not verified (local stack).
    push_audience: str = Field(default="", validation_alias="PUSH_AUDIENCE")
    push_service_account: str = Field(default="", validation_alias="PUSH_SERVICE_ACCOUNT")
    push_certs_url: str = Field(default=GOOGLE_CERTS_URL, validation_alias="PUSH_CERTS_URL")

    @model_validator(mode="after")
    def _push_auth_needs_an_account(self) -> Settings:
        # Anyone with a Google account can mint an ID token for any audience: the audience
        # alone proves nothing, so verifying without the service account would be theatre.
        if self.push_audience and not self.push_service_account:
            raise ValueError("PUSH_AUDIENCE is set but PUSH_SERVICE_ACCOUNT is not")
        return self

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
