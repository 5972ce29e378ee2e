"""Container and build hygiene: the Hugging Face token reaches the image build only as a BuildKit
secret, the image runs offline as a non-root user, and layers are ordered for fast code rebuilds."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import yaml
from tfhelpers import REPO

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
    assert "${PORT:-8080}" in cmd and "--timeout-graceful-shutdown 8" in cmd


def test_dockerignore_keeps_the_context_minimal() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "exclude everything, then allow what the image needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert {"pyproject.toml", "healer_core", "healer_media", "inference_service"} <= allowed
    assert not allowed & {".venv", ".healer", "terraform", "models", "tests", ".git"}


# ── cloudbuild.yaml ──────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def cloudbuild() -> dict:
    return yaml.safe_load((REPO / "cloudbuild.yaml").read_text())


def test_cloudbuild_passes_the_token_as_a_build_secret(cloudbuild: dict) -> None:
    secrets = cloudbuild["availableSecrets"]["secretManager"]
    assert any(s["env"] == "HF_TOKEN" and "/secrets/${_HF_SECRET}/" in s["versionName"] for s in secrets)
    build = next(s for s in cloudbuild["steps"] if s["id"] == "build-image")
    script = " ".join(build["args"])
    assert build["secretEnv"] == ["HF_TOKEN"]
    assert "--secret" in script and "id=hf_token" in script
    assert not re.search(r"--build-arg\s+\S*TOKEN", script, re.IGNORECASE)
    for step in cloudbuild["steps"]:
        if step["id"] != "build-image":
            assert "HF_TOKEN" not in step.get("secretEnv", []), f"step {step['id']} needs no token"


def test_cloudbuild_keeps_seed_names_and_deploys_by_digest(cloudbuild: dict) -> None:
    subs = cloudbuild["substitutions"]
    assert subs["_REGION"] == "europe-west1"
    assert subs["_REPOSITORY_NAME"] == "healer-medgemma"
    assert subs["_SERVICE_NAME"] == "healer-medgemma-service"
    assert subs["_MODEL_ID"] == "google/medgemma-4b-it"
    assert "_TF_STATE_BUCKET" in subs
    ids = [s["id"] for s in cloudbuild["steps"]]
    assert ids.index("unit-tests") < ids.index("build-image") < ids.index("push") < ids.index("deploy")
    deploy = " ".join(next(s for s in cloudbuild["steps"] if s["id"] == "deploy")["args"])
    assert 'backend-config="bucket=${_TF_STATE_BUCKET}"' in deploy
    assert "image_ref.txt" in deploy
    assert cloudbuild["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_torch_pins_agree_and_every_substitution_is_used(cloudbuild: dict) -> None:
    # The CPU torch of the tests (Makefile, Cloud Build's unit-tests step) and the image's CUDA
    # torch are the same version; the image's pins come from Cloud Build's substitutions.
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE))
    subs = cloudbuild["substitutions"]
    assert subs["_TORCH_VERSION"] == args["TORCH_VERSION"]
    assert subs["_TORCHVISION_VERSION"] == args["TORCHVISION_VERSION"]
    assert subs["_TORCH_INDEX_URL"] == args["TORCH_INDEX_URL"]
    makefile = (REPO / "Makefile").read_text()
    assert f"TORCH_SPEC ?= torch=={args['TORCH_VERSION']}" in makefile
    steps = yaml.safe_dump(cloudbuild["steps"])
    unused = [name for name in subs if "${" + name + "}" not in steps]
    assert not unused, f"substitutions no step uses: {unused}"
