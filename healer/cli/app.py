"""The Typer application, its error boundary and the root callback that takes the target options."""

from __future__ import annotations

import os
from typing import Any, cast

import typer
from rich.console import Console
from typer.core import TyperGroup

from healer.cli.errors import report
from healer.cli.target import Bucket, Collection, Database, Project, Target, TargetCommand, Topic


def console() -> Console:
    """Standard output (resolved at print time, so test runners capture it)."""
    return Console(highlight=False)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


COMMAND_ORDER = [
    "submit",
    "results",
    "watch",
    "slide",
    "eval",
    "requeue",
    "dead-letters",
    "reconcile",
    "up",
    "down",
    "status",
    "model",
    "demo",
]


class HealerGroup(TyperGroup):
    """Runs a command inside the error boundary: an expected failure prints one line, no traceback."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        """In the order a user meets them, not the order the modules registered them."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # Typer's own: usage errors, exits
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if os.environ.get("HEALER_DEBUG"):
                raise
            message, code = report(exc)
            err_console().print(f"[red]error:[/red] {message}")
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=HealerGroup,
    name="healer",
    help="Screen colorectal histopathology images with MedGemma: upload, follow, read, evaluate.\n\n"
    "Talks to the local stack by default (.healer/local.env, written by `healer up`); "
    "pass --project (and --bucket) to use Google Cloud with Application Default Credentials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _target(
    ctx: typer.Context,
    project: Project = None,
    bucket: Bucket = None,
    collection: Collection = None,
    database: Database = None,
    topic: Topic = None,
) -> None:
    """Build the target every cloud command reads (`healer.cli.target`); refuse it for local ones."""
    given = Target(project=project, bucket=bucket, collection=collection, database=database, topic=topic)
    name = ctx.invoked_subcommand
    command = cast(TyperGroup, ctx.command).get_command(ctx, name) if name else None
    if given.given() and command is not None and not isinstance(command, TargetCommand):
        raise typer.BadParameter(
            f"`healer {name}` works on this machine and takes no target options", param_hint=", ".join(given.given())
        )
    ctx.obj = given
