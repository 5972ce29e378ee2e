"""The official Google clients a command needs, built on first use from its Settings.

Imported lazily by the commands, so `healer --help` never loads the Google libraries.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from healer.cli.settings import Settings, ingest_importable

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]
    from healer_ingest.publisher import PubSubPublisher

    from healer_core.store import JobStore


class Clients:
    """Storage, the job store and the jobs-topic publisher for one set of Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def storage(self) -> storage.Client:
        from google.cloud import storage  # type: ignore[attr-defined]

        return storage.Client(project=self.settings.project)

    def bucket(self) -> storage.Bucket:  # type: ignore[name-defined]
        """The inbox bucket, checked to exist (one clear error if not)."""
        from google.api_core import exceptions as gexc

        from healer.cli.errors import CliError

        try:
            return self.storage.get_bucket(self.settings.bucket)
        except gexc.NotFound as exc:
            raise CliError(
                f"bucket {self.settings.bucket!r} not found in project {self.settings.project}: "
                "check --bucket (terraform output inbox_bucket)"
            ) from exc

    @cached_property
    def store(self) -> JobStore:
        from healer_core.store import JobStore, new_client

        return JobStore(new_client(self.settings.project, self.settings.database), self.settings.collection)

    @cached_property
    def publisher(self) -> PubSubPublisher:
        ingest_importable()
        from healer_ingest.publisher import PubSubPublisher

        return PubSubPublisher(self.settings.project, self.settings.topic)
