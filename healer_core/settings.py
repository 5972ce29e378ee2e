"""Where the jobs live: the settings every deployable that writes jobs shares (the ingest
functions, the inference service, the slide service), read from the same variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


class JobStoreSettings(BaseSettings):
    """The project, the Firestore database and jobs collection, and the finished jobs' TTL
    (`healer_core.store.open_job_store` builds the store from them)."""

    project_id: str = Field(default="healer-local", validation_alias=AliasChoices("PROJECT_ID", "GOOGLE_CLOUD_PROJECT"))
    jobs_collection: str = Field(default="jobs", validation_alias="JOBS_COLLECTION")
    firestore_database: str = Field(default="(default)", validation_alias="FIRESTORE_DATABASE")
    # > 0: finished jobs get `expire_at` this many days on, for a Firestore TTL policy.
    job_ttl_days: float = Field(default=0.0, ge=0, validation_alias="JOB_TTL_DAYS")
