"""Who is asking: the Identity-Aware Proxy's signed assertion, verified.

IAP signs every request it lets through with `x-goog-iap-jwt-assertion`, an ES256 JWT whose `iss`
is `https://cloud.google.com/iap`, whose `aud` names the protected resource (for IAP enabled on a
Cloud Run service: `/projects/<project number>/locations/<region>/services/<service>`), signed with
one of the keys Google publishes at https://www.gstatic.com/iap/verify/public_key. When
`IAP_AUDIENCE` is set, the console admits a request only with such an assertion and takes the
caller's identity from it — never from the unsigned `x-goog-authenticated-user-email` header,
which anyone reaching the container around IAP could send:

    no assertion                                           → 401
    bad signature, audience, issuer, algorithm or expiry    → 403
    the public keys cannot be fetched                       → 503 (our fault: try again)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
from google.auth import jwt

IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_PUBLIC_KEYS_URL = "https://www.gstatic.com/iap/verify/public_key"


@dataclass(frozen=True)
class Caller:
    """The signed-in user, as IAP vouches for them."""

    email: str
    subject: str


class IapAuthError(Exception):
    """The request carries no valid IAP assertion; `status` is 401 (none) or 403 (a bad one)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class IapVerifier:
    """Verifies IAP assertions for one audience against IAP's published public keys.

    The keys are cached for `keys_ttl_s`; an assertion signed with a key id not in the cache
    refreshes it (IAP rotates its keys), at most once per `refresh_interval_s` so that forged key
    ids cannot turn every request into a fetch.
    """

    def __init__(
        self,
        audience: str,
        keys_url: str = IAP_PUBLIC_KEYS_URL,
        clock_skew_s: int = 30,
        keys_ttl_s: float = 3600.0,
        refresh_interval_s: float = 60.0,
    ) -> None:
        self.audience = audience
        self.keys_url = keys_url
        self.clock_skew_s = clock_skew_s
        self._ttl_s = keys_ttl_s
        self._refresh_interval_s = refresh_interval_s
        self._keys: Mapping[str, str] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        self._transport = google.auth.transport.requests.Request()

    def verify(self, assertion: str | None) -> Caller:
        """The caller the assertion names, or raise IapAuthError. Key-fetch failures raise
        google.auth.exceptions.TransportError."""
        token = (assertion or "").strip()
        if not token:
            raise IapAuthError(401, "missing IAP assertion")
        try:
            header = jwt.decode_header(token)
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise IapAuthError(403, f"malformed IAP assertion: {type(exc).__name__}") from exc
        if header.get("alg") != "ES256":
            raise IapAuthError(403, "IAP assertions are signed with ES256")
        key = self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(token, certs=key, audience=self.audience, clock_skew_in_seconds=self.clock_skew_s)
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise IapAuthError(403, f"invalid IAP assertion: {type(exc).__name__}") from exc
        if claims.get("iss") != IAP_ISSUER:
            raise IapAuthError(403, "assertion not issued by IAP")
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise IapAuthError(403, "assertion names no user")
        return Caller(email=email, subject=str(claims.get("sub", "")))

    def _key(self, kid: str) -> str:
        with self._lock:
            now = time.monotonic()
            if now - self._fetched_at > self._ttl_s or (
                kid not in self._keys and now - self._fetched_at > self._refresh_interval_s
            ):
                self._keys = self._fetch()
                self._fetched_at = now
            key = self._keys.get(kid)
        if key is None:
            raise IapAuthError(403, "assertion signed with an unknown key")
        return key

    def _fetch(self) -> Mapping[str, str]:
        response: Any = self._transport(self.keys_url, method="GET")
        if response.status != 200:
            raise google.auth.exceptions.TransportError(f"IAP public keys: HTTP {response.status}")
        keys = json.loads(response.data.decode("utf-8"))
        if not isinstance(keys, dict):
            raise google.auth.exceptions.TransportError("IAP public keys: not a JSON object")
        return {str(kid): str(pem) for kid, pem in keys.items()}
