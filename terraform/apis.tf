# Every Google API the pipeline uses, enabled by Terraform so an empty project works.

locals {
  required_apis = toset([
    "artifactregistry.googleapis.com",     # inference image and function build images
    "cloudbuild.googleapis.com",           # builds the image; Cloud Functions builds with it too
    "cloudfunctions.googleapis.com",       # ingest + reconcile functions (gen2)
    "cloudresourcemanager.googleapis.com", # project IAM bindings
    "cloudscheduler.googleapis.com",       # reconciliation sweep
    "eventarc.googleapis.com",             # object.finalized → ingest
    "firestore.googleapis.com",            # jobs collection
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # OIDC tokens for push / scheduler / Eventarc
    "logging.googleapis.com",
    "monitoring.googleapis.com",    # alert policies
    "pubsub.googleapis.com",        # jobs + dead-letter topics
    "run.googleapis.com",           # inference service (and gen2 functions run on it)
    "secretmanager.googleapis.com", # Hugging Face token for the build
    "storage.googleapis.com",       # inbox and source buckets
  ])
}

resource "google_project_service" "apis" {
  for_each = local.required_apis

  project = var.project_id
  service = each.value

  # Other workloads in the project may rely on these APIs: never switch them off on destroy.
  disable_on_destroy         = false
  disable_dependent_services = false
}
