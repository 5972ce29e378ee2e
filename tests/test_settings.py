"""The service refuses, at start-up, settings that cannot work together — naming the variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inference_service.settings import Settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"INFERENCE_BUDGET_SECONDS": 300, "LEASE_SECONDS": 300}, ["INFERENCE_BUDGET_SECONDS", "LEASE_SECONDS"]),
        ({"INFERENCE_BUDGET_SECONDS": 400}, ["INFERENCE_BUDGET_SECONDS", "LEASE_SECONDS"]),
        ({"SHUTDOWN_GRACE_SECONDS": 8}, ["SHUTDOWN_GRACE_SECONDS", "SERVER_SHUTDOWN_SECONDS"]),
        (
            {"K_SERVICE": "svc", "PUSH_AUDIENCE": "a", "PUSH_SERVICE_ACCOUNT": "p@x", "SERVER_SHUTDOWN_SECONDS": 10},
            ["SERVER_SHUTDOWN_SECONDS"],
        ),
        ({"DTYPE": "float16"}, ["DTYPE=float16"]),
        ({"MAX_BATCH_SIZE": 16, "MAX_QUEUE": 8}, ["MAX_BATCH_SIZE", "MAX_QUEUE"]),
        ({"MAX_BATCH_SIZE": 0}, ["MAX_BATCH_SIZE"]),
        ({"MAX_BATCH_SIZE": 257, "MAX_QUEUE": 1000}, ["MAX_BATCH_SIZE"]),
        ({"BATCH_WINDOW_MS": -1}, ["BATCH_WINDOW_MS"]),
        ({"BATCH_WINDOW_MS": 5000}, ["BATCH_WINDOW_MS"]),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_variable(
    env: dict[str, object], named: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    with pytest.raises(ValidationError) as caught:
        Settings()
    for name in named:
        assert name in str(caught.value)


def test_the_defaults_and_the_edges_of_the_chain_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().inference_budget_seconds < Settings().lease_seconds
    monkeypatch.setenv("INFERENCE_BUDGET_SECONDS", "299")
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "7.5")
    monkeypatch.setenv("MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("MAX_QUEUE", "64")
    settings = Settings()
    assert (settings.inference_budget_seconds, settings.max_batch_size) == (299, 64)
