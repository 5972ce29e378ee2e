"""The official Google clients a command needs, and the ingest code it shares with the functions.

Built on first use from a command's Settings and imported lazily by the commands, so
`healer --help` never loads the Google libraries. Whatever ingests or publishes goes through the
ingest package's own functions, with its own settings (`IngestSettings`: the same environment
variables and defaults the deployed function reads), aimed at this command's target.
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING

from healer.cli.errors import CliError
from healer.cli.settings import Settings, ingest_importable

if TYPE_CHECKING:
    from google.cloud import storage as gcs  # type: ignore[attr-defined]
    from healer_ingest.config import IngestSettings
    from healer_ingest.ingest import IngestResult
    from healer_ingest.kinds import Classifier
    from healer_ingest.publisher import Publisher

    from healer_core.schema import Job
    from healer_core.store import JobStore


class Clients:
    """Storage, the job store and the jobs-topic publisher for one set of Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ingest_importable()  # the ingest package's code, imported by the methods below

    @cached_property
    def storage(self) -> gcs.Client:
        from google.cloud import storage  # type: ignore[attr-defined]

        return storage.Client(project=self.settings.project)

    def bucket(self) -> gcs.Bucket:
        """The inbox bucket, checked to exist (one clear error if not)."""
        from google.api_core import exceptions as gexc

        try:
            return self.storage.get_bucket(self.settings.bucket)
        except gexc.NotFound as exc:
            raise CliError(
                f"bucket {self.settings.bucket!r} not found in project {self.settings.project}: "
                "check --bucket (terraform output inbox_bucket)"
            ) from exc

    @cached_property
    def ingest(self) -> IngestSettings:
        """The ingest function's settings aimed at this target: the project, topic, collection and
        database from the target; limits, grace periods, TTL and timeouts from the environment."""
        from healer_ingest.config import IngestSettings
        from pydantic import ValidationError

        s = self.settings
        try:
            return IngestSettings(
                project_id=s.project, jobs_topic=s.topic, jobs_collection=s.collection, firestore_database=s.database
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise CliError(f"invalid ingest setting in the environment: {problems}") from exc

    @cached_property
    def store(self) -> JobStore:
        from healer_ingest.clients import job_store

        return job_store(self.ingest)

    @cached_property
    def publisher(self) -> Publisher:
        """Job messages to their task's topic (images to the jobs topic, slides to the slides topic)."""
        from healer_ingest.clients import jobs_publisher

        return jobs_publisher(self.ingest)

    @cached_property
    def classifier(self) -> Classifier:
        """Tells slides from images as the ingest function does (a ranged read of each object)."""
        from healer_ingest.clients import classifier

        return classifier(self.ingest, self.storage)

    def publish(self, job: Job) -> str:
        """Publish the job's message and record the publish on it (as ingest and the sweep do)."""
        from healer_ingest.publisher import publish_job

        return publish_job(self.store, self.publisher, job)

    def ingest_blob(self, blob: gcs.Blob, event_id: str) -> IngestResult:
        """Ingest one object generation exactly as the ingest function would (admission included)."""
        from healer_ingest.event import object_from_blob
        from healer_ingest.ingest import ingest_object

        return ingest_object(
            object_from_blob(blob),
            event_id=event_id,
            store=self.store,
            publisher=self.publisher,
            max_image_bytes=self.ingest.max_image_bytes,
            classifier=self.classifier,
        )

    def reconcile(self, prefix: str | None, unpublished_grace_s: float | None = None) -> Counter[str]:
        """Run the scheduled reconcile function's code on this target's bucket (or a prefix of it)."""
        from healer_ingest.reconcile import reconcile_bucket

        settings = self.ingest
        if unpublished_grace_s is not None:
            settings = settings.model_copy(update={"unpublished_grace_seconds": unpublished_grace_s})
        return reconcile_bucket(
            self.storage,
            self.settings.bucket,
            prefix,
            store=self.store,
            publisher=self.publisher,
            settings=settings,
            classifier=self.classifier,
        )
