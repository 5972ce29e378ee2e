"""How a push-consuming service authenticates its pushes: the settings both services share."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

# Google's signing certificates for ID tokens, as {key id: PEM certificate}.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class PushAuthSettings(BaseSettings):
    """Push authentication (OIDC). An empty audience means no verification (the local stack);
    on Cloud Run (`K_SERVICE` set) that is refused: the service fails closed."""

    push_audience: str = Field(default="", validation_alias="PUSH_AUDIENCE")
    push_service_account: str = Field(default="", validation_alias="PUSH_SERVICE_ACCOUNT")
    push_certs_url: str = Field(default=GOOGLE_CERTS_URL, validation_alias="PUSH_CERTS_URL")
    # A token minted a moment ago by a clock slightly ahead of ours is "used too early" without it.
    push_clock_skew_seconds: int = Field(default=10, ge=0, le=300, validation_alias="PUSH_CLOCK_SKEW_SECONDS")
    # Set by Cloud Run in every container it runs (https://cloud.google.com/run/docs/container-contract).
    k_service: str = Field(default="", validation_alias="K_SERVICE")

    @model_validator(mode="after")
    def _push_auth_is_real(self) -> Self:
        # Anyone with a Google account can mint an ID token for any audience: the audience
        # alone proves nothing, so verifying without the service account would be theatre.
        if self.push_audience and not self.push_service_account:
            raise ValueError("PUSH_AUDIENCE is set but PUSH_SERVICE_ACCOUNT is not")
        # Fail closed: on Cloud Run an unverified push route would let any caller write verdicts.
        if self.k_service and not self.push_audience:
            raise ValueError(
                "running on Cloud Run (K_SERVICE is set) without PUSH_AUDIENCE: push requests would not be "
                "authenticated; set PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT"
            )
        return self
