# Build identities.
#  - build:          runs cloudbuild.yaml (test → image → push → terraform apply).
#  - function_build: Cloud Functions' own build of the ingest/reconcile bundle.

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${local.prefix}-build"
  display_name = "Healer Cloud Build (tests, image build, deploy)"

  depends_on = [google_project_service.apis]
}

# Staging bucket for `gcloud builds submit` sources (make deploy passes --gcs-source-staging-dir),
# so the build account's read grant covers this bucket only, not the default *_cloudbuild one.
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
# account (cloudbuild.yaml sets logging: CLOUD_LOGGING_ONLY). Log writing is project-scoped.
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# Why: the build fetches the uploaded source archive from the staging bucket (this one only).
resource "google_storage_bucket_iam_member" "build_reads_staging" {
  bucket = google_storage_bucket.build_staging.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Why: the build pushes the inference image to the Healer repository, and nowhere else.
resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# Why: `terraform apply` keeps its state in this bucket; read/write objects there only.
resource "google_storage_bucket_iam_member" "build_uses_tf_state" {
  count = var.tf_state_bucket == "" ? 0 : 1

  bucket = var.tf_state_bucket
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Deploying = running this module. Terraform creates project-level resources (buckets, topics,
# functions, service accounts, project IAM bindings), so these roles cannot be narrower than the
# project. Together they are powerful (projectIamAdmin can grant anything): restrict who may run
# builds as this account (docs/DEPLOY.md), or set build_can_deploy = false and apply elsewhere.
locals {
  build_deploy_roles = var.build_can_deploy ? toset([
    "roles/artifactregistry.admin",          # the repositories and their IAM
    "roles/cloudfunctions.admin",            # ingest + reconcile functions
    "roles/cloudscheduler.admin",            # the reconcile job
    "roles/datastore.owner",                 # Firestore database, index, TTL field
    "roles/eventarc.admin",                  # the function's trigger
    "roles/iam.serviceAccountAdmin",         # the pipeline's service accounts and their IAM
    "roles/monitoring.alertPolicyEditor",    # alert policies
    "roles/pubsub.admin",                    # topics, subscriptions and their IAM
    "roles/resourcemanager.projectIamAdmin", # project-level bindings (datastore.user, …)
    "roles/run.admin",                       # the inference service and its IAM
    "roles/secretmanager.admin",             # the token secret's metadata and IAM (not a value)
    "roles/serviceusage.serviceUsageAdmin",  # enable APIs, create service agents
    "roles/storage.admin",                   # buckets and their IAM
  ]) : toset([])
}

resource "google_project_iam_member" "build_deploys" {
  #checkov:skip=CKV_GCP_49:Deploying this module creates service accounts and manages their IAM; see the comment above.
  for_each = local.build_deploy_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
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

# Why: the function build reads the source zip from the function source bucket only.
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
# needs actAs on that account. Granted per account, never on the project.
locals {
  build_acts_as = var.build_can_deploy ? {
    eventarc       = google_service_account.eventarc_trigger.name
    function_build = google_service_account.function_build.name
    inference      = google_service_account.inference.name
    ingest         = google_service_account.ingest.name
    push           = google_service_account.push.name
    reconcile      = google_service_account.reconcile.name
    scheduler      = google_service_account.scheduler.name
  } : {}
}

resource "google_service_account_iam_member" "build_acts_as" {
  for_each = local.build_acts_as

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.build.email}"
}
