"""Custom checkov checks for what the built-in policies miss in Healer's pipeline.

- CKV_HEALER_1  a Pub/Sub push subscription must sign deliveries with an OIDC token
- CKV_HEALER_2  a Pub/Sub push subscription must have a dead-letter policy
- CKV_HEALER_3  a Cloud Run v2 service must not accept public ingress
- CKV_HEALER_4  no public (allUsers / allAuthenticatedUsers) invoker on Cloud Run or functions,
                and no Cloud Run service with the invoker IAM check disabled
- CKV_HEALER_5  a Cloud Functions gen2 function must not allow all ingress

Each is proven by a negative fixture in tests/terraform/fixtures/ that must fail it.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

PUBLIC_MEMBERS = frozenset({"allusers", "allauthenticatedusers"})
PRIVATE_RUN_INGRESS = frozenset({"INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_NONE"})


def _first(conf: dict[str, Any], key: str) -> Any:
    """checkov wraps every HCL value in a list; return the first element, or None."""
    value = conf.get(key)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _block(conf: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The first nested block called `key`, or None when absent or empty."""
    value = _first(conf, key)
    return value if isinstance(value, dict) and value else None


def _is_push(conf: dict[str, Any]) -> bool:
    push = _block(conf, "push_config")
    return push is not None and bool(_first(push, "push_endpoint"))


class PushSubscriptionOidc(BaseResourceCheck):
    """Unsigned pushes would force the receiver to accept unauthenticated requests."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure Pub/Sub push subscriptions authenticate with an OIDC token",
            id="CKV_HEALER_1",
            categories=[CheckCategories.IAM],
            supported_resources=["google_pubsub_subscription"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if not _is_push(conf):
            return CheckResult.PASSED
        oidc = _block(_block(conf, "push_config") or {}, "oidc_token")
        if oidc and _first(oidc, "service_account_email"):
            return CheckResult.PASSED
        return CheckResult.FAILED


class PushSubscriptionDeadLetter(BaseResourceCheck):
    """Without a dead-letter topic a poison message is retried until it silently expires."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure Pub/Sub push subscriptions have a dead-letter policy",
            id="CKV_HEALER_2",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_pubsub_subscription"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if not _is_push(conf):
            return CheckResult.PASSED
        dlq = _block(conf, "dead_letter_policy")
        if dlq and _first(dlq, "dead_letter_topic"):
            return CheckResult.PASSED
        return CheckResult.FAILED


class CloudRunNoPublicIngress(BaseResourceCheck):
    """The API default for ingress is INGRESS_TRAFFIC_ALL: absent means public.

    INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER is refused too: it admits an external Application Load
    Balancer, a public path this pipeline never needs.
    """

    def __init__(self) -> None:
        super().__init__(
            name="Ensure Cloud Run v2 services do not accept public ingress",
            id="CKV_HEALER_3",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["google_cloud_run_v2_service"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        ingress = _first(conf, "ingress")
        return CheckResult.PASSED if ingress in PRIVATE_RUN_INGRESS else CheckResult.FAILED


class NoPublicInvoker(BaseResourceCheck):
    """A public invoker makes the GPU service (or a function) callable by anyone."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure Cloud Run services and functions have no public invoker",
            id="CKV_HEALER_4",
            categories=[CheckCategories.IAM],
            supported_resources=[
                "google_cloud_run_v2_service",
                "google_cloud_run_v2_service_iam_member",
                "google_cloud_run_v2_service_iam_binding",
                "google_cloud_run_service_iam_member",
                "google_cloud_run_service_iam_binding",
                "google_cloudfunctions2_function_iam_member",
                "google_cloudfunctions2_function_iam_binding",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if self.entity_type == "google_cloud_run_v2_service":
            # invoker_iam_disabled = true skips the IAM check: the service becomes public.
            return CheckResult.FAILED if _first(conf, "invoker_iam_disabled") is True else CheckResult.PASSED
        members: list[str] = []
        member = _first(conf, "member")
        if isinstance(member, str):
            members.append(member)
        listed = _first(conf, "members")
        if isinstance(listed, list):
            members.extend(m for m in listed if isinstance(m, str))
        if any(m.strip().lower() in PUBLIC_MEMBERS for m in members):
            return CheckResult.FAILED
        return CheckResult.PASSED


class FunctionNoPublicIngress(BaseResourceCheck):
    """Eventarc and Cloud Scheduler are internal sources; a function needs no public ingress."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure Cloud Functions gen2 functions do not allow all ingress",
            id="CKV_HEALER_5",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["google_cloudfunctions2_function"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        service = _block(conf, "service_config")
        ingress = _first(service, "ingress_settings") if service else None
        # The API default is ALLOW_ALL.
        if ingress in {"ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"}:
            return CheckResult.PASSED
        return CheckResult.FAILED


push_subscription_oidc = PushSubscriptionOidc()
push_subscription_dead_letter = PushSubscriptionDeadLetter()
cloud_run_no_public_ingress = CloudRunNoPublicIngress()
no_public_invoker = NoPublicInvoker()
function_no_public_ingress = FunctionNoPublicIngress()
