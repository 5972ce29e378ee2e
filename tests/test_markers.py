"""Tests are marked by the fixtures they use (tests/conftest.py), so `make test-fast` starts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ["tests/test_cli.py", "tests/test_service.py", "tests/test_e2e.py"]


def collected(marker_expression: str) -> set[str]:
    """Node ids pytest selects with `-m marker_expression` from MODULES (collection only)."""
    env = os.environ | {"HEALER_TEST_FAST": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            marker_expression,
            *MODULES,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


def test_marks_follow_the_fixtures_not_the_module() -> None:
    fast = collected("not emulator")
    emulator = collected("emulator")
    stack = collected("stack")
    # No explicit mark in these modules: each test is classified by what its fixtures start.
    assert "tests/test_cli.py::test_parse_since" in fast  # pure
    assert "tests/test_cli.py::test_missing_bucket_is_one_line" in emulator  # emulator_cfg directly
    assert "tests/test_cli.py::test_results_in_each_format" in emulator  # through `store`
    assert "tests/test_service.py::test_readyz_reports_a_model_that_cannot_load" in fast  # no emulator
    assert "tests/test_service.py::test_push_writes_a_verdict_with_provenance" in emulator  # through `client`
    assert "tests/test_cli.py::test_submit_folder_and_wait" in stack and stack <= emulator
    assert {n for n in emulator if n.startswith("tests/test_e2e.py")} == {
        n for n in fast | emulator if n.startswith("tests/test_e2e.py")
    }
    assert not fast & emulator and fast and emulator
