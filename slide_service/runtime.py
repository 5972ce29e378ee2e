"""The slide service's long-lived state, built once per process: settings and clients.

No model, no OpenSlide handle: the service process only coordinates (Firestore, Cloud Storage,
Pub/Sub); every OpenSlide call runs in a child process (`isolation`, `shards.parallel_shards`).
"""

from __future__ import annotations

import os
import socket
import uuid
from functools import cached_property

from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.publisher import Publisher
from healer_core.slide_store import SlideStore
from healer_core.store import JobStore, open_job_store
from healer_core.topics import topic_router
from slide_service.artifacts import Objects
from slide_service.settings import SlideSettings

MAX_DEFAULT_PROCESSES = 4


class SlideRuntime:
    """Clients are built on first use; tests inject emulator-backed ones."""

    def __init__(
        self,
        settings: SlideSettings,
        store: JobStore | None = None,
        storage_client: storage.Client | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._storage = storage_client
        self._publisher = publisher
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.ready = False
        self.draining = False

    @cached_property
    def store(self) -> SlideStore:
        if self._store is not None:
            return SlideStore.of(self._store)
        return SlideStore.of(open_job_store(self.settings))

    @cached_property
    def storage(self) -> storage.Client:
        return self._storage if self._storage is not None else storage.Client(project=self.settings.project_id)

    @cached_property
    def objects(self) -> Objects:
        return Objects(self.storage)

    @cached_property
    def publisher(self) -> Publisher:
        """Shard messages to JOBS_TOPIC, tile/finalize to SLIDES_TOPIC (`healer_core.topics`)."""
        if self._publisher is not None:
            return self._publisher
        s = self.settings
        return topic_router(s.project_id, s.jobs_topic, s.slides_topic, s.publish_timeout_seconds)

    @property
    def processes(self) -> int:
        """Tile-reading worker processes per slide (TILING_PROCESSES, 0: one per core, at most 4)."""
        if self.settings.tiling_processes:
            return self.settings.tiling_processes
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, min(MAX_DEFAULT_PROCESSES, cores))
