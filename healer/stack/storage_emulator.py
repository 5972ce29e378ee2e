"""gcp-storage-emulator, with two fixes so the Google Cloud CLI can upload to it, and Cloud
Storage's Pub/Sub notifications.

- `gcloud storage cp` sends multipart uploads with a single-quoted MIME boundary
  (`boundary='===…=='`), which the emulator's parser (Python's email package) does not unquote,
  so small gcloud uploads failed with a 500: the quoting is normalised before parsing.
- Large files go through resumable uploads at `/resumable/upload/storage/v1/…`, a path the JSON
  API accepts as an alias of `/upload/storage/v1/…` but the emulator does not route (501): the
  alias is rewritten.
- A resumable session that has received nothing yet answers a status query with `308` and *no*
  `Range` header, as Cloud Storage does; the emulator said `Range: bytes=0-0` (one byte stored),
  so a client resuming after a lost first chunk skipped byte 0.

- Every finalized generation publishes its OBJECT_FINALIZE notification (`storage_events.py`)
  to the bucket's notification topic on the Pub/Sub emulator (PUBSUB_EMULATOR_HOST, project
  HEALER_PROJECT), from `Storage.create_file`, the one method every write path calls, before the
  client gets its answer. The Eventarc stand-in reads them: one event per generation, however
  fast a name is overwritten (a listing only ever shows the newest).

Everything else is the emulator, unchanged. Run: `python -m healer.stack.storage_emulator start …`
(the same arguments as `gcp-storage-emulator`).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main as emulator_main
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import Storage

from healer.stack.config import StackConfig
from healer.stack.storage_events import Notifier

_SINGLE_QUOTED_BOUNDARY = re.compile(r"boundary='([^']*)'")
_read_data = server._read_data


def _read_data_with_quoted_boundary(request_handler: Any, query: Any) -> Any:
    content_type = request_handler.headers.get("Content-Type")
    if content_type and "boundary='" in content_type:
        request_handler.headers.replace_header(
            "Content-Type", _SINGLE_QUOTED_BOUNDARY.sub(r'boundary="\1"', content_type)
        )
    return _read_data(request_handler, query)


server._read_data = _read_data_with_quoted_boundary

_parse_request = server.RequestHandler.parse_request


def _parse_request_with_resumable_alias(self: Any) -> bool:
    ok: bool = _parse_request(self)
    if ok and self.path.startswith("/resumable/upload/"):
        self.path = self.path.removeprefix("/resumable")
    return ok


server.RequestHandler.parse_request = _parse_request_with_resumable_alias

_create_file = Storage.create_file
_notifier: Notifier | None = None


def _create_file_and_notify(
    self: Storage, bucket_name: str, file_name: str, content: bytes, file_obj: dict[str, Any], file_id: Any = None
) -> None:
    previous = self.objects.get(bucket_name, {}).get(file_name)
    _create_file(self, bucket_name, file_name, content, file_obj, file_id)
    if _notifier is not None:
        _notifier.finalized(file_obj, overwrote=previous.get("generation") if previous else None)


Storage.create_file = _create_file_and_notify

_resumable_incomplete = objects._resumable_incomplete


def _resumable_incomplete_without_phantom_byte(
    response: Any, storage: Any, upload_id: str, fallback_end: int = 0
) -> None:
    if storage.get_resumable_byte_count(upload_id) > 0:
        _resumable_incomplete(response, storage, upload_id, fallback_end)
        return
    response.status = objects.GoogleHTTPStatus.RESUME_INCOMPLETE


objects._resumable_incomplete = _resumable_incomplete_without_phantom_byte

if __name__ == "__main__":
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        _notifier = Notifier(StackConfig().project)
    sys.exit(emulator_main())
