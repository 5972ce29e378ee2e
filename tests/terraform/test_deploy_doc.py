"""docs/DEPLOY.md against what it describes: a first deploy a reader can follow as written."""

from __future__ import annotations

import re
import subprocess

import pytest
from tfhelpers import REPO, load_module

DOC = REPO / "docs" / "DEPLOY.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_no_link_leaves_the_repository(doc: str) -> None:
    # Readers have the repository, not the workshop around it: everything they need is in it.
    targets = re.findall(r"\]\(([^)]+)\)", doc) + re.findall(r"`(\.\./[^`]+)`", doc)
    outside = [t for t in targets if t.startswith("../") and not (DOC.parent / t).resolve().is_relative_to(REPO)]
    assert not outside, f"links outside the repository: {outside}"
    assert "../shared" not in doc


def test_adc_gets_a_quota_project(doc: str) -> None:
    login = doc.index("gcloud auth application-default login")
    assert "gcloud auth application-default set-quota-project" in doc[login:]


def test_every_make_target_the_doc_runs_exists(doc: str) -> None:
    listed = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True).stdout
    targets = {line.split()[0] for line in listed.splitlines() if line.strip()}
    used = set(re.findall(r"(?:^|`|&& )make (?:-n )?([a-z][a-z0-9-]+)", doc, re.MULTILINE))
    assert used, "the doc runs no make target"
    assert used <= targets, f"the doc runs make targets that do not exist: {used - targets}"
    for step in ("make bootstrap", "make hf-token", "make deploy", "make promote", "make venv", "make tf-destroy"):
        assert step in doc, step


def test_running_terraform_by_hand_names_every_variable_make_passes(doc: str) -> None:
    make_vars = set(re.findall(r'-var="(\w+)=', (REPO / "make" / "deploy.mk").read_text()))
    assert {"project_id", "tf_state_bucket", "region"} <= make_vars
    section = doc[doc.index("## 11. Running Terraform yourself") : doc.index("## 12.")]
    missing = [v for v in sorted(make_vars) if f"`{v}`" not in section]
    assert not missing, f"the by-hand section omits {missing}"
    assert "make tf-apply" in section and "make tf-destroy" in section


def test_the_console_and_its_first_login_are_explained(doc: str) -> None:
    section = doc[doc.index("## 9. The review console") : doc.index("## 10.")]
    for needle in ("console_access_member", "iap", "invoker", "organization", "Without an organization", "first user"):
        assert needle in section, needle
    assert "gcloud run services proxy" in section


def test_the_healer_cli_is_installed_before_step_8_uses_it(doc: str) -> None:
    results = doc.index("$(terraform -chdir=terraform output -raw results_command)")
    assert doc.rfind("make venv", 0, results) != -1


def test_every_service_account_is_in_the_security_table(doc: str) -> None:
    tf = load_module()
    ids = tf.locals["build_account_ids"]
    table = doc[doc.index("| identity | grants | why |") :]
    for name, body in tf.resources["google_service_account"].items():
        account = body["account_id"].replace("${local.prefix}", "healer")
        account = re.sub(r"\$\{local\.build_account_ids\.(\w+)\}", lambda m: ids[m.group(1)], account)
        assert f"`{account}`" in table, f"google_service_account.{name} ({account}) is not in the security table"


def test_gpu_quota_and_regions_are_stated(doc: str) -> None:
    assert "Total Nvidia L4 GPU allocation without zonal" in doc
    assert "max_instances" in doc[: doc.index("## 1. Sign in")]
    variables = (REPO / "terraform" / "variables.tf").read_text()
    region_desc = re.search(r'variable "region" \{\n  description = "([^"]+)"', variables).group(1)
    assert "us-east4" not in region_desc and "us-east4" not in doc


def test_supply_chain_section_names_every_unconfirmed_digest(doc: str) -> None:
    section = doc[doc.index("## 13. Supply chain") : doc.index("## Operating")]
    images = set()
    for path in [REPO / "inference_service" / "Dockerfile", REPO / "console" / "Dockerfile"]:
        images |= set(re.findall(r"^FROM ([\w./-]+):[\w.-]+@sha256", path.read_text(), re.MULTILINE))
    for path in (REPO / "cloudbuild").glob("*.yaml"):
        images |= set(re.findall(r"#\s+([\w./-]+)(?::[\w.-]+)?\s*(?:\(|$)", path.read_text(), re.MULTILINE)) & {
            "hashicorp/terraform",
            "gcr.io/cloud-builders/docker",
            "gcr.io/go-containerregistry/gcrane",
        }
    assert images >= {"python", "nvidia/cuda", "node"}
    for image in images:
        assert image in section, f"{image} is pinned but the doc does not say so"
    assert "could be confirmed" in section and "imagetools inspect" in section
    assert "not by hash" in section and "make lock" in section
