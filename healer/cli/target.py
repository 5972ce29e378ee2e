"""Where a cloud command works: the five target options, declared once.

The root callback declares them (`healer --project P submit ...`); every `TargetCommand` accepts
the very same options after its name too (`healer submit ... --project P`, as before), and reads
the merged result with `target(ctx)`. A new command that talks to Cloud Storage, Firestore or
Pub/Sub registers with `cls=TargetCommand` and gets all five: it cannot forget one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

if TYPE_CHECKING:
    from healer.cli.clients import Clients
    from healer.cli.settings import Settings

PANEL = "Target (before or after the command)"


def _option(flag: str, help: str) -> Any:
    return typer.Option(flag, help=help, rich_help_panel=PANEL)


Project = Annotated[
    str | None, _option("--project", "Google Cloud project (default: $GOOGLE_CLOUD_PROJECT, else the local stack).")
]
Bucket = Annotated[
    str | None, _option("--bucket", "Inbox bucket (default: $HEALER_BUCKET; terraform output inbox_bucket).")
]
Collection = Annotated[
    str | None, _option("--collection", "Firestore jobs collection (default: $JOBS_COLLECTION or jobs).")
]
Database = Annotated[
    str | None, _option("--database", "Firestore database (default: $FIRESTORE_DATABASE or (default)).")
]
Topic = Annotated[str | None, _option("--topic", "Pub/Sub jobs topic (default: $JOBS_TOPIC or jobs).")]


@dataclass(frozen=True)
class Target:
    """The target options as given; None means "from the environment, else `.healer/local.env`"."""

    project: str | None = None
    bucket: str | None = None
    collection: str | None = None
    database: str | None = None
    topic: str | None = None

    def updated(self, given: Mapping[str, Any]) -> Target:
        """This target with the options in `given` that were set (not None) replacing its own."""
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    def given(self) -> list[str]:
        """The options that were set, as flags (for messages)."""
        return [f"--{f.name}" for f in fields(self) if getattr(self, f.name) is not None]

    def settings(self, *, need_bucket: bool = True) -> Settings:
        """Resolved: flags > environment > `.healer/local.env` (see `healer.cli.settings.resolve`)."""
        from healer.cli.settings import resolve

        return resolve(
            self.project,
            self.bucket,
            self.collection,
            self.topic,
            database=self.database,
            need_bucket=need_bucket,
        )

    def clients(self, *, need_bucket: bool = True) -> Clients:
        """The Google clients for the resolved settings (each built on first use)."""
        from healer.cli.clients import Clients

        return Clients(self.settings(need_bucket=need_bucket))


OPTION_NAMES = tuple(f.name for f in fields(Target))


def target(ctx: typer.Context) -> Target:
    """The target this command runs against (the options before and after its name, merged)."""
    return ctx.ensure_object(Target)


class TargetCommand(TyperCommand):
    """A command that works on a target: it also takes the root's target options after its name.

    The options are the root callback's own parameter objects, so help and parsing are identical
    in both places; given after the name, they win over the same option given before it.
    """

    def _shared(self, ctx: typer.Context) -> list[Any]:
        root = ctx.find_root().command
        return [p for p in root.params if p.name in OPTION_NAMES] if root is not self else []

    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        params = super().get_params(ctx)
        own = len(self.params)  # the rest is the help option: keep it last
        return [*params[:own], *self._shared(ctx), *params[own:]]

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        given = {name: ctx.params.pop(name) for name in OPTION_NAMES if name in ctx.params}
        ctx.obj = target(ctx).updated(given)
        return super().invoke(ctx)
