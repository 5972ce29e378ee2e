"""The module against its providers' schemas, offline: what `terraform validate` would check.

The provider binaries cannot be downloaded here, so `terraform validate` cannot run (see
test_terraform.py). CDK for Terraform's prebuilt provider packages carry the same schemas;
`make provider-schemas` extracts them (scripts/provider_schema.py) for exactly the provider
versions make/provider-schemas.txt locks. Every resource and data source type, argument and
nested block of terraform/*.tf is checked against the schema of the provider it uses, for the
provider major the module pins, and so is every reference to a resource attribute, variable
and local.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from tfhelpers import REPO, TF_DIR, first, load_hcl, load_module, walk_strings

META_ARGS = {"count", "for_each", "provider", "depends_on", "lifecycle", "provisioner", "connection"}
PROVIDER_OF_PREFIX = {"google": "google", "time": "time", "archive": "archive"}


def _schema_module() -> Any:
    spec = importlib.util.spec_from_file_location("provider_schema", REPO / "scripts" / "provider_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    """{provider name: schema} for every locked provider package; skip (fail in CI) when not cached."""
    import json

    ps = _schema_module()
    found: dict[str, dict[str, Any]] = {}
    for package, version in ps.locked_packages().items():
        path = ps.schema_path(package, version)
        if not path.exists():
            message = f"provider schema {path} missing: run `make provider-schemas` (`make test` does)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        schema = json.loads(path.read_text())
        found[schema["provider"]] = schema
    return found


def _required_providers() -> dict[str, str]:
    block = first(load_hcl(TF_DIR / "versions.tf")["terraform"])
    providers = block["required_providers"]
    providers = first(providers) if isinstance(providers, list) else providers
    return {name: body["version"] for name, body in providers.items()}


def _provider_for(rtype: str, body: dict[str, Any]) -> str:
    alias = str(body.get("provider", "")).strip("${}")
    if alias:
        return alias
    return PROVIDER_OF_PREFIX[rtype.split("_", 1)[0]]


def _check_block(schema: dict[str, Any], body: dict[str, Any], where: str, top: bool = False) -> list[str]:
    """Problems of one configuration block against its schema, recursively."""
    problems: list[str] = []
    present: set[str] = set()
    for key, value in body.items():
        if top and key in META_ARGS:
            continue
        if key == "dynamic":
            for dyn in value:
                for name, spec in dyn.items():
                    present.add(name)
                    if name not in schema["blocks"]:
                        problems.append(f"{where}: dynamic block {name!r} is not a block of this type")
                        continue
                    for content in spec.get("content", []):
                        problems += _check_block(schema["blocks"][name], content, f"{where}.{name}")
            continue
        present.add(key)
        if key in schema["blocks"]:
            if not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                problems.append(f"{where}: {key!r} is a block, written as an argument")
                continue
            for item in value:
                problems += _check_block(schema["blocks"][key], item, f"{where}.{key}")
        elif key not in schema["args"]:
            near = difflib.get_close_matches(key, [*schema["args"], *schema["blocks"]], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{where}: unsupported argument {key!r}{hint}")
    for name, arg in schema["args"].items():
        if arg["required"] and name not in present:
            problems.append(f"{where}: required argument {name!r} missing")
    for name, block in schema["blocks"].items():
        if block.get("required") and name not in present:
            problems.append(f"{where}: required block {name!r} missing")
    return problems


def _declared_blocks() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, type, name, body) of every resource and data block in terraform/*.tf."""
    out = []
    for path in sorted(TF_DIR.glob("*.tf")):
        doc = load_hcl(path)
        for kind, key in (("resources", "resource"), ("data_sources", "data")):
            for block in doc.get(key, []):
                for rtype, byname in block.items():
                    for name, body in byname.items():
                        out.append((kind, rtype, name, body))
    return out


def test_schemas_are_for_the_pinned_provider_versions(schemas: dict[str, dict[str, Any]]) -> None:
    required = _required_providers()
    assert set(required) == set(schemas), f"module providers {set(required)} vs schemas {set(schemas)}"
    for name, constraint in required.items():
        # Terraform's "~> 6.40" is PEP 440's "~=6.40": >= 6.40 within major 6.
        spec = SpecifierSet(constraint.replace("~>", "~=").replace(" ", ""))
        version = schemas[name]["provider_version"]
        assert Version(version) in spec, f"schema of {name} is {version}, the module pins {constraint}"


def test_every_resource_argument_and_block_exists_in_the_provider_schema(
    schemas: dict[str, dict[str, Any]],
) -> None:
    problems: list[str] = []
    blocks = _declared_blocks()
    assert len(blocks) > 50, "the module parsed into too few blocks to be the real module"
    for kind, rtype, name, body in blocks:
        provider = _provider_for(rtype, body)
        schema = schemas[provider][kind].get(rtype)
        where = f"{'data.' if kind == 'data_sources' else ''}{rtype}.{name} ({provider})"
        if schema is None:
            other = [p for p, s in schemas.items() if rtype in s[kind]]
            hint = f"; it exists in {other} (set provider =)" if other else ""
            problems.append(f"{where}: no such {kind[:-1].replace('_', ' ')} type{hint}")
            continue
        problems += _check_block(schema, body, where, top=True)
    assert not problems, "the module does not match its providers' schemas:\n" + "\n".join(problems)


REF = re.compile(r"(?<![\w.])(data\.)?((?:google|time|archive)_[a-z0-9_]+)\.([a-z0-9_-]+)(?:\[[^\]]*\])?\.([a-z0-9_]+)")


def test_every_reference_names_a_declared_block_and_an_attribute_it_has(
    schemas: dict[str, dict[str, Any]],
) -> None:
    tf = load_module()
    declared = {("data_sources" if k == "data_sources" else "resources", t, n): b for k, t, n, b in _declared_blocks()}
    texts = list(walk_strings([tf.resources, tf.data, tf.outputs, tf.locals, tf.variables]))
    problems, checked = [], 0
    for text in texts:
        for data, rtype, name, attr in REF.findall(text):
            kind = "data_sources" if data else "resources"
            body = declared.get((kind, rtype, name))
            if body is None:
                problems.append(f"reference to undeclared {data}{rtype}.{name}")
                continue
            schema = schemas[_provider_for(rtype, body)][kind][rtype]
            checked += 1
            if attr not in schema["attrs"]:
                problems.append(f"{data}{rtype}.{name} has no attribute {attr!r}")
    assert checked > 50, f"only {checked} references found: the reference pattern no longer matches the module"
    for text in texts:
        problems += [f"undeclared variable var.{v}" for v in re.findall(r"\bvar\.(\w+)", text) if v not in tf.variables]
        problems += [f"undeclared local.{v}" for v in re.findall(r"\blocal\.(\w+)", text) if v not in tf.locals]
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_checker_rejects_what_validate_would(schemas: dict[str, dict[str, Any]]) -> None:
    # The same checker on known-bad blocks: proof that it reports, not only that the module passes.
    run = schemas["google"]["resources"]["google_cloud_run_v2_service"]
    good = {"name": "x", "location": "r", "template": [{"containers": [{"image": "i"}]}]}
    assert _check_block(run, good, "ok", top=True) == []
    typo = {**good, "ingres": "INGRESS_TRAFFIC_ALL"}
    assert any("'ingres'" in p and "ingress" in p for p in _check_block(run, typo, "typo", top=True))
    missing = {"name": "x", "template": good["template"]}
    assert any("'location' missing" in p for p in _check_block(run, missing, "missing", top=True))
    as_arg = {**good, "template": {"containers": []}}
    assert any("is a block" in p for p in _check_block(run, as_arg, "as_arg", top=True))
    nested = {**good, "template": [{"containers": [{"image": "i", "resource": [{}]}]}]}
    assert any("'resource'" in p for p in _check_block(run, nested, "nested", top=True))
    # A google-beta-only type under the GA provider is reported.
    assert "google_project_service_identity" not in schemas["google"]["resources"]
    assert "google_project_service_identity" in schemas["google-beta"]["resources"]


def test_cache_lives_outside_the_clone() -> None:
    # A fresh clone (CI) reuses the schemas of earlier runs instead of downloading ~150 MB again.
    directory = _schema_module().cache_dir()
    assert not Path(directory).resolve().is_relative_to(REPO) or "HEALER_PROVIDER_SCHEMA_DIR" in os.environ
