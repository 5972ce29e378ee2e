"""Server-side previews: the stored object, safely decoded, downscaled and re-encoded as PNG.

The browser never receives the uploaded bytes themselves: a hostile file is decoded with the
same guards the inference service uses (format by magic bytes, pixel and frame limits, no
half-decoded truncated files, a decode memory budget shared by all previews of the process,
DECODE_MEMORY_MB), at no more resolution than the preview needs (a JPEG at a reduced DCT scale,
anything else box-reduced while it decodes), and only a fresh PNG of at most `max_px` on its
longer side leaves the console.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from PIL import Image

from healer_media.imaging import DecodeLimits, decode_image


def render_preview(data: bytes, limits: DecodeLimits, max_px: int = 512) -> bytes:
    """PNG bytes of the image in `data`, no side longer than `max_px`.

    Raises `healer_media.errors.ImageRejected` for anything that is not a safe image.
    """
    image = decode_image(data, limits)
    image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


class PreviewCache:
    """A small LRU of rendered previews by job id (a job pins one immutable generation)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
