"""Upload tickets: where the browser PUTs each file so that it lands in the inbox bucket.

On Google Cloud a ticket is a V4 signed URL for a PUT straight to Cloud Storage (so the object
finalize event, Eventarc and the whole pipeline run as for any other upload). The console's
runtime account has no private key: the URL is signed through IAM `signBlob`, which it may call
on itself only (terraform/console.tf).

Every ticket binds the file's size: the browser declares it, the console refuses a file without
one or over MAX_IMAGE_BYTES, and the signature covers `x-goog-content-length-range: <size>,<size>`
(Cloud Storage then refuses a PUT of any other length) — or, locally, the size itself.

On the local stack the Cloud Storage emulator answers no CORS preflight, so a browser on the
console's origin cannot PUT to it directly. A ticket there is a console URL, HMAC-signed and
expiring like a real signed URL, that forwards the bytes to the emulator's JSON-API media upload
(`POST {emulator}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=...`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import quote, urlencode

import google.auth
import google.auth.transport.requests
from google.auth.credentials import Credentials
from google.cloud import storage  # type: ignore[attr-defined]
from pydantic import BaseModel, Field

LOCAL_UPLOAD_PATH = "/api/uploads/local"
LENGTH_RANGE_HEADER = "x-goog-content-length-range"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f#\[\]*?]")


class UploadFile(BaseModel):
    """One file the browser wants to upload."""

    name: str = Field(min_length=1, max_length=512, description="the file's name on the user's machine")
    content_type: str = Field(default="", max_length=200)
    size: int | None = Field(default=None, ge=0)


class UploadRequest(BaseModel):
    """A batch of files, optionally under a folder of the user's choosing."""

    files: list[UploadFile] = Field(min_length=1)
    prefix: str = Field(default="", max_length=256)


@dataclass(frozen=True)
class SignedPut:
    """A URL that accepts one PUT, and the headers the PUT must carry (they are signed)."""

    url: str
    headers: dict[str, str]


class UploadTicket(BaseModel):
    """Where and how to send one file."""

    file_name: str
    bucket: str
    object_name: str
    method: str = "PUT"
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    expires_at: datetime | None = None
    error: str | None = None


class UploadResponse(BaseModel):
    """One ticket per requested file, in request order, all in one batch folder."""

    batch: str = Field(description="the batch folder the files land in (upload time plus a random suffix)")
    uploads: list[UploadTicket]


class UploadSigner(Protocol):
    """Issues a URL that accepts one PUT of `name`, with exactly `content_type` and `size` bytes."""

    def sign_put(self, bucket: str, name: str, content_type: str, size: int, ttl: timedelta) -> SignedPut: ...


def clean_segment(text: str) -> str:
    """A file or folder name made safe for an object name (no separators, controls or wildcards)."""
    text = _UNSAFE_CHARS.sub("_", text.replace("\\", "/").split("/")[-1])
    text = " ".join(text.split()).strip()
    if text in ("", ".", ".."):
        return ""
    return text[:200]


def clean_prefix(prefix: str) -> str:
    """A user-supplied folder path, segment by segment."""
    segments = [clean_segment(part) for part in prefix.replace("\\", "/").split("/")]
    return "/".join(s for s in segments if s)[:256]


def normalize_content_type(content_type: str) -> str | None:
    """The content type to sign (lower case, no parameters), or None when malformed.

    The console does not judge the file: the pipeline sniffs the bytes and records a plain-words
    error for anything that is not an image, so a PDF dropped by mistake still gets a job.
    """
    value = content_type.split(";")[0].strip().lower()
    if not value:
        return DEFAULT_CONTENT_TYPE
    return value if _CONTENT_TYPE_RE.match(value) else None


def batch_folder(now: datetime | None = None) -> str:
    """A folder per upload batch, so a file never silently replaces an earlier one of the same name."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class GcsUploadSigner:
    """V4 signed PUT URLs for Cloud Storage.

    With a key-holding credential (a service-account key file) the client signs locally;
    otherwise (Cloud Run, Compute metadata credentials) it signs through IAM `signBlob` as
    `service_account_email`, authenticated by the runtime's access token.
    """

    def __init__(
        self, client: storage.Client, service_account_email: str = "", credentials: Credentials | None = None
    ) -> None:
        self._client = client
        self._email = service_account_email
        if credentials is None:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        self._credentials = credentials

    def _iam_signing_args(self) -> dict[str, str]:
        if getattr(self._credentials, "signer", None) is not None:
            return {}  # a private key is at hand: sign locally
        if not self._credentials.valid:
            self._credentials.refresh(google.auth.transport.requests.Request())
        email = self._email or getattr(self._credentials, "service_account_email", "")
        return {"service_account_email": email, "access_token": str(self._credentials.token)}

    def sign_put(self, bucket: str, name: str, content_type: str, size: int, ttl: timedelta) -> SignedPut:
        blob = self._client.bucket(bucket).blob(name)
        # A signed header: Cloud Storage refuses the PUT unless its body is exactly `size` bytes.
        length = {LENGTH_RANGE_HEADER: f"{size},{size}"}
        url: str = blob.generate_signed_url(
            version="v4",
            expiration=ttl,
            method="PUT",
            content_type=content_type,
            headers=dict(length),  # a copy: the library adds Host to the dict it is given
            api_access_endpoint="https://storage.googleapis.com",
            credentials=self._credentials,
            **self._iam_signing_args(),
        )
        return SignedPut(url, {"Content-Type": content_type, **length})


class LocalUploadSigner:
    """Console-relative upload URLs for the local stack, HMAC-signed with a per-process secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, bucket: str, name: str, content_type: str, size: int, expires: int) -> str:
        message = "\n".join((bucket, name, content_type, str(size), str(expires))).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign_put(self, bucket: str, name: str, content_type: str, size: int, ttl: timedelta) -> SignedPut:
        expires = int(time.time() + ttl.total_seconds())
        sig = self._mac(bucket, name, content_type, size, expires)
        query = urlencode({"size": size, "expires": expires, "sig": sig})
        url = f"{LOCAL_UPLOAD_PATH}/{quote(bucket, safe='')}/{quote(name, safe='/')}?{query}"
        return SignedPut(url, {"Content-Type": content_type})

    def verify(self, bucket: str, name: str, content_type: str, size: int, expires: int, sig: str) -> bool:
        """True when the URL was issued here, for this content type and size, and has not expired."""
        if expires < time.time():
            return False
        return hmac.compare_digest(self._mac(bucket, name, content_type, size, expires), sig)


def issue_tickets(
    request: UploadRequest,
    signer: UploadSigner,
    *,
    bucket: str,
    base_prefix: str,
    ttl: timedelta,
    max_bytes: int,
) -> UploadResponse:
    """A ticket per file: a signed URL bound to its size, or the reason this file cannot be uploaded."""
    batch = batch_folder()
    folder = "/".join(p for p in (clean_prefix(base_prefix), clean_prefix(request.prefix), batch) if p)
    expires_at = datetime.now(UTC) + ttl
    tickets: list[UploadTicket] = []
    seen: set[str] = set()
    for file in request.files:
        base = clean_segment(file.name) or "upload"
        name = f"{folder}/{base}"
        counter = 1
        while name in seen:  # two files of the same name in one batch
            counter += 1
            name = f"{folder}/{counter}-{base}"
        seen.add(name)
        content_type = normalize_content_type(file.content_type)
        ticket = UploadTicket(file_name=file.name, bucket=bucket, object_name=name)
        if content_type is None:
            ticket.error = f"The content type {file.content_type!r} is not valid."
        elif file.size is None:
            ticket.error = "The file's size is needed: an upload URL is signed for one exact size."
        elif file.size > max_bytes:
            ticket.error = f"The file is {file.size} bytes; the limit is {max_bytes} bytes."
        else:
            signed = signer.sign_put(bucket, name, content_type, file.size, ttl)
            ticket.url, ticket.headers, ticket.expires_at = signed.url, signed.headers, expires_at
        tickets.append(ticket)
    return UploadResponse(batch=batch, uploads=tickets)
