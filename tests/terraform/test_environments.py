"""Environments (terraform/envs/{dev,staging,prod}.tfvars) and the make targets that deploy them.

Offline: every environment's settings pass the module's own variable validations (evaluated by
terraform itself on a module of just the variable blocks: no provider, no project) and the slide
service's sizing preconditions (the same, with the blocks that compute them), production's
protections are on, each environment keeps its state apart, and `make` turns ENV=… into exactly
those settings (read from `make -n`, which prints the commands without running them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tfhelpers import REPO, TF_DIR, load_hcl, load_module

ENVS = ("dev", "staging", "prod")
VARIABLE_BLOCK = re.compile(r'^variable "[^"]+" \{\n.*?^\}\n', re.MULTILINE | re.DOTALL)


def _env(name: str) -> dict:
    return load_hcl(TF_DIR / "envs" / f"{name}.tfvars")


@pytest.fixture(scope="module")
def terraform_bin() -> str:
    """Path of the terraform CLI; skip without it, except in CI where its absence is a failure."""
    path = shutil.which("terraform")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("terraform CLI not installed")
        pytest.skip("terraform CLI not installed: the variable validations need it")
    return path


@pytest.fixture(scope="module")
def variables_module(tmp_path_factory: pytest.TempPathFactory, terraform_bin: str) -> Path:
    """A module of every variable block of terraform/ (validations included), initialised."""
    work = tmp_path_factory.mktemp("variables")
    blocks = [b for path in sorted(TF_DIR.glob("*.tf")) for b in VARIABLE_BLOCK.findall(path.read_text())]
    assert len(blocks) == len(load_module().variables), "every variable block was extracted"
    (work / "variables.tf").write_text("\n".join(blocks))
    init = subprocess.run(
        [terraform_bin, "init", "-input=false", "-no-color"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return work


def _balanced(text: str, start: int) -> str:
    """The HCL block that opens at the first `{` from `start`, through its matching `}`."""
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[start : j + 1]
    raise AssertionError("unbalanced HCL block")


@pytest.fixture(scope="module")
def sizing_module(tmp_path_factory: pytest.TempPathFactory, terraform_bin: str) -> Path:
    """Every variable, the slide service's sizing locals and its preconditions, on a terraform_data
    resource (built in: no provider to download), initialised."""
    work = tmp_path_factory.mktemp("sizing")
    text = (TF_DIR / "slide_service.tf").read_text()
    locals_block = _balanced(text, text.index("locals {\n  slide_memory_mib"))
    service = text.index('resource "google_cloud_run_v2_service" "slide_service"')
    lifecycle = _balanced(text, text.index("  lifecycle {", service))
    blocks = [b for path in sorted(TF_DIR.glob("*.tf")) for b in VARIABLE_BLOCK.findall(path.read_text())]
    resource = f'resource "terraform_data" "slide_sizing" {{\n{lifecycle}\n}}\n'
    (work / "main.tf").write_text("\n".join([*blocks, locals_block, resource]))
    init = subprocess.run(
        [terraform_bin, "init", "-input=false", "-no-color"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return work


def _plan(terraform_bin: str, module: Path, var_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    cmd = [terraform_bin, "plan", "-input=false", "-no-color", "-lock=false", f"-var-file={var_file}", *extra]
    return subprocess.run(cmd, cwd=module, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("name", ENVS)
def test_environment_satisfies_the_variable_validations(name: str, terraform_bin: str, variables_module: Path) -> None:
    result = _plan(terraform_bin, variables_module, TF_DIR / "envs" / f"{name}.tfvars")
    assert result.returncode == 0, f"envs/{name}.tfvars fails the module's validations:\n{result.stderr}"


def test_the_validations_do_reject(terraform_bin: str, variables_module: Path, tmp_path: Path) -> None:
    # The same evaluation on a bad file fails: the passing runs above are not vacuous.
    bad = tmp_path / "bad.tfvars"
    prod = (TF_DIR / "envs" / "prod.tfvars").read_text()
    prod = re.sub(r"^max_instances\s*=.*$", "max_instances = 0", prod, flags=re.MULTILINE)
    prod = re.sub(r"^console_access\s*=.*$", 'console_access = "public"', prod, flags=re.MULTILINE)
    bad.write_text(prod)
    result = _plan(terraform_bin, variables_module, bad)
    assert result.returncode != 0
    assert "max_instances must be between 1 and 100" in result.stderr
    assert 'console_access must be "iap" or "invoker"' in result.stderr


@pytest.mark.parametrize("name", ENVS)
def test_environment_sizes_the_slide_service_for_its_measured_peak(
    name: str, terraform_bin: str, sizing_module: Path
) -> None:
    result = _plan(terraform_bin, sizing_module, TF_DIR / "envs" / f"{name}.tfvars")
    assert result.returncode == 0, f"envs/{name}.tfvars fails the slide service's sizing:\n{result.stderr}"


@pytest.mark.parametrize(
    ("cpu", "memory", "complaint"),
    [
        ("4", "1Gi", "outside Cloud Run's range for 4 vCPU"),  # Cloud Run wants 2 GiB at 4 vCPU
        ("2", "512Mi", "under the measured peak of tiling on 2 vCPU (556 MiB"),  # 216 + 2 x 138 + 64
        ("8", "4Gi", None),
    ],
)
def test_the_sizing_rejects_what_cannot_run(
    cpu: str, memory: str, complaint: str | None, terraform_bin: str, sizing_module: Path
) -> None:
    # dev.tfvars with the size overridden on the command line (a later -var wins).
    extra = [f"-var=slide_cpu={cpu}", f"-var=slide_memory={memory}"]
    result = _plan(terraform_bin, sizing_module, TF_DIR / "envs" / "dev.tfvars", *extra)
    if complaint is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert complaint in " ".join(result.stderr.split()), result.stderr


def test_production_protections_are_on() -> None:
    prod = _env("prod")
    assert prod["deletion_protection"] is True and prod["force_destroy"] is False
    assert prod["min_instances"] >= 1, "a warm instance"
    assert prod["max_instances"] >= prod["min_instances"]
    assert prod["inbox_versioning"] is True
    assert prod["results_versioning"] is True, "slide results are kept and recoverable"
    assert re.fullmatch(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+", prod["inbox_kms_key_name"])
    assert prod["notification_channels"], "alerts reach someone"
    assert prod.get("storage_data_access_logs", True) is True
    assert prod.get("console_access", "iap") == "iap"
    assert prod.get("console_access_member"), "someone can log in to the console"
    assert prod.get("build_can_deploy", True) is True


def test_staging_is_kept_and_lets_production_copy_its_images() -> None:
    staging, prod = _env("staging"), _env("prod")
    assert staging["deletion_protection"] is True
    prefix = prod.get("name_prefix", "healer")
    assert staging["image_readers"] == [f"serviceAccount:{prefix}-image@{prod['project_id']}.iam.gserviceaccount.com"]


def test_environments_are_separate() -> None:
    envs = {name: _env(name) for name in ENVS}
    for key in ("project_id", "tf_state_bucket"):
        values = [e[key] for e in envs.values()]
        assert len(set(values)) == len(values), f"environments share {key}: {values}"


def _make_n(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"PROJECT_ID", "REGION", "TF_STATE_BUCKET", "ENV"}}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


@pytest.mark.parametrize("name", ENVS)
def test_make_takes_every_setting_and_a_state_prefix_from_the_environment_file(name: str) -> None:
    env = _env(name)
    result = _make_n("tf-apply", f"ENV={name}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f'-backend-config="bucket={env["tf_state_bucket"]}"' in out
    assert f'-backend-config="prefix=healer/{name}"' in out
    assert f"-var-file=envs/{name}.tfvars" in out
    # Every variable make passes is passed on apply and destroy alike (an apply without
    # tf_state_bucket removes the deploy account's grant on the state bucket).
    for var in ("project_id", "tf_state_bucket", "region", "repository_name", "service_name", "name_prefix"):
        assert f'-var="{var}=' in out, var
    assert f'-var="project_id={env["project_id"]}"' in out
    destroy = _make_n("tf-destroy", f"ENV={name}").stdout
    assert f'-var="tf_state_bucket={env["tf_state_bucket"]}"' in destroy and f"-var-file=envs/{name}.tfvars" in destroy


def test_an_exported_project_cannot_redirect_an_environment() -> None:
    result = _make_n("tf-apply", "ENV=prod", env={"PROJECT_ID": "someone-elses-project"})
    assert result.returncode != 0
    assert "conflicts with terraform/envs/prod.tfvars" in result.stderr


def test_production_is_promoted_by_digest_never_built() -> None:
    refused = _make_n("deploy", "ENV=prod")
    assert refused.returncode != 0 and "make promote ENV=prod FROM=staging" in refused.stderr
    promote = _make_n("promote", "ENV=prod", "FROM=staging")
    assert promote.returncode == 0, promote.stderr
    out = promote.stdout
    staging, prod = _env("staging"), _env("prod")
    # What staging runs, read from staging's services …
    assert f'gcloud run services describe "{staging["service_name"]}" --project="{staging["project_id"]}"' in out
    assert "@sha256:" in out and "latestReadyRevisionName" in out
    # … copied by digest into production's repository and deployed from there, without a build.
    assert "--config=cloudbuild/promote.yaml" in out and "images.yaml" not in out and "docker build" not in out
    assert f"healer-image@{prod['project_id']}.iam.gserviceaccount.com" in out
    assert "apply-images" in out and "healer-inference@${image##*@}" in out
    # All three services: the slide service's image travels the same way.
    assert f'gcloud run services describe "{staging.get("slide_service_name", "healer-slide-service")}"' in out
    assert "_FROM_SLIDE_IMAGE=$slide" in out and "healer-slide@${slide##*@}" in out


def test_each_build_runs_as_its_stage_account() -> None:
    out = _make_n("deploy", "ENV=staging").stdout + _make_n("cloud-test", "ENV=staging").stdout
    out += _make_n("build", "ENV=staging").stdout
    out += _make_n(
        "apply-images",
        "ENV=staging",
        "IMAGE=r/healer-inference@sha256:aa",
        "CONSOLE_IMAGE=r/healer-console@sha256:bb",
        "SLIDE_IMAGE=r/healer-slide@sha256:cc",
    ).stdout
    pairs = set(
        re.findall(r"--config=(cloudbuild/\w+\.yaml) --service-account=\"[^\"]*/serviceAccounts/healer-(\w+)@", out)
    )
    assert pairs == {
        ("cloudbuild/test.yaml", "ci"),
        ("cloudbuild/images.yaml", "image"),
        ("cloudbuild/deploy.yaml", "deploy"),
    }


def test_make_help_lists_the_deploy_targets() -> None:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    documented = set(
        re.findall(r"^([a-zA-Z0-9_-]+):[^\n]*## ", (REPO / "make" / "deploy.mk").read_text(), re.MULTILINE)
    )
    assert {"deploy", "promote", "bootstrap", "tf-apply", "tf-destroy", "function-bundle"} <= documented
    assert documented <= listed, f"make help omits {documented - listed}"
    assert {"lock", "tools", "provider-schemas"} <= listed


def test_function_bundle_needs_no_virtualenv() -> None:
    out = _make_n("function-bundle").stdout
    assert "scripts/bundle_function.py" in out and ".venv/" not in out
