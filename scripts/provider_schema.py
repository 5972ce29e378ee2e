"""Terraform provider schemas from CDK for Terraform's prebuilt provider wheels (`make provider-schemas`).

`terraform validate` needs the provider binaries, which cannot be downloaded here. The PyPI
packages `cdktf-cdktf-provider-<name>` carry the same provider's full schema in their jsii
assembly (`_jsii/*.jsii.tgz` → `package/.jsii`, JSON): one class per resource and data source,
one struct per configuration block, each property documented with its Terraform name. This reads
that assembly as data (no CDK runtime, nothing imported from the wheel) and writes a compact
schema per provider, cached by package version:

    <cache>/<provider>-<package version>.json = {
      "provider": "google", "provider_version": "6.50.0", "package": ..., "package_version": ...,
      "resources": {type: BLOCK}, "data_sources": {type: BLOCK}}
    BLOCK = {"args": {name: {"required": bool}}, "blocks": {name: BLOCK}, "attrs": [readable names]}

The wheels come from `pip download --require-hashes` of make/provider-schemas.txt; a schema
already in the cache for the locked version is not downloaded again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "make" / "provider-schemas.txt"
PIN = re.compile(r"^(cdktf-cdktf-provider-[a-z0-9-]+)==([0-9][^\s\\]*)", re.MULTILINE)
LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/([a-z0-9-]+)/([0-9.]+)/docs/(resources|data-sources)/\w+ (\w+)\}"
)
ANCHOR = re.compile(r"Docs at Terraform Registry: \{@link \S+#(\w+) ")
META_BASES = {"cdktf.TerraformResource": "resources", "cdktf.TerraformDataSource": "data_sources"}


def cache_dir() -> Path:
    """Where schemas are kept between runs (outside the clone, so fresh clones reuse them)."""
    if env := os.environ.get("HEALER_PROVIDER_SCHEMA_DIR"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "healer" / "provider-schemas"


def locked_packages(lock: Path = LOCK) -> dict[str, str]:
    """{package: version} pinned in make/provider-schemas.txt."""
    return dict(PIN.findall(lock.read_text()))


def provider_of(package: str) -> str:
    """cdktf-cdktf-provider-google-beta → google-beta."""
    return package.removeprefix("cdktf-cdktf-provider-")


def schema_path(package: str, version: str, directory: Path | None = None) -> Path:
    """The cached schema file of one locked package."""
    return (directory or cache_dir()) / f"{provider_of(package)}-{version}.json"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _tf_name(prop: dict[str, Any]) -> str:
    """A property's Terraform name: the anchor of its registry link, else camelCase → snake_case."""
    match = ANCHOR.search(prop.get("docs", {}).get("remarks", ""))
    return match.group(1) if match else _snake(prop["name"])


def _struct_of(type_ref: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The struct (configuration block) a property's type refers to, directly or as a list."""
    candidates = [type_ref]
    if "union" in type_ref:
        candidates = type_ref["union"]["types"]
    for ref in candidates:
        if "collection" in ref:
            ref = ref["collection"]["elementtype"]
        fqn = ref.get("fqn")
        if fqn and types.get(fqn, {}).get("datatype"):
            return str(fqn)
    return None


def _block(fqn: str, types: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    args: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        name = _tf_name(prop)
        struct = _struct_of(prop["type"], types)
        if struct and struct not in seen:
            block = _block(struct, types, (*seen, fqn))
            block["required"] = not prop.get("optional", False)
            blocks[name] = block
        else:
            args[name] = {"required": not prop.get("optional", False)}
    return {"args": args, "blocks": blocks}


def extract(assembly: dict[str, Any]) -> dict[str, Any]:
    """The compact schema of every resource and data source in one jsii assembly."""
    types: dict[str, Any] = assembly["types"]
    out: dict[str, Any] = {"resources": {}, "data_sources": {}}
    provider = version = ""
    for cls in types.values():
        kind = META_BASES.get(cls.get("base", ""))
        if cls.get("kind") != "class" or kind is None:
            continue
        link = LINK.search(cls.get("docs", {}).get("summary", ""))
        config = next((p for p in cls.get("initializer", {}).get("parameters", []) if p["name"] == "config"), None)
        if link is None or config is None:
            continue
        provider, version, _, tf_type = link.groups()
        block = _block(config["type"]["fqn"], types)
        readable = {_snake(p["name"]) for p in cls.get("properties", []) if not p.get("static")}
        block["attrs"] = sorted(readable | set(block["args"]) | set(block["blocks"]) | {"id"})
        out[kind][tf_type] = block
    if not out["resources"]:
        raise ValueError("no resources found in the jsii assembly")
    return {"provider": provider, "provider_version": version, **out}


def assembly_of(wheel: Path) -> dict[str, Any]:
    """The jsii assembly (package/.jsii) inside a provider wheel, parsed."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".jsii.tgz"))
        with zf.open(name) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            member = tar.extractfile("package/.jsii")
            if member is None:
                raise ValueError(f"{wheel.name}: no package/.jsii")
            return dict(json.load(member))


def ensure(directory: Path | None = None, lock: Path = LOCK) -> list[Path]:
    """Download (hash-checked) and extract every locked provider whose schema is not cached yet."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    pins = locked_packages(lock)
    missing = {pkg: ver for pkg, ver in pins.items() if not schema_path(pkg, ver, directory).exists()}
    if missing:
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            wanted = [line for line in _lock_entries(lock) if line[0] in missing]
            req = Path(tmp) / "requirements.txt"
            req.write_text("".join(text for _, text in wanted))
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
            cmd += ["--no-deps", "--require-hashes", "--only-binary=:all:", "-r", str(req), "-d", tmp]
            subprocess.run(cmd, check=True)
            for pkg, ver in missing.items():
                wheel = next(Path(tmp).glob(f"{pkg.replace('-', '_')}-{ver}-*.whl"))
                schema = extract(assembly_of(wheel))
                schema.update(package=pkg, package_version=ver)
                target = schema_path(pkg, ver, directory)
                target.with_suffix(".tmp").write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
                target.with_suffix(".tmp").replace(target)
                print(f"provider-schemas: {target.name} ({len(schema['resources'])} resources)", flush=True)
    return [schema_path(pkg, ver, directory) for pkg, ver in pins.items()]


def _lock_entries(lock: Path) -> list[tuple[str, str]]:
    """(package, its full requirement text with hashes) of each entry of a uv lock."""
    entries: list[tuple[str, str]] = []
    for chunk in re.split(r"\n(?=[a-z0-9])", lock.read_text()):
        match = PIN.match(chunk)
        if match:
            body = "\n".join(ln for ln in chunk.splitlines() if not ln.lstrip().startswith("#"))
            entries.append((match.group(1), body.rstrip() + "\n"))
    return entries


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: make sure every locked provider's schema is in the cache; print where."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="cache directory (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in ensure(args.dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
