"""Console configuration: one pydantic-settings class, built once by the app factory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from console.backend.iap import IAP_PUBLIC_KEYS_URL

WEB_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"


class ConsoleSettings(BaseSettings):
    """Every knob of the console, read from the environment (names as documented in docs/CONSOLE.md)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    project_id: str = Field(default="healer-local", validation_alias=AliasChoices("PROJECT_ID", "GOOGLE_CLOUD_PROJECT"))
    bucket: str = Field(default="healer-inbox", validation_alias=AliasChoices("HEALER_BUCKET", "INBOX_BUCKET"))
    jobs_collection: str = Field(default="jobs", validation_alias="JOBS_COLLECTION")
    firestore_database: str = Field(default="(default)", validation_alias="FIRESTORE_DATABASE")

    # Set on the local stack: uploads then go through the console to the emulator (see uploads.py).
    storage_emulator_host: str = Field(default="", validation_alias="STORAGE_EMULATOR_HOST")

    # Uploads
    upload_prefix: str = Field(default="console", validation_alias="CONSOLE_UPLOAD_PREFIX")
    upload_url_ttl_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600, validation_alias="UPLOAD_URL_TTL_SECONDS")
    max_files_per_request: int = Field(default=200, ge=1, le=1000, validation_alias="CONSOLE_MAX_FILES")
    max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1, validation_alias="MAX_IMAGE_BYTES")
    # Service account that signs upload URLs through IAM signBlob; empty = the runtime account.
    signer_service_account: str = Field(default="", validation_alias="SIGNER_SERVICE_ACCOUNT")

    # Previews
    preview_max_px: int = Field(default=512, ge=16, le=512, validation_alias="PREVIEW_MAX_PX")
    max_image_pixels: int = Field(default=178_956_970, ge=1, validation_alias="MAX_IMAGE_PIXELS")
    preview_cache_entries: int = Field(default=256, ge=0, validation_alias="PREVIEW_CACHE_ENTRIES")
    # Memory that preview decodes running at once may hold together (healer_media/budget.py).
    decode_memory_mb: int = Field(default=512, ge=16, validation_alias="DECODE_MEMORY_MB")

    # Access. With IAP_AUDIENCE set every request but /healthz needs IAP's signed assertion for
    # this audience (console/backend/iap.py). CONSOLE_ACCESS says how users reach the console on
    # Cloud Run: "iap" (IAP_AUDIENCE required) or "invoker" (Cloud Run IAM admits each caller; no
    # per-user identity here). On Cloud Run (K_SERVICE set) one of the two must be configured.
    iap_audience: str = Field(default="", validation_alias="IAP_AUDIENCE")
    iap_certs_url: str = Field(default=IAP_PUBLIC_KEYS_URL, validation_alias="IAP_CERTS_URL")
    console_access: Literal["", "iap", "invoker"] = Field(default="", validation_alias="CONSOLE_ACCESS")
    k_service: str = Field(default="", validation_alias="K_SERVICE")

    # Listing: how many of the newest jobs one list request may scan for search filtering.
    list_scan_limit: int = Field(default=2000, ge=50, le=20000, validation_alias="CONSOLE_LIST_SCAN_LIMIT")

    static_dir: Path = Field(default=WEB_DIST, validation_alias="CONSOLE_STATIC_DIR")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")

    @model_validator(mode="after")
    def _access_is_configured(self) -> ConsoleSettings:
        if self.console_access == "iap" and not self.iap_audience:
            raise ValueError(
                "CONSOLE_ACCESS=iap needs IAP_AUDIENCE (/projects/<number>/locations/<region>/services/<name>)"
            )
        if self.console_access == "invoker" and self.iap_audience:
            raise ValueError("CONSOLE_ACCESS=invoker contradicts IAP_AUDIENCE: choose one way in")
        # Fail closed: on Cloud Run, without IAP verification, the console must have been told that
        # Cloud Run IAM alone admits its callers.
        if self.k_service and not self.iap_audience and self.console_access != "invoker":
            raise ValueError(
                "running on Cloud Run (K_SERVICE is set) without IAP_AUDIENCE: set IAP_AUDIENCE to verify IAP's "
                "signed assertions, or CONSOLE_ACCESS=invoker when Cloud Run IAM alone admits callers"
            )
        return self

    @property
    def local(self) -> bool:
        """True on the local stack (the Cloud Storage emulator is in use)."""
        return bool(self.storage_emulator_host)

    @property
    def emulator_url(self) -> str:
        """The emulator's base URL (STORAGE_EMULATOR_HOST may omit the scheme)."""
        host = self.storage_emulator_host.rstrip("/")
        return host if "://" in host else f"http://{host}"
