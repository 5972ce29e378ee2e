"""Start, stop and inspect the local stack's processes (pid files under `<home>/pids/`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from healer.stack.config import StackConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A component failed to start; the message names it and its log file."""


@dataclass
class Component:
    name: str
    argv: list[str]
    port: int
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    timeout_s: float = 60.0


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    return check


def _gcloud() -> str:
    return os.environ.get("GCLOUD", "gcloud")


def _base_env(cfg: StackConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS",)}
    env.update(cfg.stack_env())
    env.update(
        {
            "PROJECT_ID": cfg.project,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "ingest_function")]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def emulator_components(cfg: StackConfig) -> list[Component]:
    h = cfg.host
    data = cfg.home / "data"
    (data / "pubsub").mkdir(parents=True, exist_ok=True)
    return [
        Component(
            "storage",
            [
                sys.executable,
                "-m",
                "healer.stack.storage_emulator",
                "start",
                "--host",
                h,
                "--port",
                str(cfg.storage_port),
                "--default-bucket",
                cfg.bucket,
                "--in-memory",
                "-q",
            ],
            cfg.storage_port,
            _http_ok(f"{cfg.storage_url}/storage/v1/b/{cfg.bucket}"),
        ),
        Component(
            "pubsub",
            [
                _gcloud(),
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port={h}:{cfg.pubsub_port}",
                f"--project={cfg.project}",
                f"--data-dir={(data / 'pubsub').resolve()}",
                "--quiet",
            ],
            cfg.pubsub_port,
            _http_ok(f"http://{h}:{cfg.pubsub_port}/"),
            timeout_s=90,
        ),
        Component(
            "firestore",
            [
                _gcloud(),
                "emulators",
                "firestore",
                "start",
                f"--host-port={h}:{cfg.firestore_port}",
                "--quiet",
            ],
            cfg.firestore_port,
            _http_ok(f"http://{h}:{cfg.firestore_port}/"),
            timeout_s=90,
        ),
    ]


def app_components(cfg: StackConfig) -> list[Component]:
    h = cfg.host
    ff = [
        sys.executable,
        "-m",
        "functions_framework",
        "--source",
        str(REPO_ROOT / "ingest_function" / "main.py"),
    ]
    service_env = {"MODEL_DIR": str(cfg.resolved_model_dir.resolve())}
    components = [
        Component(
            "ingest",
            [
                *ff,
                "--target",
                "ingest",
                "--signature-type",
                "cloudevent",
                "--host",
                h,
                "--port",
                str(cfg.ingest_port),
            ],
            cfg.ingest_port,
            lambda: _port_open(h, cfg.ingest_port),
        ),
        Component(
            "reconcile",
            [
                *ff,
                "--target",
                "reconcile",
                "--signature-type",
                "http",
                "--host",
                h,
                "--port",
                str(cfg.reconcile_port),
            ],
            cfg.reconcile_port,
            lambda: _port_open(h, cfg.reconcile_port),
        ),
        Component(
            "service",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "inference_service.app:create_app",
                "--host",
                h,
                "--port",
                str(cfg.service_port),
                "--timeout-graceful-shutdown",
                "8",
                "--no-access-log",
            ],
            cfg.service_port,
            _http_ok(f"{cfg.service_url}/readyz"),
            env=service_env,
            timeout_s=float(os.environ.get("HEALER_SERVICE_START_TIMEOUT", "900")),
        ),
        Component(
            "push",
            [sys.executable, "-m", "healer.stack.push"],
            0,
            lambda: True,
        ),
        Component(
            "slide",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "slide_service.app:create_app",
                "--host",
                h,
                "--port",
                str(cfg.slide_port),
                "--timeout-graceful-shutdown",
                "8",
                "--no-access-log",
            ],
            cfg.slide_port,
            _http_ok(f"{cfg.slide_url}/readyz"),
        ),
        Component(
            "eventarc",
            [sys.executable, "-m", "healer.stack.eventarc"],
            0,
            lambda: True,
        ),
        Component(
            "scheduler",
            [sys.executable, "-m", "healer.stack.scheduler"],
            0,
            lambda: True,
        ),
    ]
    console_main = REPO_ROOT / "console" / "backend" / "app.py"
    if console_main.exists():
        components.append(
            Component(
                "console",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "console.backend.app:create_app",
                    "--host",
                    h,
                    "--port",
                    str(cfg.console_port),
                    "--no-access-log",
                ],
                cfg.console_port,
                _http_ok(f"http://{h}:{cfg.console_port}/healthz"),
            )
        )
    return components


def _pidfile(cfg: StackConfig, name: str) -> Path:
    return cfg.home / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def running_pid(cfg: StackConfig, name: str) -> int | None:
    """The pid `up` recorded for a component, if that process still runs."""
    try:
        pid = int(_pidfile(cfg, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(cfg: StackConfig, comp: Component) -> bool:
    """Start one component unless it already runs. Returns True if it was started now."""
    if running_pid(cfg, comp.name) is not None:
        return False
    # A process just killed can hold its port for a moment: give it a few seconds to let go.
    freed_by = time.monotonic() + 10.0
    while comp.port and _port_open(cfg.host, comp.port) and time.monotonic() < freed_by:
        time.sleep(0.2)
    if comp.port and _port_open(cfg.host, comp.port):
        raise StackError(
            f"port {comp.port} for {comp.name} is taken by a process this stack did not start; "
            f"stop it or set HEALER_{comp.name.upper()}_PORT"
        )
    log_path = cfg.home / "logs" / f"{comp.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _pidfile(cfg, comp.name).parent.mkdir(parents=True, exist_ok=True)
    env = _base_env(cfg) | comp.env
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            comp.argv,
            cwd=comp.cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pidfile(cfg, comp.name).write_text(str(proc.pid))
    deadline = time.monotonic() + comp.timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{comp.name} exited with code {proc.returncode}; see {log_path}")
        if comp.ready():
            return True
        time.sleep(0.3)
    raise StackError(f"{comp.name} did not become ready in {comp.timeout_s:.0f}s; see {log_path}")


def stop_component(cfg: StackConfig, name: str, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Stop one recorded component (its whole process group). Returns True if one was running."""
    pid = running_pid(cfg, name)
    _pidfile(cfg, name).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reap it if it is our child (tests start stacks in-process)
        os.waitpid(pid, os.WNOHANG)
    return True


def write_env_file(cfg: StackConfig) -> Path:
    """`.healer/local.env`: `source` it and any official client talks to this stack."""
    lines = [f"export {k}={v}" for k, v in (cfg.client_env() | cfg.gcloud_env()).items()]
    cfg.env_file.parent.mkdir(parents=True, exist_ok=True)
    cfg.env_file.write_text("\n".join(lines) + "\n")
    return cfg.env_file


def ensure_model(cfg: StackConfig) -> Path:
    """The model directory for the service: MODEL_DIR if it holds a model, else the tiny one."""
    model_dir = cfg.resolved_model_dir
    if (model_dir / "config.json").exists():
        return model_dir
    if cfg.model_dir:
        raise StackError(f"MODEL_DIR={cfg.model_dir} holds no model (no config.json); run `healer model download`")
    from inference_service.engine.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(model_dir)


def up(cfg: StackConfig | None = None, echo: Callable[[str], None] = lambda _: None) -> StackConfig:
    """Bring the whole stack up (idempotent). Raises StackError naming the failing part."""
    cfg = cfg or StackConfig()
    cfg.home.mkdir(parents=True, exist_ok=True)
    os.environ.update(cfg.client_env())
    for comp in emulator_components(cfg):
        if start(cfg, comp):
            echo(f"started {comp.name} on {cfg.host}:{comp.port}")
    from healer.stack.provision import ensure_bucket, ensure_pubsub, ensure_slides_pubsub

    ensure_bucket(cfg)
    ensure_pubsub(cfg)
    ensure_slides_pubsub(cfg)
    echo("provisioned bucket, topics and subscriptions")
    ensure_model(cfg)
    for comp in app_components(cfg):
        if start(cfg, comp):
            echo(f"started {comp.name}" + (f" on {cfg.host}:{comp.port}" if comp.port else ""))
    write_env_file(cfg)
    return cfg


ALL_COMPONENTS = [
    "console",
    "scheduler",
    "eventarc",
    "push",
    "slide",
    "service",
    "reconcile",
    "ingest",
    "firestore",
    "pubsub",
    "storage",
]


def down(cfg: StackConfig | None = None, echo: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop exactly what `up` started (apps first, emulators last)."""
    cfg = cfg or StackConfig()
    stopped = [name for name in ALL_COMPONENTS if stop_component(cfg, name)]
    for name in stopped:
        echo(f"stopped {name}")
    return stopped


def status(cfg: StackConfig | None = None) -> dict[str, int | None]:
    """Pid of each component `up` started, None where it is not running."""
    cfg = cfg or StackConfig()
    return {name: running_pid(cfg, name) for name in reversed(ALL_COMPONENTS)}
