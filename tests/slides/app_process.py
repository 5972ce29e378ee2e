"""A service under uvicorn in its own process group, for tests that kill it (SIGKILL) mid-work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """`uvicorn --factory <factory>` with the environment of this process plus `env`."""

    def __init__(self, factory: str, log_path: Path, port: int | None = None, **env: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        child_env = dict(os.environ)
        child_env.update({"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "ingest_function")])})
        child_env.update({"PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}})
        argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(self.port)]
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [*argv, "--no-access-log"],
                cwd=REPO,
                env=child_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while not self._ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"{factory} not ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited: {self.log_path.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group (the service and its child processes), and reap it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
