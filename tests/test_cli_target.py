"""The target options (--project, --bucket, --collection, --database, --topic): declared once,
taken before or after the command name by every command that works on a target, refused by the
commands that work on this machine."""

from __future__ import annotations

import json

import pytest
import typer

from healer.cli import app
from healer.cli.target import OPTION_NAMES, TargetCommand
from healer_core.store import JobStore
from tests.test_cli import _put, run

FLAGS = [f"--{name}" for name in OPTION_NAMES]
LOCAL_COMMANDS = {"up", "down", "status", "model", "demo"}


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return dict(group.commands)


def test_the_five_target_options_are_declared_once() -> None:
    assert FLAGS == ["--project", "--bucket", "--collection", "--database", "--topic"]
    code, out = run("--help")
    assert code == 0 and all(flag in out for flag in FLAGS)


def test_every_cloud_command_takes_every_target_option_and_local_ones_none() -> None:
    commands = _commands()
    cloud = {name for name, command in commands.items() if isinstance(command, TargetCommand)}
    assert cloud == {"submit", "results", "watch", "slide", "eval", "requeue", "dead-letters", "reconcile"}
    assert set(commands) - cloud == LOCAL_COMMANDS
    for name in sorted(cloud):
        code, out = run(name, "--help")
        assert code == 0, out
        assert [flag for flag in FLAGS if flag not in out] == [], name
    code, out = run("status", "--help")
    assert code == 0 and not any(flag in out for flag in FLAGS)


def test_target_options_before_or_after_the_command_name(store: JobStore, unique: str) -> None:
    job = _put(store, f"b-{unique}", "t/x.png", p_yes=0.8)
    coll = store.collection.id

    for args in (
        ("results", "--collection", coll, "--format", "json"),  # as documented: after the name
        ("--collection", coll, "results", "--format", "json"),  # before it, on the root
        ("--collection", f"other-{unique}", "results", "--collection", coll, "--format", "json"),  # after wins
    ):
        code, out = run(*args)
        assert code == 0, (args, out)
        assert [row["job_id"] for row in json.loads(out)] == [job.job_id], args

    code, out = run("--collection", f"empty-{unique}", "results", "--format", "json")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize("command", ["status", "model"])
def test_local_commands_refuse_target_options(command: str) -> None:
    code, out = run("--project", "my-lab", "--bucket", "b", command)
    assert code == 2
    assert f"`healer {command}` works on this machine and takes no target options" in out
    assert "--project, --bucket" in out


def test_a_target_option_after_a_local_command_is_unknown() -> None:
    code, out = run("status", "--project", "my-lab")
    assert code == 2 and "No such option" in out
