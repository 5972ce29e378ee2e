# Buckets: the inbox users upload to, the slide path's work and results buckets, and the private
# bucket holding the function source zip.

resource "google_storage_bucket" "inbox" {
  name     = local.inbox_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  # Access only through IAM (no object ACLs), and never public whatever IAM says.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = var.inbox_versioning
  }

  # The review console's browser uploads straight to the bucket: one PUT to a V4 signed URL for an
  # image, chunked PUTs (Content-Range) to a resumable session for a slide, whose 308 answers say
  # in `Range` how much arrived. Allow exactly that origin, method and those headers.
  cors {
    origin = [local.console_url]
    method = ["PUT"]
    # The signed upload URL binds the size with x-goog-content-length-range: the browser sends it.
    response_header = ["Content-Type", "x-goog-content-length-range", "Content-Range", "Range"]
    max_age_seconds = 3600
  }

  dynamic "encryption" {
    for_each = var.inbox_kms_key_name == null ? [] : [var.inbox_kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.inbox_lifecycle_rules
    content {
      action {
        type          = lifecycle_rule.value.action.type
        storage_class = lifecycle_rule.value.action.storage_class
      }
      condition {
        age                        = lifecycle_rule.value.condition.age
        created_before             = lifecycle_rule.value.condition.created_before
        with_state                 = lifecycle_rule.value.condition.with_state
        matches_prefix             = lifecycle_rule.value.condition.matches_prefix
        matches_suffix             = lifecycle_rule.value.condition.matches_suffix
        num_newer_versions         = lifecycle_rule.value.condition.num_newer_versions
        days_since_noncurrent_time = lifecycle_rule.value.condition.days_since_noncurrent_time
      }
    }
  }

  # With CMEK, the Cloud Storage agent's grant on the key must have propagated before the bucket
  # is created with it as default key (time_sleep waits after that grant).
  depends_on = [google_project_service.apis, time_sleep.agent_iam_propagation]
}

# Why: with CMEK, Cloud Storage's agent encrypts and decrypts objects with the key; scoped to
# that one key. Google's CMEK page for Cloud Storage requires exactly this role for the project's
# Cloud Storage service agent, a key in the bucket's location, and the Cloud KMS API enabled in
# the key's project. Setting this grant needs cloudkms.cryptoKeys.setIamPolicy on the key, which
# no deploy role carries: the key's admin grants the deploy account roles/cloudkms.admin on that
# one key first (docs/DEPLOY.md, "CMEK").
resource "google_kms_crypto_key_iam_member" "gcs_agent_cmek" {
  count = var.inbox_kms_key_name == null ? 0 : 1

  crypto_key_id = var.inbox_kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.gcs_agent
}

# The slide path's scratch space: shards (`shards/{job_id}/{n:05d}.tar`, the tiles the inference
# service scores) and thumbnails (`thumbnails/{job_id}.png`). Everything here is disposable and
# rebuilt by tiling the slide again, so it expires: a slide needs its shards for minutes, the
# lifecycle rule deletes them after work_retention_days. Tiles are patient material all the same:
# private, CMEK like the inbox, audited like every bucket (audit.tf).
resource "google_storage_bucket" "work" {
  name     = local.work_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  # Objects live for days: Standard has no minimum storage duration (Nearline's is 30 days).
  storage_class = "STANDARD"

  # Soft delete would bill every expired shard for 7 more days (the default window), doubling the
  # bucket's storage for nothing: a lost shard is rebuilt, never restored.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = var.work_retention_days
    }
  }

  dynamic "encryption" {
    for_each = var.inbox_kms_key_name == null ? [] : [var.inbox_kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  # With CMEK, the Cloud Storage agent's grant on the key must have propagated first (as the inbox).
  depends_on = [google_project_service.apis, time_sleep.agent_iam_propagation]
}

# Slide results, kept: `slides/{job_id}/heatmap.png`, `.../tiles.geojson`, `.../thumbnail.png`
# (keyed by job_id only: object names may carry patient identifiers). Versioning and CMEK like
# the inbox; no lifecycle rule: a verdict's artifacts live as long as the verdict.
resource "google_storage_bucket" "results" {
  name     = local.results_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = var.results_versioning
  }

  dynamic "encryption" {
    for_each = var.inbox_kms_key_name == null ? [] : [var.inbox_kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.apis, time_sleep.agent_iam_propagation]
}

# Source archives of the functions. Private, object names carry the content hash.
resource "google_storage_bucket" "function_source" {
  name     = local.function_bucket_name
  project  = var.project_id
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  # Old bundles are useless once a newer one is deployed; keep a month for rollbacks.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 30
    }
  }

  depends_on = [google_project_service.apis]
}
