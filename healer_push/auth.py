"""OIDC authentication of Pub/Sub push requests.

A push subscription configured with a service account sends `Authorization: Bearer <JWT>`, an
ID token signed by Google. When `PUSH_AUDIENCE` is set, every request to `/pubsub/*` must carry
one whose signature verifies against Google's certificates (`PUSH_CERTS_URL`), whose `aud` is
the audience, whose `email` is `PUSH_SERVICE_ACCOUNT` with `email_verified`, and which has not
expired (`iat` and `exp` are checked with `PUSH_CLOCK_SKEW_SECONDS` of leeway for clocks that
disagree slightly). Otherwise the request is refused before anything touches Firestore:

    missing or not a bearer token        → 401 (Pub/Sub retries; an unauthenticated caller learns nothing)
    bad signature/audience/email/expiry  → 403
    certificates cannot be fetched        → 503 (our fault, not the caller's: retry)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
from fastapi import HTTPException, Request
from google.oauth2 import id_token

from healer_push.settings import PushAuthSettings

log = logging.getLogger("healer.auth")

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


class PushAuthError(Exception):
    """The push request is not authenticated; `status` is 401 (no credentials) or 403 (bad ones)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _CachingRequest(google.auth.transport.Request):
    """A google-auth transport that caches successful GETs (the signing certificates) for `ttl_s`.

    Google rotates its keys over days; fetching them once per push would add a round trip to
    every message. A token signed with a key we have not seen forces a refresh (see `verify`).
    """

    def __init__(self, ttl_s: float) -> None:
        self._inner = google.auth.transport.requests.Request()
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:  # type: ignore[override]
        if method != "GET":
            return self._inner(url, method=method, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        response = self._inner(url, method=method, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic() + self._ttl_s, response)
        return response

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


class PushVerifier:
    """Verifies push ID tokens for one audience and one service account."""

    def __init__(
        self, audience: str, service_account: str, certs_url: str, cache_s: float = 300.0, clock_skew_s: int = 10
    ) -> None:
        self.audience = audience
        self.service_account = service_account
        self.certs_url = certs_url
        self.clock_skew_s = clock_skew_s
        self._request = _CachingRequest(cache_s)

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims, or raise PushAuthError (401/403). Transport errors propagate."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PushAuthError(401, "missing bearer token")
        token = token.strip()
        try:
            claims = self._decode(token)
        except google.auth.exceptions.TransportError:
            raise
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise PushAuthError(403, f"invalid token: {type(exc).__name__}") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise PushAuthError(403, "token not issued by Google")
        if self.service_account and claims.get("email") != self.service_account:
            raise PushAuthError(403, "token is for another service account")
        if claims.get("email_verified") is not True:
            raise PushAuthError(403, "token email is not verified")
        return claims

    def _decode(self, token: str) -> Mapping[str, Any]:
        try:
            return self._verify_token(token)
        except google.auth.exceptions.MalformedError as exc:
            if "Certificate for key id" not in str(exc):
                raise
            self._request.forget()  # an unknown key id: Google may have rotated its keys
            return self._verify_token(token)

    def _verify_token(self, token: str) -> Mapping[str, Any]:
        return id_token.verify_token(
            token,
            self._request,
            audience=self.audience,
            certs_url=self.certs_url,
            clock_skew_in_seconds=self.clock_skew_s,
        )


def verifier_for(request: Request) -> PushVerifier | None:
    """The app's verifier (built on first use), or None when push authentication is off."""
    settings: PushAuthSettings = request.app.state.runtime.settings
    if not settings.push_audience:
        return None
    verifier: PushVerifier | None = getattr(request.app.state, "push_verifier", None)
    if verifier is None:
        verifier = PushVerifier(
            settings.push_audience,
            settings.push_service_account,
            settings.push_certs_url,
            clock_skew_s=settings.push_clock_skew_seconds,
        )
        request.app.state.push_verifier = verifier
    return verifier


async def require_push_auth(request: Request) -> None:
    """FastAPI dependency for the push routes: refuse unauthenticated requests (no side effects)."""
    verifier = verifier_for(request)
    if verifier is None:
        return
    try:
        await asyncio.to_thread(verifier.verify, request.headers.get("authorization"))
    except PushAuthError as exc:
        log.warning("push request refused", extra={"status": exc.status, "reason": exc.reason})
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise HTTPException(exc.status, detail=exc.reason, headers=headers) from exc
    except google.auth.exceptions.TransportError as exc:
        log.error("could not fetch the token signing certificates", extra={"error_type": type(exc).__name__})
        raise HTTPException(503, detail="cannot verify tokens right now", headers={"Retry-After": "10"}) from exc
