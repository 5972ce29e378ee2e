"""Times on the command line: `90s`, `15m`, `2h`, `7d`, or an ISO 8601 date or datetime."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from healer.cli.errors import CliError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `7d`, `1w` → timedelta. Raises CliError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise CliError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration ago (`2h`) or an absolute ISO time (naive times are UTC)."""
    now = now or datetime.now(UTC)
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(f"not a time: {text!r} (use e.g. 2h, 7d or 2026-01-31T08:00)") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)
