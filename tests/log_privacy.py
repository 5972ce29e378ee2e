"""What must never reach a log line, and how tests catch it.

Object names may carry patient identifiers and image bytes are patient data: a test uploads under
PATIENT-shaped names and plants BYTES_MARKER in its images' bytes, captures every record logged
meanwhile (as the JSON line Cloud Logging receives, tracebacks included), and finds neither.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, PngImagePlugin

from healer_core.logs import JsonFormatter

# A name shaped like what labs really upload: it must never reach a log line.
PATIENT = "PATIENT-Jane-Doe-1970"
# Planted in every test image's bytes (a PNG text chunk): if image bytes were logged, it shows.
BYTES_MARKER = "IMGBYTES-7f3c9a"


def marked_png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A valid PNG carrying BYTES_MARKER in a text chunk (distinct pixels per seed)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", BYTES_MARKER)
    buf = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, 80, 160)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


class LogCapture(logging.Handler):
    """Every record logged while installed (any logger, any level), and each as the JSON line
    Cloud Logging would receive (formatted when it is logged)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self._formatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self._formatter.format(record))


@contextmanager
def captured_logs() -> Iterator[LogCapture]:
    """A LogCapture on the root logger for the duration of the block."""
    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)


def assert_no_name_or_bytes(lines: list[str]) -> None:
    """No line holds the PATIENT name or the BYTES_MARKER."""
    leaked = [line for line in lines if PATIENT in line or BYTES_MARKER in line]
    assert not leaked, leaked[:3]
