"""gcp-storage-emulator, with one fix so the Google Cloud CLI can upload to it.

`gcloud storage cp` sends multipart uploads with a single-quoted MIME boundary
(`boundary='===…=='`), which the emulator's parser (Python's email package) does not unquote,
so every gcloud upload failed with a 500. We normalise the quoting before the emulator parses
the body; everything else is the emulator, unchanged. Run: `python -m healer.stack.storage_emulator start …`
(the same arguments as `gcp-storage-emulator`).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main as emulator_main

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

if __name__ == "__main__":
    sys.exit(emulator_main())
