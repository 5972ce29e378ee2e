"""Service configuration: one pydantic-settings class, built once and passed down."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from healer_core.settings import JobStoreSettings
from healer_push.settings import PushAuthSettings

# Cloud Run sends SIGKILL this long after SIGTERM (https://cloud.google.com/run/docs/container-contract).
CLOUD_RUN_SIGKILL_SECONDS = 10


class Settings(JobStoreSettings, PushAuthSettings):
    """Every knob of the inference service, read from the environment (names as documented)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True)

    # Model
    # MedGemma 1.5 by default (README, "Which MedGemma"): it reads many tiles of a slide in one prompt.
    model_id: str = Field(default="google/medgemma-1.5-4b-it", validation_alias="MODEL_ID")
    model_dir: str = Field(default="./medgemma-model", validation_alias="MODEL_DIR")
    model_revision: str = Field(default="", validation_alias="MODEL_REVISION")
    hf_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("HF_TOKEN", "MY_HF_TOKEN"))
    device: Literal["auto", "cuda", "cpu"] = Field(default="auto", validation_alias="DEVICE")
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(default="auto", validation_alias="DTYPE")
    quantization: Literal["none", "8bit", "4bit"] = Field(default="none", validation_alias="QUANTIZATION")
    attn_implementation: str = Field(default="sdpa", validation_alias="ATTN_IMPLEMENTATION")

    # Speed levers (inference_service/engine/fast_paths.py), each off by default: the measured
    # eager path. One that cannot apply or fails on a stack falls back to it with a logged reason.
    vision_sdpa_backend: Literal["auto", "cudnn", "flash", "efficient", "math"] = Field(
        default="auto", validation_alias="VISION_SDPA_BACKEND"
    )
    vision_patch_embed: Literal["conv", "channels-last", "linear"] = Field(
        default="conv", validation_alias="VISION_PATCH_EMBED"
    )
    vision_compile: Literal["off", "default", "max-autotune-no-cudagraphs", "reduce-overhead"] = Field(
        default="off", validation_alias="VISION_COMPILE"
    )
    # Which of warm-up's batch sizes to compile (a JSON list, e.g. [32]); empty: all of them.
    # Each compiles at start-up, before /readyz turns 200.
    vision_compile_batch_sizes: list[int] = Field(default_factory=list, validation_alias="VISION_COMPILE_BATCH_SIZES")
    pinned_staging: bool = Field(default=False, validation_alias="PINNED_STAGING")
    explain_stop: Literal["tokens", "sentence"] = Field(default="tokens", validation_alias="EXPLAIN_STOP")
    explain_cache: Literal["dynamic", "static"] = Field(default="dynamic", validation_alias="EXPLAIN_CACHE")
    # reduce-overhead + the static cache segfaulted on the reference stack: tried in a child first.
    explain_compile: Literal["off", "default", "reduce-overhead"] = Field(
        default="off", validation_alias="EXPLAIN_COMPILE"
    )

    # Verdict
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, validation_alias="THRESHOLD")
    indeterminate_band: float = Field(default=0.1, ge=0.0, le=0.5, validation_alias="INDETERMINATE_BAND")
    explain: bool = Field(default=True, validation_alias="EXPLAIN")
    max_new_tokens: int = Field(default=48, ge=1, le=512, validation_alias="MAX_NEW_TOKENS")

    # Slide report (inference_service/engine/slide_report.py): tiles in its one prompt, 0 = off.
    # 125 is Google's whole-slide notebook's maximum; the vision tower runs MAX_BATCH_SIZE at a time.
    slide_report_patches: int = Field(default=125, ge=0, le=256, validation_alias="SLIDE_REPORT_PATCHES")
    slide_report_max_new_tokens: int = Field(default=256, ge=1, le=2048, validation_alias="SLIDE_REPORT_MAX_NEW_TOKENS")

    # Batching and backpressure
    max_batch_size: int = Field(default=8, ge=1, le=256, validation_alias="MAX_BATCH_SIZE")
    batch_window_ms: float = Field(default=10.0, ge=0.0, le=1000.0, validation_alias="BATCH_WINDOW_MS")
    max_queue: int = Field(default=64, ge=1, validation_alias="MAX_QUEUE")
    # Threads that preprocess images while a batch runs; 0: the measured default (2).
    prepare_workers: int = Field(default=0, ge=0, le=64, validation_alias="PREPARE_WORKERS")
    warmup: bool = Field(default=True, validation_alias="WARMUP")

    # Whole-slide shards (inference_service/tile_scoring.py, shard_worker.py). Shards scored at
    # once (each holds its object's JPEG bytes, ~16 MB for 64 tiles; tiles are decoded in their
    # turn); `finalize` goes to SLIDES_TOPIC, republished shards to
    # JOBS_TOPIC. A shard's dead letter follows a job's rules (MAX_DELIVERY_ATTEMPTS,
    # DEAD_LETTER_GIVE_UP_SECONDS, below).
    max_shards_in_flight: int = Field(default=2, ge=1, le=64, validation_alias="MAX_SHARDS_IN_FLIGHT")
    slides_topic: str = Field(default="slides", validation_alias="SLIDES_TOPIC")

    # Input limits
    max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1, validation_alias="MAX_IMAGE_BYTES")
    max_image_pixels: int = Field(default=178_956_970, ge=1, validation_alias="MAX_IMAGE_PIXELS")
    max_frames: int = Field(default=16, ge=1, validation_alias="MAX_FRAMES")
    # Memory that decodes running at once may hold together, and the pixels the model needs on
    # the shorter side: larger images are decoded at a reduced scale (healer_media/imaging.py).
    decode_memory_mb: int = Field(default=2048, ge=16, validation_alias="DECODE_MEMORY_MB")
    decode_target_px: int = Field(default=1792, ge=0, validation_alias="DECODE_TARGET_PX")

    # Timing chain (ARCHITECTURE.md): ack deadline >= request timeout > inference budget
    lease_seconds: float = Field(default=300.0, gt=0, validation_alias="LEASE_SECONDS")
    inference_budget_seconds: float = Field(default=120.0, gt=0, validation_alias="INFERENCE_BUDGET_SECONDS")
    # On SIGTERM, batches already accepted may finish for this long; whatever is left is released
    # (503). Keep it under the server's graceful-shutdown timeout (8 s) and Cloud Run's 10 s.
    shutdown_grace_seconds: float = Field(default=6.0, ge=0, validation_alias="SHUTDOWN_GRACE_SECONDS")
    # The server's own graceful-shutdown timeout (uvicorn --timeout-graceful-shutdown; the image's
    # command passes this variable). Cloud Run kills the container 10 s after SIGTERM.
    server_shutdown_seconds: float = Field(default=8.0, gt=0, validation_alias="SERVER_SHUTDOWN_SECONDS")

    # Dead letters (routes/pubsub.py). A dead letter fails its job only once the job was leased
    # MAX_DELIVERY_ATTEMPTS times (the push subscription's own limit; Terraform's
    # max_delivery_attempts); a job whose message ran out of attempts without being run (lease
    # held, service busy) is republished to JOBS_TOPIC, until DEAD_LETTER_GIVE_UP_SECONDS after
    # its first dead letter.
    jobs_topic: str = Field(default="jobs", validation_alias="JOBS_TOPIC")
    max_delivery_attempts: int = Field(default=5, ge=1, le=100, validation_alias="MAX_DELIVERY_ATTEMPTS")
    dead_letter_give_up_seconds: float = Field(default=21600.0, ge=0, validation_alias="DEAD_LETTER_GIVE_UP_SECONDS")

    @field_validator("dtype")
    @classmethod
    def _no_float16(cls, value: str) -> str:
        # Refused here, at start-up, rather than minutes later inside the background model load.
        if value == "float16":
            raise ValueError(
                "DTYPE=float16 is refused: Gemma 3 activations overflow in fp16 (inf/NaN logits); "
                "use bfloat16 on a GPU (the default) or float32 on a CPU"
            )
        return value

    @model_validator(mode="after")
    def _timing_chain_holds(self) -> Settings:
        # ARCHITECTURE.md's timing chain: a job's inference must end while its lease still fences
        # it, and a draining instance must finish or release before the server, then Cloud Run, stop it.
        if self.inference_budget_seconds >= self.lease_seconds:
            raise ValueError(
                f"INFERENCE_BUDGET_SECONDS ({self.inference_budget_seconds:g}) must be below LEASE_SECONDS "
                f"({self.lease_seconds:g}): a verdict computed after the lease expired is fenced off and lost"
            )
        if self.shutdown_grace_seconds >= self.server_shutdown_seconds:
            raise ValueError(
                f"SHUTDOWN_GRACE_SECONDS ({self.shutdown_grace_seconds:g}) must be below SERVER_SHUTDOWN_SECONDS "
                f"({self.server_shutdown_seconds:g}): the server would cut requests before their leases are released"
            )
        if self.k_service and self.server_shutdown_seconds >= CLOUD_RUN_SIGKILL_SECONDS:
            raise ValueError(
                f"SERVER_SHUTDOWN_SECONDS ({self.server_shutdown_seconds:g}) must be below Cloud Run's "
                f"{CLOUD_RUN_SIGKILL_SECONDS} s between SIGTERM and SIGKILL"
            )
        if self.max_batch_size > self.max_queue:
            raise ValueError(
                f"MAX_BATCH_SIZE ({self.max_batch_size}) must not exceed MAX_QUEUE ({self.max_queue}): "
                "a batch is taken from the queue"
            )
        return self

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
