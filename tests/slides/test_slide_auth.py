"""The slide service's push routes verify the push subscription's OIDC token exactly as the
inference service's do (the same verifier): a locally signed key, certificates served as Google
serves them, the emulators behind."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from healer_core.schema import JobMessage, JobState, Task
from healer_core.store import JobStore
from slide_service.app import create_app
from slide_service.settings import SlideSettings
from tests.slides.pipeline import push_body
from tests.test_auth import AUDIENCE, PUSH_SA, SigningKey, bearer, certs_url, key  # noqa: F401 (fixtures)

pytestmark = pytest.mark.emulator

FINALIZE = JobMessage.for_object("inbox", "lab/case.svs", 7).for_task(Task.FINALIZE)


@pytest.fixture
def client(emulator_cfg, certs_url: str, store: JobStore) -> Iterator[TestClient]:  # noqa: F811
    settings = SlideSettings(
        PROJECT_ID=emulator_cfg.project,
        JOBS_COLLECTION=store.collection.id,
        PUSH_AUDIENCE=AUDIENCE,
        PUSH_SERVICE_ACCOUNT=PUSH_SA,
        PUSH_CERTS_URL=certs_url,
    )
    with TestClient(create_app(settings, store=store)) as c:
        yield c


def post(client: TestClient, route: str, headers: dict[str, str] | None = None) -> int:
    return client.post(f"/pubsub/{route}", content=json.dumps(push_body(FINALIZE)), headers=headers or {}).status_code


@pytest.mark.parametrize("route", ["push", "dead-letter"])
def test_pushes_without_a_valid_token_are_refused_before_firestore(
    client: TestClient,
    store: JobStore,
    key: SigningKey,  # noqa: F811
    route: str,
) -> None:
    assert post(client, route) == 401
    assert post(client, route, bearer(key.token(aud="https://someone-else.example/"))) == 403
    assert post(client, route, bearer(key.token(email="intruder@example.com"))) == 403
    assert store.get(FINALIZE.job_id) is None  # nothing was written


def test_a_valid_token_is_accepted(client: TestClient, store: JobStore, key: SigningKey) -> None:  # noqa: F811
    assert post(client, "push", bearer(key.token())) == 204  # a finalize for no slide: nothing due
    assert post(client, "dead-letter", bearer(key.token())) == 204  # recorded: nothing is lost
    job = store.get(FINALIZE.job_id)
    assert job.state == JobState.FAILED and job.error.code == "dead_lettered"


def test_on_cloud_run_push_authentication_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_SERVICE", "healer-slide")
    monkeypatch.delenv("PUSH_AUDIENCE", raising=False)
    with pytest.raises(ValidationError, match="PUSH_AUDIENCE"):
        SlideSettings()
    with pytest.raises(ValidationError, match="PUSH_SERVICE_ACCOUNT"):
        SlideSettings(PUSH_AUDIENCE=AUDIENCE)
