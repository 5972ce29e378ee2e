"""`healer up|down|status`, `healer model download|tiny|info`, `healer demo`: this machine's side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from healer.cli.app import app, console
from healer.cli.errors import CliError
from healer.cli.settings import REPO
from healer.model import DEFAULT_MODEL_ID

if TYPE_CHECKING:
    from healer.stack.config import StackConfig


def stack_config() -> StackConfig:
    """The local stack's config: $HEALER_HOME, else `./.healer`, else the checkout's `.healer`
    (so `healer` finds the stack `make up` started from any directory)."""
    from healer.stack.config import StackConfig

    if os.environ.get("HEALER_HOME") or Path(".healer").is_dir():
        return StackConfig()
    home: dict[str, Any] = {"HEALER_HOME": REPO / ".healer"}  # settings take their env names
    return StackConfig(**home)


@app.command()
def up() -> None:
    """Start the local stack (emulators, ingest, service, Eventarc stand-in); the same as `make up`."""
    from healer.stack.control import up as stack_up

    out = console()
    cfg = stack_up(stack_config(), echo=lambda line: out.print(line, style="dim"))
    out.print(f"stack is up; any Google client: source {cfg.env_file}")


@app.command()
def down() -> None:
    """Stop exactly what `healer up` started; the same as `make down`."""
    from healer.stack.control import down as stack_down

    out = console()
    if not stack_down(stack_config(), echo=lambda line: out.print(line, style="dim")):
        out.print("nothing was running")


@app.command()
def status() -> None:
    """Which local stack components run, on which ports."""
    from healer.stack.control import status as stack_status

    cfg = stack_config()
    ports = {
        "storage": cfg.storage_port,
        "pubsub": cfg.pubsub_port,
        "firestore": cfg.firestore_port,
        "ingest": cfg.ingest_port,
        "reconcile": cfg.reconcile_port,
        "service": cfg.service_port,
        "console": cfg.console_port,
    }
    out = console()
    out.print(f"local stack in {cfg.home} (project {cfg.project}, bucket {cfg.bucket})")
    table = Table()
    for col in ("component", "state", "pid", "listens on"):
        table.add_column(col)
    for name, pid in stack_status(cfg).items():
        state = "[green]running[/green]" if pid else "[dim]stopped[/dim]"
        port = ports.get(name)
        table.add_row(name, state, str(pid or ""), f"{cfg.host}:{port}" if port else "")
    out.print(table)


model_app = typer.Typer(
    help="MedGemma on disk: download it, make the tiny test checkpoint, describe a MODEL_DIR.", no_args_is_help=True
)
app.add_typer(model_app, name="model")

ModelDir = Annotated[Path | None, typer.Option("--dir", help="Model directory (default: $MODEL_DIR).")]


def _default_dir(given: Path | None, fallback: Path) -> Path:
    if given is not None:
        return given
    return Path(os.environ["MODEL_DIR"]) if os.environ.get("MODEL_DIR") else fallback


@model_app.command("download")
def model_download(
    model_dir: ModelDir = None,
    model_id: Annotated[str, typer.Option(help="Hugging Face model id.")] = DEFAULT_MODEL_ID,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit (default: main, pinned).")] = None,
    token: Annotated[str | None, typer.Option(help="Hugging Face token (default: $HF_TOKEN).")] = None,
) -> None:
    """Fetch MedGemma into MODEL_DIR (needs a token whose account accepted its terms)."""
    from healer import model

    target = _default_dir(model_dir, Path("medgemma-model"))
    out = console()
    try:
        with out.status(f"downloading {model_id} into {target}…"):
            path = model.download(model_id, target, token, revision)
    except model.ModelDownloadError as exc:
        raise CliError(str(exc)) from exc
    _print_info(model.info(path))


@model_app.command("tiny")
def model_tiny(model_dir: ModelDir = None) -> None:
    """Generate the tiny random Gemma 3 checkpoint (offline, seconds; answers are meaningless)."""
    from healer import model

    target = model_dir or stack_config().home / "models" / "tiny"
    path = model.make_tiny(target)
    _print_info(model.info(path))


@model_app.command("info")
def model_info(model_dir: ModelDir = None) -> None:
    """What a MODEL_DIR holds (id, revision, size, dtype), and what the local service has loaded."""
    from healer import model

    cfg = stack_config()
    target = _default_dir(model_dir, cfg.resolved_model_dir)
    details = model.info(target)
    if not details["present"]:
        raise CliError(f"no model in {target}: run `healer model download` or `healer model tiny`")
    _print_info(details)
    serving = _serving(cfg.service_url)
    if serving:
        console().print(f"local service {cfg.service_url} is serving: {serving}")


def _serving(url: str) -> str:
    import requests

    try:
        body = requests.get(f"{url}/readyz", timeout=2).json()
    except (requests.RequestException, ValueError):
        return ""
    return f"{body.get('model_id', '')} (prompt {body.get('prompt_version', '')})" if body.get("model_id") else ""


def _print_info(details: dict[str, object]) -> None:
    table = Table(show_header=False, title="model", title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    keys = ("model_dir", "model_id", "revision", "source", "size", "dtype", "architectures", "quantization")
    for key in (*keys, "image_size", "image_tokens"):
        value = details.get(key, "")
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    console().print(table)


@app.command()
def demo() -> None:
    """Bring the local stack up, upload the sample tiles, print every verdict (`make demo`)."""
    from healer.demo import main as demo_main

    raise typer.Exit(demo_main())
