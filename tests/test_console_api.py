"""The console backend against the emulators: listing, detail, previews, upload tickets."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from console.backend.app import create_app
from console.backend.settings import ConsoleSettings
from console.backend.uploads import GcsUploadSigner, LocalUploadSigner, clean_prefix, clean_segment
from healer_core.schema import ERROR_DESCRIPTIONS, ErrorCode, Job, JobError, JobState, Timings, Verdict
from healer_core.store import JobStore
from tests.console_helpers import console_settings


def _png(size: tuple[int, int], color: tuple[int, int, int] = (200, 80, 140)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _upload(bucket: Any, name: str, data: bytes, content_type: str = "image/png") -> int:
    blob = bucket.blob(name)
    blob.upload_from_string(data, content_type=content_type)
    blob.reload()
    return int(blob.generation)


def _job(bucket: str, name: str, generation: int, job_id: str) -> Job:
    return Job(job_id=job_id, bucket=bucket, name=name, generation=generation, content_type="image/png")


def _finish(store: JobStore, job_id: str, answer: str, p_yes: float) -> None:
    lease = store.lease(job_id, "test-worker", 60)
    verdict = Verdict(
        answer=answer,
        p_yes=p_yes,
        explanation=f"Synthetic {answer} verdict.",
        model_id="tiny/gemma3",
        prompt_version="v-test",
        timings_ms=Timings(download=1, decode=2, queue=3, inference=40, total=46),
    )
    assert store.finish(job_id, lease.token, verdict)


@pytest.fixture
def settings(bucket: Any, store: JobStore, emulator_cfg: Any, tmp_path: Path) -> ConsoleSettings:
    return console_settings(emulator_cfg, bucket, store, tmp_path / "no-dist")


@pytest.fixture
def client(settings: ConsoleSettings, store: JobStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=store)) as test_client:
        yield test_client


@pytest.fixture
def seeded(bucket: Any, store: JobStore, sample_paths: list[Path]) -> dict[str, str]:
    """Four jobs: two done (yes/no), one failed (not an image), one queued. Returns name → job_id."""
    ids: dict[str, str] = {}
    big = _png((1200, 900))
    specs = [
        ("slides/case-17/tumor-a.png", big, "done-yes"),
        ("slides/case-17/normal-b.tif", sample_paths[0].read_bytes(), "done-no"),
        ("slides/case-18/report.pdf", b"%PDF-1.4 not an image", "failed"),
        ("slides/case-18/pending.png", _png((64, 64)), "queued"),
    ]
    for index, (name, data, kind) in enumerate(specs):
        generation = _upload(bucket, name, data)
        job_id = f"job{index}{kind.replace('-', '')}"
        store.create(_job(bucket.name, name, generation, job_id))
        if kind == "done-yes":
            _finish(store, job_id, "yes", 0.91)
        elif kind == "done-no":
            _finish(store, job_id, "no", 0.12)
        elif kind == "failed":
            error = JobError(code=ErrorCode.NOT_AN_IMAGE, message="The file is a PDF document, not an image.")
            store.fail_unless_done(job_id, error)
        ids[name] = job_id
    return ids


def test_healthz_and_no_frontend_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and "make console-build" in page.text
    assert client.get("/api/nothing-here").status_code == 404


def test_config_exposes_error_descriptions(client: TestClient, settings: ConsoleSettings) -> None:
    body = client.get("/api/config", headers={"X-Goog-Authenticated-User-Email": "accounts.google.com:a@b.org"}).json()
    assert body["bucket"] == settings.bucket and body["local"] is True
    assert body["user"] == "", "the unsigned IAP email header is never trusted (tests/test_console_iap.py)"
    assert body["error_descriptions"]["decompression_bomb"] == ERROR_DESCRIPTIONS[ErrorCode.DECOMPRESSION_BOMB]


def test_list_filters_search_and_pagination(client: TestClient, seeded: dict[str, str]) -> None:
    everything = client.get("/api/jobs").json()
    assert {item["name"] for item in everything["items"]} == set(seeded)
    assert everything["counts"] == {"queued": 1, "running": 0, "done": 2, "failed": 1}
    # Newest first.
    assert everything["items"][0]["name"] == "slides/case-18/pending.png"

    done = client.get("/api/jobs", params={"state": "done"}).json()["items"]
    assert {item["name"] for item in done} == {"slides/case-17/tumor-a.png", "slides/case-17/normal-b.tif"}

    yes = client.get("/api/jobs", params={"answer": "yes"}).json()["items"]
    assert [item["name"] for item in yes] == ["slides/case-17/tumor-a.png"]
    assert yes[0]["p_yes"] == pytest.approx(0.91)
    assert yes[0]["model_id"] == "tiny/gemma3" and yes[0]["prompt_version"] == "v-test"
    assert yes[0]["timings_ms"]["inference"] == 40

    search = client.get("/api/jobs", params={"q": "CASE-18"}).json()["items"]
    assert {item["name"] for item in search} == {"slides/case-18/report.pdf", "slides/case-18/pending.png"}
    assert client.get("/api/jobs", params={"q": "case-18", "state": "failed"}).json()["items"][0]["state"] == "failed"

    first = client.get("/api/jobs", params={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next_offset"] == 3
    rest = client.get("/api/jobs", params={"limit": 3, "offset": first["next_offset"]}).json()
    assert len(rest["items"]) == 1 and rest["next_offset"] is None
    names = [i["name"] for i in first["items"] + rest["items"]]
    assert sorted(names) == sorted(seeded)

    assert client.get("/api/jobs", params={"state": "bogus"}).status_code == 422
    assert client.get("/api/jobs", params={"limit": 0}).status_code == 422


def test_detail_has_verdict_and_history(client: TestClient, seeded: dict[str, str]) -> None:
    job_id = seeded["slides/case-17/tumor-a.png"]
    body = client.get(f"/api/jobs/{job_id}").json()
    assert body["state"] == "done" and body["verdict"]["answer"] == "yes"
    assert body["verdict"]["explanation"] == "Synthetic yes verdict."
    assert [entry["event"] for entry in body["history"]] == ["created", "leased", "done"]
    assert body["lease"] is None
    assert client.get("/api/jobs/doesnotexist").status_code == 404
    assert client.get("/api/jobs/bad%20id").status_code == 422


def test_failed_job_explains_its_error(client: TestClient, seeded: dict[str, str]) -> None:
    job_id = seeded["slides/case-18/report.pdf"]
    detail = client.get(f"/api/jobs/{job_id}").json()
    assert detail["state"] == JobState.FAILED
    assert detail["error"]["code"] == "not_an_image"
    assert detail["error"]["description"] == ERROR_DESCRIPTIONS[ErrorCode.NOT_AN_IMAGE]
    row = client.get("/api/jobs", params={"state": "failed"}).json()["items"][0]
    assert row["error_description"] == ERROR_DESCRIPTIONS[ErrorCode.NOT_AN_IMAGE]
    # The preview refuses the same bytes, in the same words.
    preview = client.get(f"/api/jobs/{job_id}/preview.png")
    assert preview.status_code == 422
    assert preview.json()["detail"]["code"] == "not_an_image"


def test_preview_is_a_downscaled_png_not_the_upload(
    client: TestClient, seeded: dict[str, str], bucket: Any, sample_paths: list[Path]
) -> None:
    big = client.get(f"/api/jobs/{seeded['slides/case-17/tumor-a.png']}/preview.png")
    assert big.status_code == 200 and big.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(big.content))
    assert image.format == "PNG" and max(image.size) == 512 and image.size == (512, 384)
    assert big.content != bucket.blob("slides/case-17/tumor-a.png").download_as_bytes()

    tif = client.get(f"/api/jobs/{seeded['slides/case-17/normal-b.tif']}/preview.png")
    assert tif.status_code == 200
    assert Image.open(io.BytesIO(tif.content)).format == "PNG"
    assert tif.content != sample_paths[0].read_bytes()
    assert max(Image.open(io.BytesIO(tif.content)).size) <= 512


def test_preview_of_a_replaced_generation_is_gone(client: TestClient, seeded: dict[str, str], bucket: Any) -> None:
    _upload(bucket, "slides/case-18/pending.png", _png((32, 32), (0, 0, 0)))
    response = client.get(f"/api/jobs/{seeded['slides/case-18/pending.png']}/preview.png")
    assert response.status_code == 404


def test_upload_tickets_land_in_the_inbox(client: TestClient, bucket: Any) -> None:
    data = _png((40, 30))
    files: list[dict[str, Any]] = [
        {"name": "slide 1.png", "content_type": "image/png", "size": len(data)},
        {"name": "../../etc/passwd", "content_type": "image/tiff", "size": 10},
        {"name": "slide 1.png", "content_type": "", "size": 10},
        {"name": "huge.tif", "content_type": "image/tiff", "size": 10**12},
        {"name": "odd.bin", "content_type": "not a type", "size": 10},
        {"name": "unsized.png", "content_type": "image/png"},
    ]
    body = client.post("/api/uploads", json={"files": files, "prefix": "case 19/../x"}).json()
    tickets = body["uploads"]
    assert [t["file_name"] for t in tickets] == [f["name"] for f in files]
    first, traversal, duplicate, huge, odd, unsized = tickets
    assert first["object_name"].startswith(f"console/case 19/x/{body['batch']}/")
    assert first["object_name"].endswith("/slide 1.png")
    assert traversal["object_name"].endswith("/passwd") and ".." not in traversal["object_name"]
    assert duplicate["object_name"] != first["object_name"]
    assert duplicate["headers"] == {"Content-Type": "application/octet-stream"}
    assert huge["url"] is None and "limit" in huge["error"]
    assert odd["url"] is None and "content type" in odd["error"]
    assert unsized["url"] is None and "size" in unsized["error"], "an unsigned size is refused"

    put = client.put(first["url"], content=data, headers=first["headers"])
    assert put.status_code == 200, put.text
    stored = bucket.get_blob(first["object_name"])
    assert stored is not None and stored.download_as_bytes() == data
    assert stored.content_type == "image/png"
    assert put.json()["name"] == first["object_name"] and str(put.json()["generation"]).isdigit()

    # The ticket is bound to its content type and signature.
    assert client.put(first["url"], content=data, headers={"Content-Type": "text/html"}).status_code == 403
    tampered = first["url"].replace("slide%201.png", "other.png")
    assert client.put(tampered, content=data, headers=first["headers"]).status_code == 403

    assert client.post("/api/uploads", json={"files": []}).status_code == 422


def test_a_local_ticket_is_bound_to_its_exact_size(client: TestClient, bucket: Any) -> None:
    data = _png((40, 30))
    files = [{"name": "sized.png", "content_type": "image/png", "size": len(data)}]
    ticket = client.post("/api/uploads", json={"files": files}).json()["uploads"][0]
    assert parse_qs(urlsplit(ticket["url"]).query)["size"] == [str(len(data))]
    longer, shorter = data + b"\0" * 10, data[:-10]
    assert client.put(ticket["url"], content=longer, headers=ticket["headers"]).status_code == 400
    assert client.put(ticket["url"], content=shorter, headers=ticket["headers"]).status_code == 400

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is checked as the body streams
        yield data
        yield b"\0" * 10

    assert client.put(ticket["url"], content=chunks(), headers=ticket["headers"]).status_code == 413
    resized = ticket["url"].replace(f"size={len(data)}", f"size={len(longer)}")
    assert client.put(resized, content=longer, headers=ticket["headers"]).status_code == 403
    assert bucket.get_blob(ticket["object_name"]) is None, "a refused upload left an object"
    assert client.put(ticket["url"], content=data, headers=ticket["headers"]).status_code == 200
    assert bucket.get_blob(ticket["object_name"]).download_as_bytes() == data


def test_local_tickets_expire() -> None:
    signer = LocalUploadSigner(b"k" * 32)
    signed = signer.sign_put("b", "a/b.png", "image/png", 10, ttl=timedelta(seconds=60))
    query = parse_qs(urlsplit(signed.url).query)
    expires, sig = int(query["expires"][0]), query["sig"][0]
    assert signer.verify("b", "a/b.png", "image/png", 10, expires, sig)
    assert not signer.verify("b", "a/b.png", "image/png", 10, 1, sig)
    assert not signer.verify("b", "a/b.png", "image/jpeg", 10, expires, sig)
    assert not signer.verify("b", "a/b.png", "image/png", 11, expires, sig)


def test_gcs_signer_makes_v4_put_urls(emulator_cfg: Any) -> None:
    """The Cloud path with a key-holding credential (signed locally, no network)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.cloud import storage  # type: ignore[attr-defined]
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credentials = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "client_email": "console@healer-test.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )
    client = storage.Client(project=emulator_cfg.project, credentials=credentials)
    signer = GcsUploadSigner(client, credentials=credentials)
    signed = signer.sign_put("inbox", "console/x/slide 1.png", "image/png", 1234, timedelta(minutes=15))
    parts = urlsplit(signed.url)
    query = parse_qs(parts.query)
    assert parts.scheme == "https" and parts.netloc == "storage.googleapis.com"
    assert parts.path == "/inbox/console/x/slide%201.png"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["900"]
    assert query["X-Goog-Credential"][0].startswith("console@healer-test.iam.gserviceaccount.com/")
    # The size is signed: Cloud Storage refuses a PUT whose length is not exactly 1234 bytes.
    assert set(query["X-Goog-SignedHeaders"][0].split(";")) >= {"content-type", "x-goog-content-length-range"}
    assert signed.headers == {"Content-Type": "image/png", "x-goog-content-length-range": "1234,1234"}


def test_name_cleaning() -> None:
    assert clean_segment("C:\\slides\\a.tif") == "a.tif"
    assert clean_segment("..") == ""
    assert clean_segment("we\x00ird*[1].png") == "we_ird__1_.png"
    assert clean_prefix("/a//b/../c/") == "a/b/c"
