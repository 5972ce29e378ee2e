"""The slide path in the Terraform module, parsed: the slide service (internal, CPU, gen2, the inbox
mounted read-only), its topic with push, retries and dead letters, the work and results buckets,
and who may read, write and publish what.

The module-wide rules (allowlisted roles, no public principal, resource-scoped grants, act-as)
live in test_terraform.py and cover these resources too; this file checks what is specific to
slides.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from tfhelpers import TF_DIR, Module, first, load_module, walk_strings

# Roles that create, overwrite or delete objects.
WRITE_ROLES = {
    "roles/storage.objectCreator",
    "roles/storage.objectUser",
    "roles/storage.objectAdmin",
    "roles/storage.admin",
}
TILING_ENV = ("TILE_MPP", "TILE_PX", "MIN_TISSUE", "SHARD_TILES", "SLIDE_TOP_K")
BUDGET_ENV = ("MAX_SLIDE_BYTES", "MAX_SLIDE_PIXELS", "MAX_SLIDE_TILES")


@pytest.fixture(scope="module")
def tf() -> Module:
    return load_module()


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def _grants(tf: Module) -> list[tuple[str, str, str]]:
    """(principal, role, target) of every single-resource IAM grant; target as `<type>.<name>`."""
    out = []
    for rtype, _, body in tf.iter_resources("google_"):
        if not rtype.endswith("_iam_member") or rtype == "google_project_iam_member":
            continue
        member = body["member"]
        who = re.search(r"google_service_account\.(\w+)\.", member)
        principal = f"sa:{who.group(1)}" if who else member
        scope = " ".join(str(body.get(k, "")) for k in ("bucket", "topic", "subscription", "name"))
        target = re.search(r"(google_[a-z0-9_]+\.\w+)\.", scope)
        out.append((principal, body["role"], target.group(1) if target else scope))
    return out


# ── The service ──────────────────────────────────────────────────────────────────────────────


def test_slide_service_is_internal_cpu_gen2_with_its_own_account(tf: Module) -> None:
    svc = tf.resource("google_cloud_run_v2_service", "slide_service")
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert "invoker_iam_disabled" not in svc and "iap_enabled" not in svc
    # mount_options exists only in google-beta's 6.x schema (test_provider_schema.py checks it there).
    assert svc["provider"].strip("${}") == "google-beta"
    tpl = first(svc["template"])
    assert tpl["execution_environment"] == "EXECUTION_ENVIRONMENT_GEN2", "Cloud Storage volumes need gen2"
    assert tpl["service_account"] == "${google_service_account.slide_service.email}"
    assert "node_selector" not in tpl and "gpu_zonal_redundancy_disabled" not in tpl, "CPU only"
    container = first(tpl["containers"])
    limits = first(container["resources"])["limits"]
    assert set(limits) == {"cpu", "memory"}, f"CPU only: {limits}"
    assert limits == {"cpu": "${var.slide_cpu}", "memory": "${var.slide_memory}"}
    scaling = first(tpl["scaling"])
    assert scaling == {
        "min_instance_count": "${var.slide_min_instances}",
        "max_instance_count": "${var.slide_max_instances}",
    }
    assert first(first(container["startup_probe"])["http_get"])["path"] == "/readyz"
    assert first(first(container["liveness_probe"])["http_get"])["path"] == "/healthz"
    assert container["image"] == "${local.slide_image}"
    assert "healer-slide:latest" in tf.locals["slide_image"]


def test_slide_service_reads_the_inbox_through_a_read_only_fuse_mount_at_slide_mount(tf: Module) -> None:
    tpl = first(tf.resource("google_cloud_run_v2_service", "slide_service")["template"])
    volume = first(tpl["volumes"])
    gcs = first(volume["gcs"])
    assert gcs["bucket"] == "${google_storage_bucket.inbox.name}"
    assert gcs["read_only"] is True
    assert "implicit-dirs" in gcs["mount_options"], "uploads under prefixes have no folder objects"
    container = first(tpl["containers"])
    mount = first(container["volume_mounts"])
    assert mount == {"name": volume["name"], "mount_path": "${local.slide_mount}"}
    assert tf.locals["slide_mount"] == "/mnt/inbox"
    env = _env(container)
    assert env["SLIDE_MOUNT"] == "${local.slide_mount}", "the app reads where the volume is"
    assert env["HEALER_BUCKET"] == "${google_storage_bucket.inbox.name}", "the mounted bucket, named"
    # The mount authenticates as the runtime account at start-up: its read grant comes first.
    assert (
        "${google_storage_bucket_iam_member.slide_service_reads_inbox}"
        in (tf.resource("google_cloud_run_v2_service", "slide_service")["depends_on"])
    )


def test_slide_service_environment_names_the_slide_path(tf: Module) -> None:
    tpl = first(tf.resource("google_cloud_run_v2_service", "slide_service")["template"])
    env = _env(first(tpl["containers"]))
    expected = {
        "SLIDES_TOPIC": "${google_pubsub_topic.slides.name}",
        "JOBS_TOPIC": "${google_pubsub_topic.jobs.name}",
        "WORK_BUCKET": "${google_storage_bucket.work.name}",
        "RESULTS_BUCKET": "${google_storage_bucket.results.name}",
        "PUSH_AUDIENCE": "${local.slide_url}",
        "PUSH_SERVICE_ACCOUNT": "${google_service_account.push.email}",
        "FIRESTORE_DATABASE": "${google_firestore_database.main.name}",
        "JOBS_COLLECTION": "${var.jobs_collection}",
    }
    for name, value in expected.items():
        assert env.get(name) == value, f"slide service env {name}={env.get(name)!r}"
    for name in (*TILING_ENV, *BUDGET_ENV):
        var = name.lower()
        assert env[name] == f"${{tostring(var.{var})}}", name
        body = tf.variables[var]
        assert body.get("validation"), f"variable {var} has no validation"
    assert tf.variables["tile_mpp"]["default"] == 1.0 and tf.variables["tile_px"]["default"] == 896
    assert tf.variables["max_slide_bytes"]["default"] == 10_000_000_000


def test_every_deployable_gets_the_slide_settings_it_reads(tf: Module) -> None:
    function_env = tf.locals["function_env"]
    assert function_env["SLIDES_TOPIC"] == "${google_pubsub_topic.slides.name}"
    assert function_env["MAX_SLIDE_BYTES"] == "${tostring(var.max_slide_bytes)}"
    inference = _env(first(first(tf.resource("google_cloud_run_v2_service", "inference")["template"])["containers"]))
    assert inference["WORK_BUCKET"] == "${google_storage_bucket.work.name}"
    assert inference["SLIDES_TOPIC"] == "${google_pubsub_topic.slides.name}"
    console_tpl = first(tf.resource("google_cloud_run_v2_service", "console")["template"])
    console = first(console_tpl["containers"])
    env = _env(console)
    assert env["RESULTS_BUCKET"] == "${google_storage_bucket.results.name}"
    assert env["SLIDE_MOUNT"] == "${local.slide_mount}"
    assert env["MAX_SLIDE_BYTES"] == "${tostring(var.max_slide_bytes)}"
    # The console's viewer reads the same read-only mount.
    assert console_tpl["execution_environment"] == "EXECUTION_ENVIRONMENT_GEN2"
    gcs = first(first(console_tpl["volumes"])["gcs"])
    assert gcs["bucket"] == "${google_storage_bucket.inbox.name}" and gcs["read_only"] is True
    assert first(console["volume_mounts"])["mount_path"] == "${local.slide_mount}"


def test_both_services_get_the_one_slide_report_switch(tf: Module) -> None:
    """The slide service chooses a report's tiles (0: no report), the inference service takes that
    many in one prompt: both read SLIDE_REPORT_PATCHES from one variable, whose default is theirs."""
    from inference_service.settings import Settings
    from slide_service.settings import SlideSettings

    for service in ("slide_service", "inference"):
        container = first(first(tf.resource("google_cloud_run_v2_service", service)["template"])["containers"])
        assert _env(container)["SLIDE_REPORT_PATCHES"] == "${tostring(var.slide_report_patches)}", service
    variable = tf.variables["slide_report_patches"]
    assert variable.get("validation"), "slide_report_patches has no validation"
    defaults = {cls.model_fields["slide_report_patches"].default for cls in (Settings, SlideSettings)}
    assert defaults == {variable["default"]} == {125}


def test_tiling_fits_the_timing_chain(tf: Module) -> None:
    # Cloud Run's request timeout = the push subscription's ack deadline: a slide still tiling is
    # never redelivered to a second instance.
    tpl = first(tf.resource("google_cloud_run_v2_service", "slide_service")["template"])
    assert tpl["timeout"] == "${local.slide_timeout_seconds}s"
    sub = tf.resource("google_pubsub_subscription", "slides_push")
    assert sub["ack_deadline_seconds"] == "${local.slide_timeout_seconds}"
    assert tf.locals["slide_timeout_seconds"] == 600, "Pub/Sub's longest ack deadline"
    # One slide per instance by default: tiling uses every vCPU of it.
    assert tpl["max_instance_request_concurrency"] == "${var.slide_max_concurrency}"
    assert tf.variables["slide_max_concurrency"]["default"] == 1


def test_only_the_push_account_invokes_the_slide_service(tf: Module) -> None:
    invokers = [
        body["member"]
        for _, _, body in tf.iter_resources("google_cloud_run_v2_service_iam_member")
        if "google_cloud_run_v2_service.slide_service." in body["name"]
    ]
    assert invokers == ["serviceAccount:${google_service_account.push.email}"]
    assert tf.resource("google_cloud_run_v2_service_iam_member", "push_invokes_slide_service")["role"] == (
        "roles/run.invoker"
    )


# ── Topic, push, dead letters ────────────────────────────────────────────────────────────────


def test_slides_topic_pushes_to_the_slide_service_with_oidc_retries_and_dead_letters(tf: Module) -> None:
    topic = tf.resource("google_pubsub_topic", "slides")
    assert topic["name"] == "${var.slides_topic_name}"
    assert tf.variables["slides_topic_name"]["default"] == "slides"
    sub = tf.resource("google_pubsub_subscription", "slides_push")
    assert sub["name"] == "${var.slides_topic_name}-push"
    assert sub["topic"] == "${google_pubsub_topic.slides.id}"
    push = first(sub["push_config"])
    assert push["push_endpoint"] == "${local.slide_url}/pubsub/push"
    oidc = first(push["oidc_token"])
    assert oidc == {"service_account_email": "${google_service_account.push.email}", "audience": "${local.slide_url}"}
    assert first(sub["retry_policy"]) == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
    assert first(sub["expiration_policy"]) == {"ttl": ""}
    dlq = first(sub["dead_letter_policy"])
    assert dlq["dead_letter_topic"] == "${google_pubsub_topic.slides_dead_letter.id}"
    assert dlq["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert tf.resource("google_pubsub_topic", "slides_dead_letter")["name"] == "${var.slides_topic_name}-dead-letter"


def test_slide_dead_letters_are_pushed_to_the_slide_service_and_retained(tf: Module) -> None:
    push = tf.resource("google_pubsub_subscription", "slides_dead_letter_push")
    assert push["topic"] == "${google_pubsub_topic.slides_dead_letter.id}"
    cfg = first(push["push_config"])
    assert cfg["push_endpoint"] == "${local.slide_url}/pubsub/dead-letter"
    assert first(cfg["oidc_token"])["audience"] == "${local.slide_url}"
    hold = tf.resource("google_pubsub_subscription", "slides_dead_letter_hold")
    assert hold["topic"] == "${google_pubsub_topic.slides_dead_letter.id}"
    assert "push_config" not in hold
    assert hold["message_retention_duration"] == "604800s" and hold["retain_acked_messages"] is True
    # Pub/Sub's agent can dead-letter slides: publish to that topic, ack on the slides subscription.
    agent = {(p, r, t) for p, r, t in _grants(tf) if p == "${local.pubsub_agent}"}
    assert ("${local.pubsub_agent}", "roles/pubsub.publisher", "google_pubsub_topic.slides_dead_letter") in agent
    assert ("${local.pubsub_agent}", "roles/pubsub.subscriber", "google_pubsub_subscription.slides_push") in agent


# ── Buckets ──────────────────────────────────────────────────────────────────────────────────


def test_work_bucket_expires_by_lifecycle_and_keeps_no_soft_deleted_copies(tf: Module) -> None:
    work = tf.resource("google_storage_bucket", "work")
    rule = first(work["lifecycle_rule"])
    assert first(rule["action"]) == {"type": "Delete"}
    assert first(rule["condition"]) == {"age": "${var.work_retention_days}"}
    assert tf.variables["work_retention_days"]["default"] == 7
    assert tf.variables["work_retention_days"].get("validation")
    assert first(work["soft_delete_policy"]) == {"retention_duration_seconds": 0}
    assert work["storage_class"] == "STANDARD", "no minimum storage duration for objects that live days"
    assert tf.locals["work_bucket_name"].endswith("-work")


def test_results_bucket_is_kept_versioned_and_encrypted_like_the_inbox(tf: Module) -> None:
    results = tf.resource("google_storage_bucket", "results")
    assert "lifecycle_rule" not in results, "results are kept"
    assert first(results["versioning"])["enabled"] == "${var.results_versioning}"

    def dynamic(name: str) -> dict[str, Any]:
        body = tf.resource("google_storage_bucket", name)
        return {k: v for block in body["dynamic"] for k, v in block.items()}

    for name in ("results", "work"):
        body = tf.resource("google_storage_bucket", name)
        assert dynamic(name)["encryption"]["for_each"] == dynamic("inbox")["encryption"]["for_each"], name
        assert body["public_access_prevention"] == "enforced" and body["uniform_bucket_level_access"] is True
        # With CMEK the agent's key grant must have propagated first, as for the inbox.
        assert "${time_sleep.agent_iam_propagation}" in body["depends_on"], name
    assert tf.locals["results_bucket_name"].endswith("-results")


# ── Who may do what ──────────────────────────────────────────────────────────────────────────


def test_only_the_slide_service_writes_the_work_and_results_buckets(tf: Module) -> None:
    grants = _grants(tf)
    for bucket in ("google_storage_bucket.work", "google_storage_bucket.results"):
        writers = {p for p, r, t in grants if t == bucket and r in WRITE_ROLES}
        assert writers == {"sa:slide_service"}, f"{bucket} writers: {writers}"
    readers = {p for p, r, t in grants if t == "google_storage_bucket.work"}
    assert readers == {"sa:slide_service", "sa:inference"}, readers
    results = {p for p, r, t in grants if t == "google_storage_bucket.results"}
    assert results == {"sa:slide_service", "sa:console"}, results
    assert ("sa:console", "roles/storage.objectViewer", "google_storage_bucket.results") in grants


def test_the_slide_service_holds_exactly_its_grants(tf: Module) -> None:
    mine = {(r, t) for p, r, t in _grants(tf) if p == "sa:slide_service"}
    assert mine == {
        ("roles/storage.objectViewer", "google_storage_bucket.inbox"),
        ("roles/storage.objectUser", "google_storage_bucket.work"),
        ("roles/storage.objectUser", "google_storage_bucket.results"),
        ("roles/pubsub.publisher", "google_pubsub_topic.jobs"),
        ("roles/pubsub.publisher", "google_pubsub_topic.slides"),
    }
    project = [
        b["role"]
        for _, _, b in tf.iter_resources("google_project_iam_member")
        if "google_service_account.slide_service." in b["member"]
    ]
    assert project == ["roles/datastore.user"]


def test_the_inference_service_reads_shards_publishes_finalize_and_writes_no_bucket(tf: Module) -> None:
    mine = {(r, t) for p, r, t in _grants(tf) if p == "sa:inference"}
    assert ("roles/storage.objectViewer", "google_storage_bucket.work") in mine
    assert ("roles/pubsub.publisher", "google_pubsub_topic.slides") in mine
    assert not {(r, t) for r, t in mine if r in WRITE_ROLES}, mine


def test_who_publishes_to_the_slides_topic(tf: Module) -> None:
    # ingest (new slide jobs), reconcile (recreated jobs, lost finalizes), the inference service
    # (a slide's last shard) and the slide service itself (dead letters worth another run).
    publishers = {p for p, r, t in _grants(tf) if t == "google_pubsub_topic.slides"}
    assert publishers == {"sa:ingest", "sa:reconcile", "sa:inference", "sa:slide_service"}
    assert {r for p, r, t in _grants(tf) if t == "google_pubsub_topic.slides"} == {"roles/pubsub.publisher"}


def test_each_new_grant_says_why(tf: Module) -> None:
    names = [
        "slide_service_firestore",
        "slide_service_reads_inbox",
        "slide_service_writes_work",
        "slide_service_writes_results",
        "slide_service_publishes_jobs",
        "slide_service_publishes_slides",
        "push_invokes_slide_service",
        "inference_reads_work",
        "inference_publishes_slides",
        "ingest_publishes_slides",
        "reconcile_publishes_slides",
        "console_reads_results",
        "pubsub_agent_publishes_slide_dead_letters",
        "pubsub_agent_acks_slides",
    ]
    text = "\n".join(p.read_text() for p in sorted(TF_DIR.glob("*.tf")))
    for name in names:
        match = re.search(rf'((?:^#[^\n]*\n)+)resource "[a-z0-9_]+" "{name}"', text, re.MULTILINE)
        assert match and "Why" in match.group(1), f"{name}: no comment saying why above the grant"
    assert "slide_service" in " ".join(walk_strings(tf.locals["build_acts_as"]))
