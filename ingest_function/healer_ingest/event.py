"""Parse a Cloud Storage `object.v1.finalized` CloudEvent into the object it announces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]

FINALIZED = "google.cloud.storage.object.v1.finalized"


class MalformedEvent(ValueError):
    """The event is not a Cloud Storage finalize event we can act on (never retried)."""


class StorageObject(BaseModel):
    """The fields of the Cloud Storage object resource that ingest needs."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    bucket: str = Field(min_length=1)
    name: str = Field(min_length=1)
    generation: int = Field(gt=0)
    content_type: str = Field(default="", alias="contentType")
    size: int = Field(default=0, ge=0)
    crc32c: str = ""

    @field_validator("content_type", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def is_folder_marker(self) -> bool:
        """Console-created "folders" are zero-byte objects whose name ends in '/'."""
        return self.name.endswith("/")


def object_from_blob(blob: storage.Blob) -> StorageObject:
    """The object as ingest sees it, from a listed or fetched blob (reconcile, `healer eval`)."""
    return StorageObject(
        bucket=blob.bucket.name,
        name=blob.name,
        generation=int(blob.generation),
        content_type=blob.content_type or "",
        size=int(blob.size or 0),
        crc32c=blob.crc32c or "",
    )


def parse_object(data: Any) -> StorageObject:
    """Validate a storage object payload (the event's data or a listed blob's resource)."""
    if isinstance(data, bytes | str):
        raise MalformedEvent("event data is not a JSON object (expected a Cloud Storage object resource)")
    if not isinstance(data, dict):
        raise MalformedEvent("event has no data (expected a Cloud Storage object resource)")
    try:
        return StorageObject.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in exc.errors())
        raise MalformedEvent(f"event data is not a valid Cloud Storage object ({fields})") from exc


def parse_event(event: CloudEvent) -> tuple[str, StorageObject]:
    """Return (event id, object) of a finalize event, or raise MalformedEvent."""
    event_type = event.get("type")
    if event_type != FINALIZED:
        raise MalformedEvent(f"unexpected event type {event_type!r}; expected {FINALIZED!r}")
    return str(event.get("id") or ""), parse_object(event.get_data())
