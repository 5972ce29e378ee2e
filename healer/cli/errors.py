"""The CLI's error boundary: every expected failure becomes one line saying what to do.

    CliError                      raised by commands: its message is the line (exit code kept)
    DefaultCredentialsError       no Application Default Credentials
    RefreshError                  credentials expired or revoked
    NotFound                      bucket, topic or subscription missing
    PermissionDenied / Forbidden  the account lacks a role
    ServiceUnavailable, RetryError, connection errors
                                  emulator unreachable (local) or Google Cloud unreachable
    StackError                    a local stack component failed (names it and its log)
    KeyboardInterrupt             exit 130

Anything else is a bug: one line too, with `HEALER_DEBUG=1` to see the traceback.
"""

from __future__ import annotations

import os


class CliError(Exception):
    """A failure the user can act on; `str(exc)` is the whole message."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def _local() -> bool:
    return any(os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"))


def _is_connection_error(exc: BaseException) -> bool:
    import requests
    from google.api_core import exceptions as gexc

    return isinstance(
        exc, ConnectionError | requests.ConnectionError | gexc.ServiceUnavailable | gexc.RetryError
    ) or "failed to connect to all addresses" in str(exc)


def explain(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an expected failure, or None for a bug."""
    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    from healer.stack.control import StackError

    if isinstance(exc, StackError):
        return str(exc), 1
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return (
            "no Google credentials: run `gcloud auth application-default login` "
            "(or `make up` and drop --project to use the local stack)",
            1,
        )
    if isinstance(exc, auth_exc.RefreshError):
        return "Google credentials expired or were revoked: run `gcloud auth application-default login`", 1
    if isinstance(exc, gexc.NotFound):
        what = _first_line(exc)
        hint = "check --bucket" if "bucket" in what.lower() else "check --project, --bucket and --topic"
        return f"not found: {what} ({hint}; `terraform output` lists the names)", 1
    if isinstance(exc, gexc.PermissionDenied | gexc.Forbidden | gexc.Unauthenticated):
        return f"permission denied: {_first_line(exc)} (check the account's roles on the project)", 1
    if _is_connection_error(exc):
        if _local():
            return "the local stack is not running: run `make up` (or `healer up`)", 1
        return f"cannot reach Google Cloud: {_first_line(exc)} (check the network and --project)", 1
    return None


def report(exc: BaseException) -> tuple[str, int]:
    """The line and exit code for any exception (bugs included, without their traceback)."""
    known = explain(exc)
    if known is not None:
        return known
    return f"unexpected {type(exc).__name__}: {_first_line(exc)} (set HEALER_DEBUG=1 for the traceback)", 1
