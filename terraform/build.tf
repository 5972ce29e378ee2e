# Build identities: one Cloud Build service account per stage, so that each runs with only what
# that stage needs (make deploy submits three builds, docs/DEPLOY.md "Build and deploy"):
#  - ci:             cloudbuild/test.yaml: the tests. Writes its build log and reads its own source
#                    archive; nothing else (the tests run code from the repository, and any step of
#                    a build can use the build's credentials).
#  - image_build:    cloudbuild/images.yaml: builds and pushes the images (and
#                    cloudbuild/promote.yaml: copies a promoted image in, by digest). The only
#                    account that can read the Hugging Face token.
#  - deploy:         cloudbuild/deploy.yaml: terraform apply of image digests that already exist.
#                    Cannot read any secret value.
#  - function_build: Cloud Functions' own build of the ingest/reconcile bundle.

locals {
  build_accounts = {
    ci          = "Healer Cloud Build: tests (build logs only)"
    image_build = "Healer Cloud Build: image build and push (reads the HF token)"
    deploy      = "Healer Cloud Build: terraform apply (deploy roles, no secret values)"
  }
  # account_id suffix per stage (account ids are 6-30 chars: "<prefix>-image" fits a 14-char prefix)
  build_account_ids = { ci = "ci", image_build = "image", deploy = "deploy" }
}

resource "google_service_account" "ci" {
  project      = var.project_id
  account_id   = "${local.prefix}-${local.build_account_ids.ci}"
  display_name = local.build_accounts.ci

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "image_build" {
  project      = var.project_id
  account_id   = "${local.prefix}-${local.build_account_ids.image_build}"
  display_name = local.build_accounts.image_build

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "deploy" {
  project      = var.project_id
  account_id   = "${local.prefix}-${local.build_account_ids.deploy}"
  display_name = local.build_accounts.deploy

  depends_on = [google_project_service.apis]
}

# Staging bucket for `gcloud builds submit` sources (make passes --gcs-source-staging-dir), so the
# build accounts' read grant covers this bucket only, not the default *_cloudbuild one.
resource "google_storage_bucket" "build_staging" {
  name     = local.build_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 7
    }
  }

  depends_on = [google_project_service.apis]
}

# Why: with a user-specified account Cloud Build writes the build log to Cloud Logging as that
# account (every cloudbuild/*.yaml sets logging: CLOUD_LOGGING_ONLY). Log writing is project-scoped.
resource "google_project_iam_member" "ci_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.ci.email}"
}

resource "google_project_iam_member" "image_build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.image_build.email}"
}

resource "google_project_iam_member" "deploy_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.deploy.email}"
}

# Why: each build fetches its uploaded source archive from the staging bucket (this one only).
resource "google_storage_bucket_iam_member" "ci_reads_staging" {
  bucket = google_storage_bucket.build_staging.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.ci.email}"
}

resource "google_storage_bucket_iam_member" "image_build_reads_staging" {
  bucket = google_storage_bucket.build_staging.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.image_build.email}"
}

resource "google_storage_bucket_iam_member" "deploy_reads_staging" {
  bucket = google_storage_bucket.build_staging.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.deploy.email}"
}

# Why: the image build pushes the inference, console and slide images to the Healer repository,
# and nowhere else (promotion copies an image in with the same account: cloudbuild/promote.yaml).
resource "google_artifact_registry_repository_iam_member" "image_build_pushes_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.image_build.email}"
}

# Why: `terraform apply` keeps its state in this bucket; read/write objects there only.
resource "google_storage_bucket_iam_member" "deploy_uses_tf_state" {
  count = var.tf_state_bucket == "" ? 0 : 1

  bucket = var.tf_state_bucket
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.deploy.email}"
}

# Deploying = running this module. Terraform creates project-level resources (buckets, topics,
# functions, service accounts, project IAM bindings), so these roles cannot be narrower than the
# project. Together they are powerful (projectIamAdmin can grant anything): restrict who may run
# builds as this account (docs/DEPLOY.md), or set build_can_deploy = false and apply elsewhere.
# No role here reads a secret value: the token secret's metadata and IAM are managed through a
# custom role without secretmanager.versions.access (below).
locals {
  # IAP on the console (console.tf): granting access through IAP needs iap.admin; in a project
  # without an organization IAP also needs its OAuth settings, configured by the deploying account
  # (Google's "Configure IAP for Cloud Run" lists these roles for that case).
  project_in_organization = data.google_project.this.org_id != "" || data.google_project.this.folder_id != ""
  build_iap_roles = var.console_access == "iap" ? concat(
    ["roles/iap.admin"],
    local.project_in_organization ? [] : ["roles/iap.settingsAdmin", "roles/oauthconfig.editor"],
  ) : []

  build_deploy_roles = var.build_can_deploy ? toset(concat([
    "roles/artifactregistry.admin",          # the repositories and their IAM
    "roles/cloudfunctions.admin",            # ingest + reconcile functions
    "roles/cloudscheduler.admin",            # the reconcile job
    "roles/datastore.owner",                 # Firestore database, index, TTL field
    "roles/eventarc.admin",                  # the function's trigger
    "roles/iam.roleViewer",                  # read the secret-metadata custom role (made at bootstrap)
    "roles/iam.serviceAccountAdmin",         # the pipeline's service accounts and their IAM
    "roles/monitoring.alertPolicyEditor",    # alert policies
    "roles/pubsub.admin",                    # topics, subscriptions and their IAM
    "roles/resourcemanager.projectIamAdmin", # project-level bindings (datastore.user, …)
    "roles/run.admin",                       # the inference, slide and console services and their IAM
    "roles/serviceusage.serviceUsageAdmin",  # enable APIs, create service agents
    "roles/storage.admin",                   # buckets and their IAM
  ], local.build_iap_roles)) : toset([])
}

resource "google_project_iam_member" "deploy_roles" {
  #checkov:skip=CKV_GCP_49:Deploying this module creates service accounts and manages their IAM; see the comment above.
  for_each = local.build_deploy_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.deploy.email}"
}

# The token secret's metadata and IAM, without its value: roles/secretmanager.admin would include
# secretmanager.versions.access. Created by the bootstrap apply (an Owner); the deploy account
# only reads it afterwards (iam.roleViewer), so changing this list is an admin's apply.
resource "google_project_iam_custom_role" "secret_metadata_admin" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_secret_metadata_admin"
  title       = "Healer: manage secret metadata and IAM (no secret values)"
  description = "Create, read and update Secret Manager secrets and their IAM policies; never read or add a version."
  permissions = [
    "secretmanager.locations.get",
    "secretmanager.locations.list",
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.secrets.get",
    "secretmanager.secrets.getIamPolicy",
    "secretmanager.secrets.list",
    "secretmanager.secrets.setIamPolicy",
    "secretmanager.secrets.update",
  ]

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "deploy_manages_secret_metadata" {
  count = var.build_can_deploy ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.secret_metadata_admin.name
  member  = "serviceAccount:${google_service_account.deploy.email}"
}

# ── Cloud Functions' build ───────────────────────────────────────────────────────────────────

resource "google_service_account" "function_build" {
  project      = var.project_id
  account_id   = "${local.prefix}-fn-build"
  display_name = "Healer function builds (Cloud Functions → Cloud Build)"

  depends_on = [google_project_service.apis]
}

# Why: Cloud Build writes the function build's log as this account; project-scoped by nature.
resource "google_project_iam_member" "function_build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.function_build.email}"
}

# Why: Cloud Functions copies the uploaded source into its own bucket
# gcf-v2-sources-<project number>-<region> and the build reads it from there; Google's "build
# service account" page asks for Storage Object Admin for that. The bucket is created by Cloud
# Functions (its name is fixed, it does not exist yet on a fresh project), so the grant is on the
# project, narrowed by an IAM condition to that one bucket.
resource "google_project_iam_member" "function_build_reads_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = "serviceAccount:${google_service_account.function_build.email}"

  condition {
    title       = "gcf-v2-sources bucket only"
    description = "Cloud Functions' copy of the function source, read by the function build."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${local.project_number}-${var.region}\")"
  }
}

# Why: our own copy of the bundle; the function build may read it too (the source object named
# in build_config), in this bucket only.
resource "google_storage_bucket_iam_member" "function_build_reads_source" {
  bucket = google_storage_bucket.function_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function_build.email}"
}

# Why: the function build pushes the function's container image to the functions repository only.
resource "google_artifact_registry_repository_iam_member" "function_build_writes_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.function_build.email}"
}

# Why: attaching a runtime account to a service, function, trigger, subscription or scheduler job
# needs actAs on that account. Granted per account, never on the project; every identity the
# module attaches anywhere is here (tests/terraform/test_terraform.py checks it).
locals {
  build_acts_as = var.build_can_deploy ? {
    console        = google_service_account.console.name
    eventarc       = google_service_account.eventarc_trigger.name
    function_build = google_service_account.function_build.name
    inference      = google_service_account.inference.name
    ingest         = google_service_account.ingest.name
    push           = google_service_account.push.name
    reconcile      = google_service_account.reconcile.name
    scheduler      = google_service_account.scheduler.name
    slide_service  = google_service_account.slide_service.name
  } : {}
}

resource "google_service_account_iam_member" "deploy_acts_as" {
  for_each = local.build_acts_as

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deploy.email}"
}
