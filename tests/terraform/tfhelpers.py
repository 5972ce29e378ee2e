"""Helpers shared by the deployment tests: the parsed Terraform module and tool locations.

(Not a conftest.py: tests/ has its own, and two modules named `conftest` would collide.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"
TOOLS_BIN = REPO / ".venv-tools" / "bin"


def _norm(value: Any) -> Any:
    """python-hcl2 keeps HCL quotes and comments: strip both so values compare as written."""
    if isinstance(value, dict):
        return {_norm(k): _norm(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one .tf/.tfvars file into plain dicts, lists and strings."""
    with path.open(encoding="utf-8") as fh:
        return _norm(hcl2.load(fh))


@dataclass
class Module:
    """The root module's blocks, merged across its files."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        """One resource body; fails the test with a clear message when absent."""
        try:
            return self.resources[rtype][name]
        except KeyError:
            pytest.fail(f"terraform/ declares no {rtype}.{name}")

    def iter_resources(self, prefix: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(type, name, body) of every resource whose type starts with prefix."""
        for rtype, byname in self.resources.items():
            if rtype.startswith(prefix):
                for name, body in byname.items():
                    yield rtype, name, body


def load_module(directory: Path = TF_DIR) -> Module:
    """Parse every .tf file of a module directory."""
    module = Module()
    for path in sorted(directory.glob("*.tf")):
        doc = load_hcl(path)
        for block in doc.get("resource", []):
            for rtype, byname in block.items():
                module.resources.setdefault(rtype, {}).update(byname)
        for block in doc.get("data", []):
            for rtype, byname in block.items():
                module.data.setdefault(rtype, {}).update(byname)
        for block in doc.get("variable", []):
            module.variables.update(block)
        for block in doc.get("output", []):
            module.outputs.update(block)
        for block in doc.get("locals", []):
            module.locals.update(block)
        module.terraform.extend(doc.get("terraform", []))
    return module


def first(block: Any) -> dict[str, Any]:
    """A nested block parses as a one-element list; return its body."""
    assert isinstance(block, list) and block, f"expected a nested block, got {block!r}"
    return block[0]


def walk_strings(value: Any) -> Iterator[str]:
    """Every string anywhere inside a parsed value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


ROLE_RE = re.compile(r"roles/[A-Za-z0-9_.]+")
