"""The Pub/Sub push envelope (what a push subscription POSTs)."""

from __future__ import annotations

import base64
import binascii

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from healer_core.schema import JobMessage


class BadEnvelope(ValueError):
    """The request body is not a Pub/Sub push envelope carrying a job message."""


class PushMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = Field(default="", validation_alias=AliasChoices("messageId", "message_id"))


class PushEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message: PushMessage
    subscription: str = ""
    delivery_attempt: int | None = Field(default=None, validation_alias=AliasChoices("deliveryAttempt"))

    def job_message(self) -> JobMessage:
        """Decode the job message from `message.data` (base64 JSON)."""
        try:
            raw = base64.b64decode(self.message.data, validate=True)
            return JobMessage.from_data(raw)
        except (binascii.Error, ValidationError, ValueError) as exc:
            raise BadEnvelope(f"message data is not a job message: {type(exc).__name__}") from exc


def parse_envelope(body: bytes) -> PushEnvelope:
    """Parse a push request body, or raise BadEnvelope."""
    try:
        return PushEnvelope.model_validate_json(body)
    except ValidationError as exc:
        raise BadEnvelope("request body is not a Pub/Sub push envelope") from exc
