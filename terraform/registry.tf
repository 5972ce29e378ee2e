# Artifact Registry (inference image, function build images) and the Hugging Face token secret.

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_name
  format        = "DOCKER"
  description   = "Healer inference images (MedGemma baked in)."
  labels        = local.labels

  # Each image carries ~9 GB of weights: keep the ten newest versions, delete the rest after a
  # week. Cloud Run pins revisions by digest, so old revisions keep running until replaced.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "604800s"
    }
  }

  depends_on = [google_project_service.apis]
}

# Cloud Functions builds its container images here instead of the shared gcf-artifacts
# repository, so the function build account's writer grant is scoped to one repository.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "${local.prefix}-functions"
  format        = "DOCKER"
  description   = "Healer function build images (managed by Cloud Functions)."
  labels        = local.labels

  depends_on = [google_project_service.apis]
}

# The Hugging Face token used to bake MedGemma into the image. Terraform creates the secret,
# never its value: add it with `gcloud secrets versions add` (docs/DEPLOY.md), so the token is
# never in Terraform state, a tfvars file or a build argument.
resource "google_secret_manager_secret" "hf_token" {
  project   = var.project_id
  secret_id = var.hf_token_secret_id
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region # keep the credential in the deployment's region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# Why: the image build reads the token through Cloud Build's availableSecrets; the image build
# account is the only principal granted access, on this one secret (the test and deploy accounts
# cannot read it).
resource "google_secret_manager_secret_iam_member" "image_build_reads_hf_token" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.hf_token.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.image_build.email}"
}

# Why (promotion): the next environment's image build account copies an image this environment
# ran, by digest, into its own repository (make promote, cloudbuild/promote.yaml). Read-only, on
# this repository only; empty by default.
resource "google_artifact_registry_repository_iam_member" "promotion_readers" {
  for_each = toset(var.image_readers)

  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}
