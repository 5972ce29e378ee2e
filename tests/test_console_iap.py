"""The console behind IAP (issue 11, item 9): the signed assertion is verified, the email header
is never trusted, and who asked for upload URLs and previews is logged without object names.

IAP's assertions are ES256 JWTs; here they are signed with a P-256 key generated for the test,
and the public key is served as IAP serves its own (https://www.gstatic.com/iap/verify/public_key:
{key id: PEM public key}), so the real verifier (google.auth.jwt) fetches and checks it.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from google.auth import crypt
from google.auth import jwt as google_jwt
from PIL import Image
from pydantic import ValidationError

from console.backend.app import create_app
from console.backend.iap import IAP_HEADER, IAP_ISSUER
from console.backend.settings import ConsoleSettings
from healer.stack.config import StackConfig
from healer_core.schema import ErrorCode, Job
from healer_core.store import JobStore
from tests.console_helpers import console_settings
from tests.log_privacy import PATIENT, captured_logs
from tests.service_helpers import serve_json

pytestmark = pytest.mark.emulator

AUDIENCE = "/projects/123456789012/locations/europe-west1/services/healer-console"
USER = "pathologist@lab.example.org"
KID = "iap-test-key"


def _pem_private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    encoding, private_format = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, private_format, serialization.NoEncryption())


class IapKey:
    """A P-256 key that signs assertions the way IAP does."""

    def __init__(self, kid: str = KID) -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_pem = (
            self.key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.signer = crypt.ES256Signer.from_string(_pem_private(self.key), key_id=kid)

    def assertion(self, **override: Any) -> str:
        """IAP's claims for USER and AUDIENCE unless overridden (None removes a claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": IAP_ISSUER,
            "aud": AUDIENCE,
            "sub": "accounts.google.com:1234567890",
            "email": USER,
            "iat": now,
            "exp": now + 600,
        }
        claims.update(override)
        return google_jwt.encode(self.signer, {k: v for k, v in claims.items() if v is not None}).decode()


@pytest.fixture(scope="module")
def key() -> IapKey:
    return IapKey()


@pytest.fixture(scope="module")
def keys_url(key: IapKey) -> Iterator[str]:
    """A local stand-in for https://www.gstatic.com/iap/verify/public_key."""
    with serve_json({key.kid: key.public_pem}, "/iap/verify/public_key") as url:
        yield url


def iap_settings(emulator_cfg: StackConfig, bucket: Any, store: JobStore, tmp_path: Path, keys: str) -> ConsoleSettings:
    return console_settings(
        emulator_cfg, bucket, store, tmp_path / "no-dist", IAP_AUDIENCE=AUDIENCE, IAP_CERTS_URL=keys
    )


@pytest.fixture
def client(
    emulator_cfg: StackConfig, bucket: Any, store: JobStore, tmp_path: Path, keys_url: str
) -> Iterator[TestClient]:
    settings = iap_settings(emulator_cfg, bucket, store, tmp_path, keys_url)
    with TestClient(create_app(settings, store=store)) as test_client:
        yield test_client


@pytest.fixture
def log_lines() -> Iterator[list[logging.LogRecord]]:
    with captured_logs() as capture:
        yield capture.records


def signed_in(key: IapKey, **override: Any) -> dict[str, str]:
    return {IAP_HEADER: key.assertion(**override)}


ROUTES = ["/api/config", "/api/jobs", "/api/jobs/somejob", "/api/jobs/somejob/preview.png", "/", "/jobs/x"]


@pytest.mark.parametrize("route", ROUTES)
def test_without_an_assertion_nothing_but_liveness_answers(client: TestClient, route: str) -> None:
    spoofed = {"X-Goog-Authenticated-User-Email": f"accounts.google.com:{USER}"}
    assert client.get(route, headers=spoofed).status_code == 401
    assert client.post("/api/uploads", json={"files": [{"name": "a.png", "size": 1}]}).status_code == 401
    assert client.get("/healthz").status_code == 200  # Cloud Run's probes never pass through IAP


def test_the_user_comes_from_the_verified_assertion_not_the_email_header(client: TestClient, key: IapKey) -> None:
    headers = {**signed_in(key), "X-Goog-Authenticated-User-Email": "accounts.google.com:intruder@evil.example"}
    response = client.get("/api/config", headers=headers)
    assert response.status_code == 200 and response.json()["user"] == USER
    assert client.get("/api/jobs", headers=signed_in(key)).status_code == 200


def _rsa_signed(**claims: Any) -> str:
    signer = crypt.RSASigner.from_string(_pem_private(rsa.generate_private_key(65537, 2048)), key_id=KID)
    now = int(time.time())
    claims = {"iss": IAP_ISSUER, "aud": AUDIENCE, "email": USER, "iat": now, "exp": now + 600}
    return google_jwt.encode(signer, claims).decode()


FORGERIES = {
    "wrong-audience": lambda key: key.assertion(aud="/projects/1/locations/x/services/other"),
    "not-iap": lambda key: key.assertion(iss="https://accounts.google.com"),
    "expired": lambda key: key.assertion(iat=int(time.time()) - 3600, exp=int(time.time()) - 1800),
    "issued-in-the-future": lambda key: key.assertion(iat=int(time.time()) + 600, exp=int(time.time()) + 1200),
    "no-email": lambda key: key.assertion(email=None),
    "other-key-same-id": lambda key: IapKey(kid=KID).assertion(),
    "unknown-key-id": lambda key: IapKey(kid="rotated-away").assertion(),
    "rs256": lambda key: _rsa_signed(),
    "garbage": lambda key: "not.a.jwt",
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_or_foreign_assertions_are_refused(client: TestClient, key: IapKey, forgery: str) -> None:
    response = client.get("/api/config", headers={IAP_HEADER: FORGERIES[forgery](key)})
    assert response.status_code == 403, response.text


def test_unreachable_keys_are_a_retry_not_a_refusal(
    emulator_cfg: StackConfig, bucket: Any, store: JobStore, tmp_path: Path, key: IapKey
) -> None:
    settings = iap_settings(emulator_cfg, bucket, store, tmp_path, "http://127.0.0.1:9/public_key")
    with TestClient(create_app(settings, store=store)) as test_client:
        assert test_client.get("/api/config", headers=signed_in(key)).status_code == 503


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 60, 90)).save(out, format="PNG")
    return out.getvalue()


def test_who_asked_for_upload_urls_and_previews_is_logged_without_names(
    client: TestClient, key: IapKey, bucket: Any, store: JobStore, log_lines: list[logging.LogRecord]
) -> None:
    data = _png((40, 30))
    files = [{"name": f"{PATIENT}-slide.png", "content_type": "image/png", "size": len(data)}]
    body = client.post("/api/uploads", json={"files": files, "prefix": PATIENT}, headers=signed_in(key)).json()
    issued = [r for r in log_lines if r.getMessage() == "upload URLs issued"]
    assert len(issued) == 1
    assert (issued[0].user, issued[0].batch, issued[0].files, issued[0].signed) == (USER, body["batch"], 1, 1)  # type: ignore[attr-defined]
    ticket = body["uploads"][0]  # the local stack's upload route forwards to the emulator (with httpx)
    put = client.put(ticket["url"], content=data, headers={**ticket["headers"], **signed_in(key)})
    assert put.status_code == 200, put.text

    name = f"{PATIENT}/slide.png"
    blob = bucket.blob(name)
    blob.upload_from_string(_png((40, 30)), content_type="image/png")
    store.create(Job(job_id="previewjob1", bucket=bucket.name, name=name, generation=int(blob.generation)))
    assert client.get("/api/jobs/previewjob1/preview.png", headers=signed_in(key)).status_code == 200
    previewed = [r for r in log_lines if r.getMessage() == "preview requested"]
    assert [(r.user, r.job_id) for r in previewed] == [(USER, "previewjob1")]  # type: ignore[attr-defined]
    # Everything the console logged (the test's own HTTP client, httpx2, logs its URLs: not ours).
    ours = [vars(r) for r in log_lines if r.name != "httpx2"]
    assert PATIENT not in json.dumps(ours, default=str), "an object or file name reached a log record"


def test_a_preview_that_needs_more_than_the_decode_budget_is_refused_with_its_code(
    emulator_cfg: StackConfig, bucket: Any, store: JobStore, tmp_path: Path
) -> None:
    name = "budget/large-rgba.png"
    blob = bucket.blob(name)
    out = io.BytesIO()
    Image.new("RGBA", (3000, 3000), (1, 2, 3, 4)).save(out, format="PNG")
    blob.upload_from_string(out.getvalue(), content_type="image/png")
    store.create(Job(job_id="bigpreview", bucket=bucket.name, name=name, generation=int(blob.generation)))
    settings = console_settings(emulator_cfg, bucket, store, tmp_path / "no-dist", DECODE_MEMORY_MB=16)
    with TestClient(create_app(settings, store=store)) as test_client:
        response = test_client.get("/api/jobs/bigpreview/preview.png")
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == ErrorCode.DECOMPRESSION_BOMB


def test_on_cloud_run_the_console_refuses_to_start_without_a_way_to_check_callers() -> None:
    with pytest.raises(ValidationError, match="IAP_AUDIENCE"):
        ConsoleSettings(K_SERVICE="healer-console")
    with pytest.raises(ValidationError, match="IAP_AUDIENCE"):
        ConsoleSettings(CONSOLE_ACCESS="iap")
    assert ConsoleSettings(K_SERVICE="healer-console", IAP_AUDIENCE=AUDIENCE).iap_audience == AUDIENCE
    assert ConsoleSettings(K_SERVICE="healer-console", CONSOLE_ACCESS="invoker").console_access == "invoker"
