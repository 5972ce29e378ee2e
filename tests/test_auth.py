"""Push authentication (issue 4, item 12; issue 11, item 7): OIDC tokens on /pubsub/* signed by a
local key, a small clock skew allowed, and no start on Cloud Run without PUSH_AUDIENCE.

The signing certificates are served as Google serves them ({key id: PEM certificate}) from a
local HTTP server, so the real verifier (google.oauth2.id_token) fetches and checks them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from google.auth import crypt
from google.auth import jwt as google_jwt
from pydantic import ValidationError

from healer_core.schema import JobState
from healer_core.store import JobStore
from healer_media.blobs import GcsBlobSource
from inference_service.app import create_app
from inference_service.settings import Settings
from tests.fakes import FakeEngine
from tests.service_helpers import envelope, png_bytes, serve_json, wait_ready
from tests.test_service import queued_job

REPO = Path(__file__).resolve().parents[1]
AUDIENCE = "https://healer-inference-abc123-ew.a.run.app/pubsub/push"
PUSH_SA = "healer-push@healer-test.iam.gserviceaccount.com"
KID = "test-key-1"


class SigningKey:
    """An RSA key with a self-signed certificate, as Google publishes for its ID tokens."""

    def __init__(self, kid: str = KID) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "healer-test-signer")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.signer = crypt.RSASigner.from_string(pem, key_id=kid)

    def token(self, **override: Any) -> str:
        """A push ID token with valid claims unless overridden (None removes a claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": PUSH_SA,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(override)
        claims = {k: v for k, v in claims.items() if v is not None}
        return google_jwt.encode(self.signer, claims).decode()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey()


@pytest.fixture(scope="module")
def certs_url(key: SigningKey) -> Iterator[str]:
    """A local stand-in for https://www.googleapis.com/oauth2/v1/certs."""
    with serve_json({key.kid: key.cert_pem}, "/oauth2/v1/certs") as url:
        yield url


def auth_settings(project: str, certs_url: str) -> Settings:
    return Settings(
        PROJECT_ID=project,
        BATCH_WINDOW_MS=1,
        PUSH_AUDIENCE=AUDIENCE,
        PUSH_SERVICE_ACCOUNT=PUSH_SA,
        PUSH_CERTS_URL=certs_url,
    )


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(emulator_cfg, certs_url: str, engine: FakeEngine, store: JobStore) -> Iterator[TestClient]:
    settings = auth_settings(emulator_cfg.project, certs_url)
    app = create_app(settings, engine=engine, store=store, blobs=GcsBlobSource(emulator_cfg.project))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def untouched(store: JobStore, job_id: str) -> bool:
    """The job is exactly as ingest left it: nothing leased, failed or written."""
    job = store.get(job_id)
    assert job is not None
    return job.state == JobState.QUEUED and job.attempts == 0 and [e.event for e in job.history] == ["created"]


def test_a_valid_token_is_accepted_on_push_and_dead_letter(client, store, bucket, key, engine) -> None:
    message = queued_job(store, bucket, "authed.png", png_bytes())
    response = client.post("/pubsub/push", json=envelope(message), headers=bearer(key.token()))
    assert response.status_code == 204
    assert store.get(message.job_id).state == JobState.DONE and len(engine.calls) == 1
    # A late dead letter for the finished job: accepted (204, not 401/403) and settled as done.
    response = client.post("/pubsub/dead-letter", json=envelope(message), headers=bearer(key.token()))
    assert response.status_code == 204
    assert store.get(message.job_id).state == JobState.DONE


@pytest.mark.parametrize("route", ["/pubsub/push", "/pubsub/dead-letter"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}],
    ids=["none", "basic", "empty-bearer"],
)
def test_missing_token_is_401_without_a_write(client, store, bucket, engine, route, headers) -> None:
    message = queued_job(store, bucket, "no-token.png", png_bytes())
    response = client.post(route, json=envelope(message), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert untouched(store, message.job_id) and engine.calls == []


FORGERIES = {
    "wrong-audience": lambda key, other: key.token(aud="https://attacker.example/push"),
    "wrong-account": lambda key, other: key.token(email="someone@attacker.example"),
    "email-unverified": lambda key, other: key.token(email_verified=False),
    "no-email": lambda key, other: key.token(email=None),
    "expired": lambda key, other: key.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
    "no-expiry": lambda key, other: key.token(exp=None),
    "not-google": lambda key, other: key.token(iss="https://attacker.example"),
    "forged-signature": lambda key, other: other.token(),  # same key id, another private key
    "unknown-key-id": lambda key, other: SigningKey(kid="rotated-away").token(),
    "tampered-claims": lambda key, other: _tamper(key.token()),
    "garbage": lambda key, other: "not.a.jwt",
}


def _tamper(token: str) -> str:
    """Swap in a payload for another account, keeping the original signature."""
    header, _, signature = token.split(".")
    forged = key_less_payload(email="someone@attacker.example")
    return f"{header}.{forged}.{signature}"


def key_less_payload(**claims: Any) -> str:
    import base64

    now = int(time.time())
    body = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey(kid=KID)


@pytest.mark.parametrize("route", ["/pubsub/push", "/pubsub/dead-letter"])
@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_or_wrong_tokens_are_403_without_a_write(
    client, store, bucket, engine, key, other_key, route, forgery
) -> None:
    message = queued_job(store, bucket, "forged.png", png_bytes())
    token = FORGERIES[forgery](key, other_key)
    response = client.post(route, json=envelope(message), headers=bearer(token))
    assert response.status_code == 403, response.text
    assert untouched(store, message.job_id) and engine.calls == []


def test_unreachable_certificates_are_a_retry_not_a_rejection(emulator_cfg, store, bucket, key) -> None:
    settings = auth_settings(emulator_cfg.project, "http://127.0.0.1:9/certs")  # discard port: refused
    app = create_app(settings, engine=FakeEngine(), store=store, blobs=GcsBlobSource(emulator_cfg.project))
    with TestClient(app) as c:
        wait_ready(c)
        message = queued_job(store, bucket, "certs-down.png", png_bytes())
        response = c.post("/pubsub/push", json=envelope(message), headers=bearer(key.token()))
    assert response.status_code == 503
    assert untouched(store, message.job_id)


def test_predict_and_health_need_no_push_token(client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.post("/predict", files={"image_file": ("t.png", png_bytes(), "image/png")}).status_code == 200


def test_an_audience_without_a_service_account_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="PUSH_SERVICE_ACCOUNT"):
        Settings(PUSH_AUDIENCE=AUDIENCE)


# ---- issue 11, item 7: clock skew, and fail closed on Cloud Run ---------------------------------


@pytest.mark.parametrize(
    ("iat_offset", "exp_offset"),
    [(5, 3600), (0, -5)],
    ids=["issued-5s-ahead-of-our-clock", "expired-5s-ago"],
)
def test_a_small_clock_skew_is_tolerated(
    client: TestClient, store: JobStore, bucket: Any, key: SigningKey, iat_offset: int, exp_offset: int
) -> None:
    now = int(time.time())
    message = queued_job(store, bucket, "skewed.png", png_bytes())
    token = key.token(iat=now + iat_offset, exp=now + exp_offset)
    response = client.post("/pubsub/push", json=envelope(message), headers=bearer(token))
    assert response.status_code == 204, response.text


def test_a_token_from_well_beyond_the_skew_is_refused(
    client: TestClient, store: JobStore, bucket: Any, key: SigningKey
) -> None:
    now = int(time.time())
    message = queued_job(store, bucket, "future.png", png_bytes())
    token = key.token(iat=now + 120, exp=now + 3720)
    assert client.post("/pubsub/push", json=envelope(message), headers=bearer(token)).status_code == 403
    assert untouched(store, message.job_id)


def test_on_cloud_run_without_push_audience_the_service_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="K_SERVICE"):
        Settings(K_SERVICE="healer-medgemma-service")
    configured = Settings(K_SERVICE="healer-medgemma-service", PUSH_AUDIENCE=AUDIENCE, PUSH_SERVICE_ACCOUNT=PUSH_SA)
    assert configured.push_audience == AUDIENCE
    # The real start-up path: the app factory, reading the environment as Cloud Run provides it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSH_")}
    env.update(K_SERVICE="healer-medgemma-service", PYTHONPATH=str(REPO))
    started = subprocess.run(
        [sys.executable, "-c", "from inference_service.app import create_app; create_app()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0 and "PUSH_AUDIENCE" in started.stderr
