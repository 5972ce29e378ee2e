"""`healer`: the command line for Healer, the same on the local stack and on Google Cloud.

Commands live in small modules that register on one Typer app; each imports the Google
clients (and anything heavy) only when it runs, so `healer --help` is instant. The error
boundary (`HealerGroup.invoke`, see `healer.cli.errors`) turns expected failures into one line.
"""

from __future__ import annotations

from healer.cli import evaluation, jobs, local, recover, slide  # noqa: F401  (register the commands)
from healer.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the `healer` script: run the app inside its error boundary."""
    app(prog_name="healer")
