"""Static checks of the Terraform root module: formatting, validation, and parsed-HCL policy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tfhelpers import REPO, ROLE_RE, TF_DIR, Module, first, load_hcl, load_module, walk_strings

PROVIDERS = ("google", "google-beta", "archive", "time")
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")

# Every role each principal may hold anywhere in the module. A new grant must be added here
# deliberately, next to a comment in the .tf file saying why it is needed.
ROLE_ALLOWLIST: dict[str, set[str]] = {
    "sa:ingest": {"roles/datastore.user", "roles/pubsub.publisher", "roles/storage.objectViewer"},
    "sa:reconcile": {"roles/datastore.user", "roles/pubsub.publisher", "roles/storage.objectViewer"},
    "sa:inference": {"roles/datastore.user", "roles/storage.objectViewer", "roles/pubsub.publisher"},
    # The slide service (slide_service.tf): Firestore, read the inbox, write the work and results
    # buckets (objectUser: a retry overwrites), publish shards (jobs) and slide messages (slides).
    "sa:slide_service": {
        "roles/datastore.user",
        "roles/storage.objectViewer",
        "roles/storage.objectUser",
        "roles/pubsub.publisher",
    },
    "sa:eventarc_trigger": {"roles/eventarc.eventReceiver", "roles/run.invoker"},
    "sa:scheduler": {"roles/run.invoker"},
    "sa:push": {"roles/run.invoker"},
    "sa:function_build": {
        "roles/logging.logWriter",
        "roles/storage.objectAdmin",  # the gcf-v2-sources bucket only (IAM condition)
        "roles/storage.objectViewer",
        "roles/artifactregistry.writer",
    },
    # The three Cloud Build stages (build.tf): tests, images, deploy.
    "sa:ci": {"roles/logging.logWriter", "roles/storage.objectViewer"},
    "sa:image_build": {
        "roles/logging.logWriter",
        "roles/storage.objectViewer",
        "roles/artifactregistry.writer",
        "roles/secretmanager.secretAccessor",
    },
    "sa:deploy": {
        "roles/logging.logWriter",
        "roles/storage.objectViewer",
        "roles/storage.objectAdmin",
        "roles/iam.serviceAccountUser",
        "custom:secret_metadata_admin",
        # deploy roles (build_can_deploy): running this module needs them
        "roles/artifactregistry.admin",
        "roles/cloudfunctions.admin",
        "roles/cloudscheduler.admin",
        "roles/datastore.owner",
        "roles/eventarc.admin",
        "roles/iam.roleViewer",
        "roles/iam.serviceAccountAdmin",
        "roles/monitoring.alertPolicyEditor",
        "roles/pubsub.admin",
        "roles/resourcemanager.projectIamAdmin",
        "roles/run.admin",
        "roles/serviceusage.serviceUsageAdmin",
        "roles/storage.admin",
        # granting IAP access to the console; the last two only in a project without an organization
        "roles/iap.admin",
        "roles/iap.settingsAdmin",
        "roles/oauthconfig.editor",
    },
    "agent:pubsub": {"roles/pubsub.publisher", "roles/pubsub.subscriber", "roles/iam.serviceAccountTokenCreator"},
    "agent:gcs": {"roles/pubsub.publisher", "roles/cloudkms.cryptoKeyEncrypterDecrypter"},
    "agent:eventarc": {"roles/eventarc.serviceAgent"},
    # The review console (console.tf): read jobs, sign upload URLs as itself, write and read objects.
    "sa:console": {
        "roles/datastore.viewer",
        "roles/iam.serviceAccountTokenCreator",
        "roles/storage.objectCreator",
        "roles/storage.objectViewer",
    },
    "agent:iap": {"roles/run.invoker"},
    "${var.console_access_member}": {"roles/iap.httpsResourceAccessor", "roles/run.invoker"},
    # The next environment's image build account, for promotion (registry.tf): read-only.
    "var:image_readers": {"roles/artifactregistry.reader"},
}

# Grants on the whole project, per principal: only where Google offers no narrower scope.
PROJECT_LEVEL_ALLOWLIST: dict[str, set[str]] = {
    "sa:ingest": {"roles/datastore.user"},
    "sa:reconcile": {"roles/datastore.user"},
    "sa:inference": {"roles/datastore.user"},
    "sa:slide_service": {"roles/datastore.user"},
    "sa:eventarc_trigger": {"roles/eventarc.eventReceiver"},
    "sa:function_build": {"roles/logging.logWriter", "roles/storage.objectAdmin"},
    "sa:ci": {"roles/logging.logWriter"},
    "sa:image_build": {"roles/logging.logWriter"},
    "sa:deploy": ROLE_ALLOWLIST["sa:deploy"]
    - {
        "roles/storage.objectViewer",
        "roles/storage.objectAdmin",
        "roles/iam.serviceAccountUser",
    },
    "agent:gcs": {"roles/pubsub.publisher"},
    "agent:eventarc": {"roles/eventarc.serviceAgent"},
    "sa:console": {"roles/datastore.viewer"},
}


def _principal(member: str) -> str:
    """Map a member expression to a stable principal key (sa:<resource name> / agent:<name>)."""
    if m := re.search(r"google_service_account\.(\w+)\.", member):
        return f"sa:{m.group(1)}"
    if m := re.search(r"local\.(\w+)_agent\b", member):
        return f"agent:{m.group(1)}"
    return member


def _local_roles(tf: Module, name: str) -> set[str]:
    """Every role a local names, following the locals it is built from."""
    text = " ".join(walk_strings(tf.locals[name]))
    roles = set(ROLE_RE.findall(text))
    for other in set(re.findall(r"local\.(\w+)", text)) - {name}:
        if other in tf.locals:
            roles |= _local_roles(tf, other)
    return roles


def _roles_of(tf: Module, body: dict) -> set[str]:
    """The role(s) of an IAM resource, resolving `each.value` over a locals role set and custom roles."""
    role = body["role"]
    if role.startswith("roles/"):
        return {role}
    if m := re.fullmatch(r"\$\{google_project_iam_custom_role\.(\w+)\.name\}", role):
        return {f"custom:{m.group(1)}"}
    assert role == "${each.value}", f"unexpected role expression {role!r}"
    local = re.search(r"local\.(\w+)", body["for_each"]).group(1)
    return _local_roles(tf, local)


def _iam_grants(tf: Module) -> list[tuple[str, str, str, str]]:
    """(principal, role, resource type, resource name) of every IAM member grant."""
    grants = []
    for rtype, name, body in tf.iter_resources("google_"):
        if not rtype.endswith("_iam_member"):
            continue
        member = body["member"]
        if member == "${each.value}":
            # Members from a variable (the principal is the variable); any other source is opaque.
            var = re.fullmatch(r"\$\{toset\(var\.(\w+)\)\}", str(body.get("for_each", "")))
            if var is None:
                pytest.fail(f"{rtype}.{name}: members via for_each are not analysable; use a role set")
            member = f"var:{var.group(1)}"
        for role in _roles_of(tf, body):
            grants.append((_principal(member), role, rtype, name))
    return grants


@pytest.fixture(scope="module")
def tf() -> Module:
    """The parsed root module."""
    return load_module()


@pytest.fixture(scope="module")
def terraform_bin() -> str:
    """Path of the terraform CLI; skip without it, except in CI where its absence is a failure."""
    path = shutil.which("terraform")
    if path is None:
        message = "terraform CLI not installed: install Terraform >= 1.6 to run fmt/validate"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# ── CLI checks ───────────────────────────────────────────────────────────────────────────────


def test_terraform_fmt(terraform_bin: str) -> None:
    result = subprocess.run(
        [terraform_bin, "fmt", "-check", "-recursive", "-diff", str(TF_DIR), str(REPO / "tests/terraform/fixtures")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt would change files (run `make tf-fmt`):\n{result.stdout}"


def _provider_mirror() -> Path | None:
    """A local plugin directory holding every provider the module needs, if any."""
    candidates = [
        os.environ.get("TF_PLUGIN_CACHE_DIR", ""),
        "~/.terraform.d/plugins",
        "~/.terraform.d/plugin-cache",
        "/opt/tf-plugins",
        "/usr/share/terraform/plugins",
    ]
    for raw in candidates:
        if not raw:
            continue
        root = Path(raw).expanduser()
        if all(any((root / "registry.terraform.io/hashicorp" / p).glob("*/*")) for p in PROVIDERS):
            return root
    return None


# `terraform init` output when the only problem is that providers cannot be fetched (no registry
# access, or the registry is reachable but a download fails). Any other init error is a defect.
PROVIDER_DOWNLOAD_ERRORS = re.compile(
    r"Error: (Failed to query available provider packages|Failed to install provider|"
    r"Incompatible provider version|Failed to resolve provider packages)"
)
NETWORK_CAUSES = re.compile(r"could not connect to|no such host|dial tcp|i/o timeout|connection refused|TLS handshake")


def provider_download_failure(output: str) -> str | None:
    """The reason, when every error of a failed `terraform init` is a provider download; else None."""
    errors = [ln.strip() for ln in output.splitlines() if ln.strip().startswith("Error:")]
    if not errors or not all(PROVIDER_DOWNLOAD_ERRORS.match(e) for e in errors):
        return None
    if not NETWORK_CAUSES.search(output):
        return None
    return errors[0]


def test_terraform_validate(terraform_bin: str, tmp_path: Path) -> None:
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "policies"))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_REGISTRY_CLIENT_TIMEOUT": "10"}
    init = [terraform_bin, "init", "-backend=false", "-input=false", "-no-color"]
    mirror = _provider_mirror()
    if mirror is not None:
        init.append(f"-plugin-dir={mirror}")
    try:
        result = subprocess.run(init, cwd=work, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        pytest.skip("terraform validate skipped: `terraform init` timed out fetching providers (no registry access)")
    if result.returncode != 0:
        output = result.stdout + result.stderr
        reason = provider_download_failure(output)
        # Only a provider download may skip this test (also in CI); anything else init reports
        # (a syntax error, an invalid block, a bad constraint) is a failure of the module.
        assert reason is not None, f"terraform init failed for another reason than the provider download:\n{output}"
        pytest.skip(
            f"terraform validate skipped: the provider download failed ({reason}); the providers' schemas "
            "are checked offline by test_provider_schema.py, and Cloud Build runs validate (cloudbuild/test.yaml)."
        )
    result = subprocess.run(
        [terraform_bin, "validate", "-no-color"], cwd=work, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_skips_only_for_a_provider_download(terraform_bin: str, tmp_path: Path) -> None:
    # The skip rule above on real terraform output: an unreachable registry is a download failure;
    # a module error is not, even while the registry is unreachable.
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_REGISTRY_CLIENT_TIMEOUT": "5"}
    (tmp_path / "main.tf").write_text('resource "google_storage_bucket" "b" {\n  name = "x"\n  location = "EU"\n}\n')
    init = [terraform_bin, "init", "-backend=false", "-input=false", "-no-color"]
    result = subprocess.run(init, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    if result.returncode == 0:
        pytest.skip("the registry is reachable here: test_terraform_validate ran for real")
    assert provider_download_failure(result.stdout + result.stderr) is not None, result.stdout + result.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "main.tf").write_text(
        'terraform {\n  required_providers {\n    google = "~> 6.40"\n  }\n}\nresource "x" {\n'
    )
    result = subprocess.run(init, cwd=broken, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert provider_download_failure(result.stdout + result.stderr) is None, result.stdout + result.stderr


def test_results_command_survives_shell_substitution(terraform_bin: str, tmp_path: Path) -> None:
    # docs/DEPLOY.md runs `$(terraform output -raw results_command)`: a substitution passes quotes
    # through literally, so the command must need none. Evaluate the module's own expression with
    # terraform (a module of just the inputs it reads), then run it through bash both ways.
    tf = load_module()
    expression = tf.outputs["results_command"]["value"]
    if expression == "${local.results_command}":
        expression = tf.locals["results_command"]
    # The two names the command prints are, in the module, these inputs under other names.
    expression = expression.replace("google_storage_bucket.inbox.name", "local.inbox_bucket_name")
    expression = expression.replace("google_firestore_database.main.name", "var.firestore_database")
    whole = expression.startswith("${") and expression.endswith("}")
    hcl = expression[2:-1] if whole else json.dumps(expression)  # an expression, or a string template
    names = sorted(set(re.findall(r"\bvar\.(\w+)", expression)))
    local_names = sorted(set(re.findall(r"\blocal\.(\w+)", expression)))
    assert "firestore_database" in names, "the command must follow the configured database"
    argv_script = 'for a in "$@"; do printf "%s\\n" "$a"; done'
    for database in ("(default)", "verdicts-db"):
        work = tmp_path / database.strip("()")
        work.mkdir()
        values = {"project_id": "my-healer-prod", "firestore_database": database, "jobs_collection": "jobs"}
        body = "".join(f'variable "{n}" {{\n  default = {json.dumps(values[n])}\n}}\n' for n in names)
        body += "locals {\n" + "".join(f'  {n} = "inbox-bucket"\n' for n in local_names) + "}\n"
        body += f'output "cmd" {{\n  value = {hcl}\n}}\n'
        (work / "main.tf").write_text(body)
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
        for cmd in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-input=false", "-no-color"]):
            run = subprocess.run([terraform_bin, *cmd], cwd=work, capture_output=True, text=True, timeout=120, env=env)
            assert run.returncode == 0, run.stdout + run.stderr
        out = subprocess.run(
            [terraform_bin, "output", "-raw", "cmd"], cwd=work, capture_output=True, text=True, timeout=60, env=env
        ).stdout
        (work / "cmd.txt").write_text(out)
        substituted = subprocess.run(
            ["bash", "-c", f"set -- $(cat cmd.txt); {argv_script}"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split("\n")[:-1]
        pasted = subprocess.run(
            ["bash", "-c", f"set -- {out}; {argv_script}"], capture_output=True, text=True, timeout=30
        ).stdout.split("\n")[:-1]
        assert substituted == pasted, f"substituted {substituted} vs pasted {pasted}"
        assert substituted[:2] == ["healer", "results"]
        assert not [a for a in substituted if set(a) & set("'\"\\")], f"quotes reach the CLI: {substituted}"
        flags = dict(zip(substituted[2::2], substituted[3::2], strict=True))
        assert flags["--project"] == "my-healer-prod" and flags["--collection"] == "jobs"
        if database == "(default)":
            assert "--database" not in flags  # the CLI's default; "(default)" would need quoting
        else:
            assert flags["--database"] == database


# ── Parsed-HCL policy ────────────────────────────────────────────────────────────────────────


def test_no_public_principals(tf: Module) -> None:
    for rtype, name, body in tf.iter_resources():
        for text in walk_strings(body):
            for principal in PUBLIC_PRINCIPALS:
                assert principal not in text, f"{rtype}.{name} grants {principal}"


def test_no_basic_roles(tf: Module) -> None:
    texts = list(walk_strings([tf.resources, tf.locals]))
    found = {role for text in texts for role in ROLE_RE.findall(text)} & BASIC_ROLES
    assert not found, f"basic roles are never granted: {found}"


def test_no_authoritative_iam(tf: Module) -> None:
    # *_iam_binding / *_iam_policy would silently remove grants made outside Terraform.
    bad = [f"{t}.{n}" for t, n, _ in tf.iter_resources() if t.endswith(("_iam_binding", "_iam_policy"))]
    assert not bad, f"use *_iam_member grants, not authoritative bindings: {bad}"


def test_every_principal_holds_only_allowlisted_roles(tf: Module) -> None:
    held: dict[str, set[str]] = {}
    for principal, role, rtype, name in _iam_grants(tf):
        assert principal in ROLE_ALLOWLIST, f"{rtype}.{name}: unknown principal {principal}"
        assert role in ROLE_ALLOWLIST[principal], f"{rtype}.{name}: {principal} may not hold {role}"
        held.setdefault(principal, set()).add(role)
    # Every service account the module creates is used, and the allowlist names no stale one.
    accounts = {f"sa:{n}" for n in tf.resources["google_service_account"]}
    assert accounts == {p for p in ROLE_ALLOWLIST if p.startswith("sa:")}
    assert accounts <= set(held), f"service accounts without any grant: {accounts - set(held)}"


def test_project_level_grants_are_the_unavoidable_ones(tf: Module) -> None:
    for principal, role, rtype, name in _iam_grants(tf):
        if rtype == "google_project_iam_member":
            allowed = PROJECT_LEVEL_ALLOWLIST.get(principal, set())
            assert role in allowed, f"{rtype}.{name}: {principal} gets {role} on the whole project; scope it"


def test_resource_scoped_grants_target_the_right_resource(tf: Module) -> None:
    expect = {
        ("google_pubsub_topic_iam_member", "ingest_publishes_jobs"): "google_pubsub_topic.jobs",
        ("google_pubsub_topic_iam_member", "reconcile_publishes_jobs"): "google_pubsub_topic.jobs",
        ("google_pubsub_topic_iam_member", "pubsub_agent_publishes_dead_letters"): "google_pubsub_topic.dead_letter",
        ("google_pubsub_subscription_iam_member", "pubsub_agent_acks_jobs"): "google_pubsub_subscription.jobs_push",
        ("google_service_account_iam_member", "pubsub_agent_mints_push_token"): "google_service_account.push",
        ("google_storage_bucket_iam_member", "ingest_reads_inbox"): "google_storage_bucket.inbox",
        ("google_storage_bucket_iam_member", "reconcile_reads_inbox"): "google_storage_bucket.inbox",
        ("google_storage_bucket_iam_member", "inference_reads_inbox"): "google_storage_bucket.inbox",
        ("google_cloud_run_v2_service_iam_member", "push_invokes_inference"): "google_cloud_run_v2_service.inference",
        ("google_cloud_run_v2_service_iam_member", "eventarc_invokes_ingest"): "google_cloudfunctions2_function.ingest",
        ("google_cloud_run_v2_service_iam_member", "scheduler_invokes_reconcile"): (
            "google_cloudfunctions2_function.reconcile"
        ),
        ("google_secret_manager_secret_iam_member", "image_build_reads_hf_token"): (
            "google_secret_manager_secret.hf_token"
        ),
        # The slide path.
        ("google_storage_bucket_iam_member", "slide_service_reads_inbox"): "google_storage_bucket.inbox",
        ("google_storage_bucket_iam_member", "slide_service_writes_work"): "google_storage_bucket.work",
        ("google_storage_bucket_iam_member", "slide_service_writes_results"): "google_storage_bucket.results",
        ("google_pubsub_topic_iam_member", "slide_service_publishes_jobs"): "google_pubsub_topic.jobs",
        ("google_pubsub_topic_iam_member", "slide_service_publishes_slides"): "google_pubsub_topic.slides",
        ("google_storage_bucket_iam_member", "inference_reads_work"): "google_storage_bucket.work",
        ("google_pubsub_topic_iam_member", "inference_publishes_slides"): "google_pubsub_topic.slides",
        ("google_pubsub_topic_iam_member", "ingest_publishes_slides"): "google_pubsub_topic.slides",
        ("google_pubsub_topic_iam_member", "reconcile_publishes_slides"): "google_pubsub_topic.slides",
        ("google_storage_bucket_iam_member", "console_reads_results"): "google_storage_bucket.results",
        ("google_pubsub_topic_iam_member", "pubsub_agent_publishes_slide_dead_letters"): (
            "google_pubsub_topic.slides_dead_letter"
        ),
        ("google_pubsub_subscription_iam_member", "pubsub_agent_acks_slides"): (
            "google_pubsub_subscription.slides_push"
        ),
        ("google_cloud_run_v2_service_iam_member", "push_invokes_slide_service"): (
            "google_cloud_run_v2_service.slide_service"
        ),
    }
    for (rtype, name), target in expect.items():
        body = tf.resource(rtype, name)
        scope = " ".join(
            str(body.get(k, "")) for k in ("topic", "subscription", "service_account_id", "bucket", "name", "secret_id")
        )
        assert target + "." in scope, f"{rtype}.{name} must be scoped to {target}, got {scope!r}"


def test_only_the_push_account_invokes_the_inference_service(tf: Module) -> None:
    invokers = [
        body["member"]
        for _, _, body in tf.iter_resources("google_cloud_run_v2_service_iam_member")
        if "google_cloud_run_v2_service.inference." in body["name"]
    ]
    assert invokers == ["serviceAccount:${google_service_account.push.email}"]


def test_push_subscription_has_oidc_and_dead_letter(tf: Module) -> None:
    sub = tf.resource("google_pubsub_subscription", "jobs_push")
    push = first(sub["push_config"])
    assert push["push_endpoint"].endswith("/pubsub/push")
    oidc = first(push["oidc_token"])
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${local.inference_url}"
    dlq = first(sub["dead_letter_policy"])
    assert dlq["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dlq["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert tf.variables["max_delivery_attempts"]["default"] == 5
    assert sub["ack_deadline_seconds"] == "${var.ack_deadline_seconds}"
    assert tf.variables["ack_deadline_seconds"]["default"] == 600
    assert first(sub["retry_policy"]) == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
    assert first(sub["expiration_policy"]) == {"ttl": ""}


def test_dead_letter_path_is_pushed_and_retained(tf: Module) -> None:
    push = tf.resource("google_pubsub_subscription", "dead_letter_push")
    assert push["topic"] == "${google_pubsub_topic.dead_letter.id}"
    cfg = first(push["push_config"])
    assert cfg["push_endpoint"].endswith("/pubsub/dead-letter")
    assert first(cfg["oidc_token"])["service_account_email"] == "${google_service_account.push.email}"
    hold = tf.resource("google_pubsub_subscription", "dead_letter_hold")
    assert "push_config" not in hold
    assert hold["message_retention_duration"] == "604800s"
    assert first(hold["expiration_policy"]) == {"ttl": ""}


def test_every_push_subscription_is_signed(tf: Module) -> None:
    for _, name, body in tf.iter_resources("google_pubsub_subscription"):
        if name.endswith("_iam_member") or "push_config" not in body:
            continue
        assert "oidc_token" in first(body["push_config"]), f"{name} pushes without OIDC"


def test_inference_service_is_internal_gpu_and_tied_to_the_batch(tf: Module) -> None:
    svc = tf.resource("google_cloud_run_v2_service", "inference")
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert "invoker_iam_disabled" not in svc
    tpl = first(svc["template"])
    assert first(tpl["node_selector"])["accelerator"] == "nvidia-l4"
    assert tpl["gpu_zonal_redundancy_disabled"] == "${var.gpu_zonal_redundancy_disabled}"
    assert tpl["timeout"] == "600s"
    assert tpl["max_instance_request_concurrency"] == "${local.max_concurrency}"
    assert "var.max_batch_size" in tf.locals["max_concurrency"]
    scaling = first(tpl["scaling"])
    assert scaling == {"min_instance_count": "${var.min_instances}", "max_instance_count": "${var.max_instances}"}
    container = first(tpl["containers"])
    resources = first(container["resources"])
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["cpu_idle"] is False
    assert tf.variables["cpu"]["default"] == "8" and tf.variables["memory"]["default"] == "32Gi"
    startup = first(container["startup_probe"])
    assert first(startup["http_get"])["path"] == "/readyz"
    assert startup["period_seconds"] * startup["failure_threshold"] >= 300, "model load needs minutes"
    assert first(first(container["liveness_probe"])["http_get"])["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["MODEL_DIR"] == "/models/medgemma"
    for name in (
        "PROJECT_ID",
        "JOBS_COLLECTION",
        "FIRESTORE_DATABASE",
        "MODEL_ID",
        "MAX_BATCH_SIZE",
        "BATCH_WINDOW_MS",
        "QUANTIZATION",
        "PUSH_AUDIENCE",
        "PUSH_SERVICE_ACCOUNT",
        "LEASE_SECONDS",
    ):
        assert name in env, f"inference service lacks env {name}"
    assert env["PUSH_AUDIENCE"] == "${local.inference_url}"
    assert env["PUSH_SERVICE_ACCOUNT"] == "${google_service_account.push.email}"


def test_functions_are_internal_and_built_from_the_bundle(tf: Module) -> None:
    for name, entry in (("ingest", "ingest"), ("reconcile", "reconcile")):
        fn = tf.resource("google_cloudfunctions2_function", name)
        build = first(fn["build_config"])
        assert build["runtime"] == "python311"
        assert build["entry_point"] == entry
        source = first(first(build["source"])["storage_source"])
        assert source["object"] == "${google_storage_bucket_object.function_source.name}"
        service = first(fn["service_config"])
        assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
        assert service["service_account_email"] == f"${{google_service_account.{name}.email}}"
        assert service["environment_variables"] == "${local.function_env}"
    env = tf.locals["function_env"]
    assert set(env) >= {
        "PROJECT_ID",
        "JOBS_TOPIC",
        "JOBS_COLLECTION",
        "FIRESTORE_DATABASE",
        "MAX_IMAGE_BYTES",
        "HEALER_BUCKET",
    }
    obj = tf.resource("google_storage_bucket_object", "function_source")
    assert "data.archive_file.function_bundle.output_sha256" in obj["name"], "content hash in the object name"


def test_ingest_trigger_retries_finalized_events_of_the_inbox(tf: Module) -> None:
    trigger = first(tf.resource("google_cloudfunctions2_function", "ingest")["event_trigger"])
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["service_account_email"] == "${google_service_account.eventarc_trigger.email}"
    assert first(trigger["event_filters"]) == {"attribute": "bucket", "value": "${google_storage_bucket.inbox.name}"}
    depends = tf.resource("google_cloudfunctions2_function", "ingest")["depends_on"]
    assert "${time_sleep.agent_iam_propagation}" in depends, "first apply must wait for agent IAM"


def test_reconcile_is_scheduled_with_its_own_account(tf: Module) -> None:
    job = tf.resource("google_cloud_scheduler_job", "reconcile")
    assert job["schedule"] == "${var.reconcile_schedule}"
    assert tf.variables["reconcile_schedule"]["default"] == "*/15 * * * *"
    target = first(job["http_target"])
    assert target["http_method"] == "POST"
    oidc = first(target["oidc_token"])
    assert oidc["service_account_email"] == "${google_service_account.scheduler.email}"


def test_console_iap_grant_is_keyed_by_project_number(tf: Module) -> None:
    # With the project id the binding is created but admits no one (terraform-provider-google#23092).
    grant = tf.resource("google_iap_web_cloud_run_service_iam_member", "console_users")
    assert grant["project"] == "${local.project_number}"
    assert grant["role"] == "roles/iap.httpsResourceAccessor"
    assert tf.resource("google_cloud_run_v2_service", "console")["iap_enabled"] == '${var.console_access == "iap"}'


def test_console_checks_its_callers_the_way_its_access_mode_says(tf: Module) -> None:
    # The backend refuses to start on Cloud Run without CONSOLE_ACCESS=invoker or an IAP audience
    # (console/backend/settings.py): the module must always pass the one its access mode needs.
    container = first(tf.resource("google_cloud_run_v2_service", "console")["template"])["containers"]
    container = first(container)
    plain = {e["name"]: e["value"] for e in container["env"]}
    assert plain["CONSOLE_ACCESS"] == "${var.console_access}"
    dynamic_env = [block["env"] for block in container["dynamic"] if "env" in block]
    assert (
        len(dynamic_env) == 1
        and dynamic_env[0]["for_each"] == '${var.console_access == "iap" ? [local.console_iap_audience] : []}'
    )
    assert first(dynamic_env[0]["content"])["name"] == "IAP_AUDIENCE"
    assert tf.locals["console_iap_audience"] == (
        "/projects/${local.project_number}/locations/${var.region}/services/${var.console_service_name}"
    )


def test_browser_uploads_may_send_the_signed_size_header(tf: Module) -> None:
    # Signed upload URLs bind the size with x-goog-content-length-range; without it in the CORS
    # rule the browser's preflight fails and no console upload reaches the bucket.
    cors = first(tf.resource("google_storage_bucket", "inbox")["cors"])
    assert "x-goog-content-length-range" in cors["response_header"]


def test_buckets_are_private(tf: Module) -> None:
    buckets = tf.resources["google_storage_bucket"]
    assert {"inbox", "function_source"} <= set(buckets)
    for name, body in buckets.items():
        assert body["public_access_prevention"] == "enforced", f"bucket {name}"
        assert body["uniform_bucket_level_access"] is True, f"bucket {name}"
    inbox = buckets["inbox"]
    dynamic = {name: body["for_each"] for block in inbox["dynamic"] for name, body in block.items()}
    assert "var.inbox_kms_key_name" in dynamic["encryption"], "optional CMEK"
    assert dynamic["lifecycle_rule"] == "${var.inbox_lifecycle_rules}"
    assert first(inbox["versioning"])["enabled"] == "${var.inbox_versioning}"


def test_firestore_index_and_ttl(tf: Module) -> None:
    db = tf.resource("google_firestore_database", "main")
    assert db["type"] == "FIRESTORE_NATIVE"
    index = tf.resource("google_firestore_index", "jobs_by_object")
    fields = [(f["field_path"], f["order"]) for f in index["fields"]]
    assert fields == [("bucket", "ASCENDING"), ("name", "ASCENDING"), ("generation", "DESCENDING")]
    ttl = tf.resource("google_firestore_field", "jobs_ttl")
    assert ttl["count"] == "${var.job_ttl_days > 0 ? 1 : 0}"
    assert ttl["field"] == "expire_at"
    assert "ttl_config" in ttl


def test_secret_has_no_value_in_terraform(tf: Module) -> None:
    assert "google_secret_manager_secret_version" not in tf.resources
    members = [b["member"] for _, _, b in tf.iter_resources("google_secret_manager_secret_iam_member")]
    assert members == ["serviceAccount:${google_service_account.image_build.email}"]


def test_alerts_cover_dead_letters_backlog_and_5xx(tf: Module) -> None:
    filters = " ".join(
        first(c["condition_threshold"])["filter"]
        for _, _, p in tf.iter_resources("google_monitoring_alert_policy")
        for c in p["conditions"]
    )
    assert "subscription/dead_letter_message_count" in filters
    assert "subscription/oldest_unacked_message_age" in filters
    # The slide path's dead letters page like the jobs ones.
    slides = first(tf.resource("google_monitoring_alert_policy", "slide_dead_letters")["conditions"])
    slide_filter = first(slides["condition_threshold"])["filter"].replace('\\"', '"')
    assert 'subscription_id = "${google_pubsub_subscription.slides_push.name}"' in slide_filter
    assert "subscription/dead_letter_message_count" in slide_filter
    assert "run.googleapis.com/request_count" in filters and "5xx" in filters
    for _, name, p in tf.iter_resources("google_monitoring_alert_policy"):
        assert p["notification_channels"] == "${var.notification_channels}", name


def test_every_variable_is_typed_described_and_seed_names_kept(tf: Module) -> None:
    for name, body in tf.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(body.get("description", "")) >= 15, f"variable {name} needs a description"
    defaults = {k: tf.variables[k].get("default") for k in ("region", "repository_name", "service_name", "model_id")}
    assert defaults == {
        "region": "europe-west1",
        "repository_name": "healer-medgemma",
        "service_name": "healer-medgemma-service",
        "model_id": "google/medgemma-1.5-4b-it",
    }
    assert "default" not in tf.variables["project_id"]


def test_every_output_is_described(tf: Module) -> None:
    for name in (
        "inbox_bucket",
        "service_url",
        "jobs_topic",
        "dead_letter_topic",
        "firestore_database",
        "upload_command",
        "results_command",
        "ingest_function",
        "reconcile_function",
        "slides_topic",
        "slides_subscription",
        "slides_dead_letter_topic",
        "slides_dead_letter_hold_subscription",
        "work_bucket",
        "results_bucket",
        "slide_service_url",
        "slide_service_name",
        "slide_service_account",
    ):
        assert name in tf.outputs, f"missing output {name}"
    for name, body in tf.outputs.items():
        assert body.get("description"), f"output {name} has no description"


def test_providers_and_backend(tf: Module) -> None:
    block = tf.terraform[0]
    providers = (
        first(block["required_providers"])
        if isinstance(block["required_providers"], list)
        else block["required_providers"]
    )
    assert {"google", "google-beta", "archive"} <= set(providers)
    assert "gcs" in first(block["backend"]), "state in a GCS backend configured by -backend-config"


def test_example_tfvars_use_only_declared_variables(tf: Module) -> None:
    for path in sorted((TF_DIR / "envs").glob("*.tfvars")):
        unknown = set(load_hcl(path)) - set(tf.variables)
        assert not unknown, f"{path.name} sets undeclared variables {unknown}"


# ── Who may do what in a deploy ──────────────────────────────────────────────────────────────

ATTACH_KEYS = ("service_account", "service_account_email")


def _attached_accounts(value: object) -> list[str]:
    """Service accounts (resource names) a resource body attaches as an identity, at any depth."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ATTACH_KEYS and isinstance(item, str):
                found += re.findall(r"google_service_account\.(\w+)\.", item)
            else:
                found += _attached_accounts(item)
    elif isinstance(value, list):
        for item in value:
            found += _attached_accounts(item)
    return found


def test_the_deploy_account_can_act_as_every_identity_it_attaches(tf: Module) -> None:
    # Creating a service, function, trigger, push subscription or scheduler job that runs as an
    # account needs actAs on it: a missing one fails the first full apply (the console did).
    attached: dict[str, list[str]] = {}
    for rtype, name, body in tf.iter_resources("google_"):
        if rtype.endswith("_iam_member"):
            continue
        for account in _attached_accounts(body):
            attached.setdefault(account, []).append(f"{rtype}.{name}")
    assert {
        "inference",
        "console",
        "ingest",
        "reconcile",
        "push",
        "scheduler",
        "eventarc_trigger",
        "slide_service",
    } <= set(attached)
    acts_as = set(
        re.findall(r"google_service_account\.(\w+)\.name", " ".join(walk_strings(tf.locals["build_acts_as"])))
    )
    missing = {a: where for a, where in attached.items() if a not in acts_as}
    assert not missing, f"the deploy account cannot act as {missing}: add them to local.build_acts_as"
    grant = tf.resource("google_service_account_iam_member", "deploy_acts_as")
    assert grant["role"] == "roles/iam.serviceAccountUser"
    assert grant["member"] == "serviceAccount:${google_service_account.deploy.email}"


def test_the_deploy_account_can_grant_console_access_through_iap(tf: Module) -> None:
    # google_iap_web_cloud_run_service_iam_member needs iap.admin; without an organization IAP's
    # settings and OAuth configuration need their own roles.
    assert tf.resources["google_iap_web_cloud_run_service_iam_member"], "the console grants IAP access"
    iap = " ".join(walk_strings(tf.locals["build_iap_roles"]))
    assert 'var.console_access == "iap"' in iap and "roles/iap.admin" in iap
    assert re.search(
        r"local\.project_in_organization \? \[\] : \[.*roles/iap\.settingsAdmin.*roles/oauthconfig\.editor", iap
    )
    assert "local.build_iap_roles" in " ".join(walk_strings(tf.locals["build_deploy_roles"]))
    org = tf.locals["project_in_organization"]
    assert "data.google_project.this.org_id" in org and "data.google_project.this.folder_id" in org


def test_each_build_stage_holds_only_what_it_needs(tf: Module) -> None:
    held: dict[str, set[tuple[str, str, str]]] = {}
    for principal, role, rtype, name in _iam_grants(tf):
        held.setdefault(principal, set()).add((role, rtype, name))
    # Tests: write their log and read their own source, nothing else.
    assert {(r, t) for r, t, _ in held["sa:ci"]} == {
        ("roles/logging.logWriter", "google_project_iam_member"),
        ("roles/storage.objectViewer", "google_storage_bucket_iam_member"),
    }
    staging = tf.resource("google_storage_bucket_iam_member", "ci_reads_staging")
    assert staging["bucket"] == "${google_storage_bucket.build_staging.name}"
    # Only the image build reads the token; the deploy account reads no secret value at all.
    readers = {p for p, roles in held.items() for r, _, _ in roles if r == "roles/secretmanager.secretAccessor"}
    assert readers == {"sa:image_build"}
    deploy_roles = {r for r, _, _ in held["sa:deploy"]}
    assert not {r for r in deploy_roles if r.startswith("roles/secretmanager.")}, deploy_roles
    assert "custom:secret_metadata_admin" in deploy_roles
    custom = tf.resource("google_project_iam_custom_role", "secret_metadata_admin")
    assert "secretmanager.secrets.setIamPolicy" in custom["permissions"]
    assert not [p for p in custom["permissions"] if ".versions." in p], "no permission on secret versions"
    # The image build pushes, but cannot deploy.
    assert {r for r, _, _ in held["sa:image_build"]} <= {
        "roles/logging.logWriter",
        "roles/storage.objectViewer",
        "roles/artifactregistry.writer",
        "roles/secretmanager.secretAccessor",
    }


def test_function_build_reads_only_the_gcf_sources_bucket_at_project_level(tf: Module) -> None:
    grant = tf.resource("google_project_iam_member", "function_build_reads_gcf_sources")
    condition = first(grant["condition"])
    condition["expression"] = condition["expression"].replace('\\"', '"')
    assert condition["expression"].startswith('resource.name.startsWith("projects/_/buckets/gcf-v2-sources-')
    assert "${local.project_number}-${var.region}" in condition["expression"]


def test_first_apply_waits_for_what_agents_need(tf: Module) -> None:
    wait = tf.resource("time_sleep", "agent_iam_propagation")["depends_on"]
    assert "${google_kms_crypto_key_iam_member.gcs_agent_cmek}" in wait, "CMEK grant before the inbox"
    assert "${google_project_service_identity.iap}" in wait, "IAP agent exists before it is granted"
    assert "${time_sleep.agent_iam_propagation}" in tf.resource("google_storage_bucket", "inbox")["depends_on"]
    iap_grant = tf.resource("google_cloud_run_v2_service_iam_member", "iap_invokes_console")
    assert "${time_sleep.agent_iam_propagation}" in iap_grant["depends_on"]


def test_name_prefix_claims_only_what_it_prefixes(tf: Module) -> None:
    description = tf.variables["name_prefix"]["description"]
    assert "share a project" not in description
    assert "one deployment per project" in description.lower()
